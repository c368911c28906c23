"""API keys: stored hashed in DynamoDB, one tenant and a set of scopes each.

A key is `tlm_<id>_<secret>`: the id (12 characters) names the key in lists,
logs and revocations without revealing it; the secret is 256 random bits, so
an unsalted SHA-256 of the whole key is enough to make a leaked table useless.
Keys of the first format, `tlm_<secret>`, keep working (docs/operations.md).

Every request needs a lookup, so lookups are cached, in two bounded LRUs: keys
that exist (for minutes) and tokens that do not (for seconds), so a flood of
made-up tokens can never push a valid key out. A revocation must still take
effect everywhere within seconds: each process reads one marker item, whose
version every revocation bumps, at most every `REVOCATION_CHECK_S`, and drops
its cached keys when it changed (or when it could not read it for
`REVOCATION_STALE_S`). Cost: one read per process per 2 s, whatever the number
of keys, instead of one per key per 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import secrets
import string
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.errors import ServiceUnavailableError

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

SCOPES = frozenset({"ingest", "read"})
KEY_PREFIX = "tlm_"
ID_LENGTH = 12
ID_ALPHABET = string.ascii_lowercase + string.digits
KEY_RE = re.compile(rf"tlm_([a-z0-9]{{{ID_LENGTH}}})_[A-Za-z0-9_-]{{43}}")
LEGACY_KEY_RE = re.compile(r"tlm_[A-Za-z0-9_-]{43}")
# The revocation marker shares the table; no SHA-256 hex digest can equal its key.
MARKER = "revocations"

KEY_CACHE_S = 300.0  # a known key is re-read at least this often (revocations aside)
UNKNOWN_CACHE_S = 2.0  # a new key works within this after its creation
REVOCATION_CHECK_S = 2.0
REVOCATION_STALE_S = 5.0  # the promise: a revoked key stops working within 5 s
MARKER_TIMEOUT_S = 1.0
LAST_USED_EVERY_S = 300.0  # last_used_at is written at most this often per key and process
CACHE_ENTRIES = 10_000


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
    key_id: str = ""
    expires_at: datetime | None = None

    def require(self, tenant_id: str | None, scope: str) -> None:
        """The same 403 whether the tenant exists or not: nothing leaks."""
        if scope not in self.scopes or (tenant_id is not None and tenant_id != self.tenant_id):
            raise AuthError(403, "forbidden", "this key may not do that")


@dataclass(frozen=True)
class KeyRecord:
    """A key as the table holds it (never the key itself)."""

    key_hash: str
    key_id: str
    prefix: str
    tenant_id: str
    scopes: frozenset[str]
    created_at: datetime | None
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    def api_key(self) -> ApiKey:
        return ApiKey(self.tenant_id, self.scopes, self.key_id, self.expires_at)

    def status(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    key_id = "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))
    return f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def key_id_of(token: str) -> str | None:
    """The id of a well-formed key; None for a legacy key; AuthError otherwise,
    before any lookup: what is not a key costs no request."""
    found = KEY_RE.fullmatch(token)
    if found:
        return found.group(1)
    if LEGACY_KEY_RE.fullmatch(token):
        return None
    raise AuthError(401, "unauthorized", "malformed API key")


def bearer_token(header: str | None) -> str:
    if not header:
        raise AuthError(401, "unauthorized", "missing Authorization: Bearer <api key>")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError(401, "unauthorized", "expected Authorization: Bearer <api key>")
    return token.strip()


def _time(item: dict[str, Any], name: str) -> datetime | None:
    value = item.get(name, {}).get("S")
    return datetime.fromisoformat(value) if value else None


def record_of(item: dict[str, Any]) -> KeyRecord:
    """A table item as a record; a legacy item's id is its hash's first 12 digits."""
    digest = item["key_hash"]["S"]
    key_id = item.get("key_id", {}).get("S")
    return KeyRecord(
        key_hash=digest,
        key_id=key_id or digest[:ID_LENGTH],
        prefix=f"{KEY_PREFIX}{key_id}_" if key_id else "(legacy key)",
        tenant_id=item["tenant_id"]["S"],
        scopes=frozenset(item["scopes"]["SS"]),
        created_at=_time(item, "created_at"),
        expires_at=_time(item, "expires_at"),
        last_used_at=_time(item, "last_used_at"),
        revoked_at=_time(item, "revoked_at"),
    )


@dataclass
class _Known:
    record: KeyRecord
    cached_at: float  # monotonic, taken before the lookup began
    used_written: float = 0.0  # monotonic time last_used_at was last written


class KeyStore:
    def __init__(
        self,
        dynamodb: DynamoDBClient,
        table: str,
        *,
        key_cache_s: float = KEY_CACHE_S,
        unknown_cache_s: float = UNKNOWN_CACHE_S,
        max_entries: int = CACHE_ENTRIES,
    ) -> None:
        self.dynamodb = dynamodb
        self.table = table
        self.key_cache_s = key_cache_s
        self.unknown_cache_s = unknown_cache_s
        self.max_entries = max_entries
        self._known: OrderedDict[str, _Known] = OrderedDict()
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._lookups: dict[str, asyncio.Future[KeyRecord | None]] = {}
        self._marker_version: int | None = None
        self._marker_ok = float("-inf")  # monotonic time of the last successful read
        self._marker_next = 0.0
        self._marker_lock = asyncio.Lock()
        self._writes: set[asyncio.Task[None]] = set()

    async def authenticate(self, header: str | None) -> ApiKey:
        token = bearer_token(header)
        key_id_of(token)  # the format first: a malformed token costs no request
        digest = hash_key(token)
        await self._check_revocations()
        now = time.monotonic()
        known = self._known.get(digest)
        if known is not None and known.cached_at + self.key_cache_s > now:
            self._known.move_to_end(digest)
        else:
            if self._unknown.get(digest, 0.0) > now:
                raise AuthError(401, "unauthorized", "unknown API key")
            stale = known
            record = await self._lookup(digest)
            if record is None or record.revoked_at is not None:
                self._remember(self._unknown, digest, now + self.unknown_cache_s)
                raise AuthError(401, "unauthorized", "unknown API key")
            known = self._known.get(digest)
            if known is None or known is stale:  # else a waiter of the same lookup stored it
                written = stale.used_written if stale is not None else 0.0
                known = _Known(record, now, written)
                self._remember(self._known, digest, known)
        record = known.record
        if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
            raise AuthError(401, "unauthorized", "API key expired")
        if now - known.used_written >= LAST_USED_EVERY_S:
            known.used_written = now
            self._write_last_used(digest)
        return record.api_key()

    def _remember(self, cache: OrderedDict[str, Any], digest: str, value: Any) -> None:
        """Bounded LRU: the least recently used entry goes first."""
        cache[digest] = value
        cache.move_to_end(digest)
        while len(cache) > self.max_entries:
            cache.popitem(last=False)

    async def _lookup(self, digest: str) -> KeyRecord | None:
        """One request per digest at a time, however many requests wait for it."""
        pending = self._lookups.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[KeyRecord | None] = asyncio.get_running_loop().create_future()
        self._lookups[digest] = future
        try:
            resp = await self.dynamodb.get_item(
                TableName=self.table, Key={"key_hash": {"S": digest}}, ConsistentRead=True
            )
            item = resp.get("Item")
            record = record_of(item) if item is not None else None
            future.set_result(record)
            return record
        except Exception as exc:  # no answer about the key: the client retries
            error = ServiceUnavailableError(f"key store unavailable: {exc}")
            future.set_exception(error)
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise error from exc
        finally:
            del self._lookups[digest]
            if not future.done():  # cancelled at its deadline: the waiters answer 503 too
                future.set_exception(ServiceUnavailableError("key lookup abandoned"))
                future.exception()

    async def _check_revocations(self) -> None:
        """Read the revocation marker at most every REVOCATION_CHECK_S; drop the
        cached keys when it moved, or when it could not be read for too long."""
        if time.monotonic() < self._marker_next:
            return
        async with self._marker_lock:
            now = time.monotonic()
            if now < self._marker_next:
                return
            self._marker_next = now + REVOCATION_CHECK_S
            try:
                async with asyncio.timeout(MARKER_TIMEOUT_S):
                    version = await self._marker_version_now()
            except Exception as exc:
                if now - self._marker_ok > REVOCATION_STALE_S:
                    self._known.clear()  # cannot vouch for them: every key is looked up
                log.warning("revocation marker unreadable: %s", exc)
                return
            if version != self._marker_version:
                # A key looked up after this read began is as new as the version
                # read: only those cached before it may have been revoked.
                for digest in [d for d, k in self._known.items() if k.cached_at < now]:
                    del self._known[digest]
                self._marker_version = version
            self._marker_ok = now

    async def _marker_version_now(self) -> int:
        resp = await self.dynamodb.get_item(
            TableName=self.table, Key={"key_hash": {"S": MARKER}}, ConsistentRead=True
        )
        item = resp.get("Item")
        return int(item["version"]["N"]) if item is not None else 0

    def _write_last_used(self, digest: str) -> None:
        """In the background: a request never waits for it, and a failure only
        leaves last_used_at older."""

        async def write() -> None:
            try:
                await self.dynamodb.update_item(
                    TableName=self.table,
                    Key={"key_hash": {"S": digest}},
                    UpdateExpression="SET last_used_at = :now",
                    ConditionExpression="attribute_exists(key_hash)",
                    ExpressionAttributeValues={":now": {"S": datetime.now(UTC).isoformat()}},
                )
            except Exception as exc:
                log.warning("last_used_at not written: %s", exc)

        task = asyncio.create_task(write())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def close(self, timeout_s: float = 2.0) -> None:
        """Let the last_used_at writes in flight finish (bounded)."""
        if self._writes:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*self._writes), timeout_s)
