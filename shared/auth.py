"""API keys: stored hashed in DynamoDB, one tenant and a set of scopes each.

Keys are 256-bit random tokens, so an unsalted SHA-256 is enough to make a
leaked table useless; lookups are cached briefly because every request needs one.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from shared.errors import ServiceUnavailableError

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

SCOPES = frozenset({"ingest", "read"})
KEY_PREFIX = "tlm_"


class AuthError(Exception):
    """`status` is 401 (who are you?) or 403 (not allowed); `code` goes in the answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ApiKey:
    tenant_id: str
    scopes: frozenset[str]

    def require(self, tenant_id: str | None, scope: str) -> None:
        """The same 403 whether the tenant exists or not: nothing leaks."""
        if scope not in self.scopes or (tenant_id is not None and tenant_id != self.tenant_id):
            raise AuthError(403, "forbidden", "this key may not do that")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def bearer_token(header: str | None) -> str:
    if not header:
        raise AuthError(401, "unauthorized", "missing Authorization: Bearer <api key>")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError(401, "unauthorized", "expected Authorization: Bearer <api key>")
    return token.strip()


class KeyStore:
    def __init__(self, dynamodb: DynamoDBClient, table: str, ttl_s: float = 30.0) -> None:
        self.dynamodb = dynamodb
        self.table = table
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}

    async def create(self, tenant_id: str, scopes: frozenset[str]) -> str:
        key = new_key()
        await self.dynamodb.put_item(
            TableName=self.table,
            Item={
                "key_hash": {"S": hash_key(key)},
                "tenant_id": {"S": tenant_id},
                "scopes": {"SS": sorted(scopes)},
                "created_at": {"S": datetime.now(UTC).isoformat()},
            },
            ConditionExpression="attribute_not_exists(key_hash)",
        )
        return key

    async def authenticate(self, header: str | None) -> ApiKey:
        digest = hash_key(bearer_token(header))
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            found = cached[1]
        else:
            try:
                found = await self._lookup(digest)
            except Exception as exc:  # no answer about the key: the client retries
                raise ServiceUnavailableError(f"key store unavailable: {exc}") from exc
            ttl = self.ttl_s if found is not None else min(self.ttl_s, 2.0)
            if len(self._cache) > 10_000:
                self._cache.clear()  # bounded memory whatever keys are tried
            self._cache[digest] = (now + ttl, found)
        if found is None:
            raise AuthError(401, "unauthorized", "unknown API key")
        return found

    async def _lookup(self, digest: str) -> ApiKey | None:
        resp = await self.dynamodb.get_item(
            TableName=self.table, Key={"key_hash": {"S": digest}}, ConsistentRead=True
        )
        item = resp.get("Item")
        if item is None:
            return None
        return ApiKey(tenant_id=item["tenant_id"]["S"], scopes=frozenset(item["scopes"]["SS"]))
