"""A tenant's store state: its hot partitions and its cold manifest, versioned in DynamoDB.

The state changes only by conditional puts on its version (atomic in DynamoDB
and in moto), so structural changes (sealing, cold merges, splits, the first
migration) are serialised. Batches do not read it: they keep it in memory and
learn that it moved from the epoch markers in the partitions they list (see
docs/design.md, "The ticket store"). A per-tenant lease keeps compaction to
one worker at a time; it is only an economy, never needed for correctness.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from botocore.exceptions import ClientError

from services.consolidator.runs import Array

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

ROOT = "r"  # partition ids: "r" then the leading bits of the ticket hash they hold
CAS_ATTEMPTS = 20  # conditional puts of one change, at most, before giving up for now
LEASE_S = 60.0  # a compaction lease lasts this long unless renewed


class StateConflictError(RuntimeError):
    """The state moved since it was read: read it again and redo the decision."""


def depth(partition: str) -> int:
    return len(partition) - len(ROOT)


def children(partition: str) -> tuple[str, str]:
    return partition + "0", partition + "1"


@dataclass(frozen=True)
class TenantState:
    version: int
    parts: dict[str, int]  # live partition -> the version of its last structural change
    freezing: dict[str, int] = field(default_factory=dict)  # partition -> since (epoch ms)
    manifest: str = ""  # key of the cold manifest object; "" while nothing is cold

    def route(self, h1: Array) -> list[str]:
        """The live partition of each ticket hash."""
        out = [""] * len(h1)
        for part in self.parts:
            d = depth(part)
            if d == 0:
                mask = np.ones(len(h1), dtype=bool)
            else:
                mask = (h1 >> np.uint64(64 - d)) == np.uint64(int(part[len(ROOT) :], 2))
            for i in np.flatnonzero(mask).tolist():
                out[i] = part
        return out

    def doc(self) -> str:
        body = {"parts": self.parts, "freezing": self.freezing, "manifest": self.manifest}
        return orjson.dumps(body).decode()

    @classmethod
    def of_item(cls, item: dict[str, Any]) -> TenantState:
        body = orjson.loads(item["doc"]["S"])
        return cls(int(item["version"]["N"]), body["parts"], body["freezing"], body["manifest"])

    def next(self, **changes: Any) -> TenantState:
        return replace(self, version=self.version + 1, **changes)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class StateTable:
    dynamodb: DynamoDBClient
    table: str

    def _key(self, tenant: str, what: str) -> dict[str, Any]:
        return {"key": {"S": f"{tenant}/{what}"}}

    async def read(self, tenant: str) -> TenantState | None:
        resp = await self.dynamodb.get_item(
            TableName=self.table, Key=self._key(tenant, "state"), ConsistentRead=True
        )
        return TenantState.of_item(resp["Item"]) if "Item" in resp else None

    async def write(self, tenant: str, new: TenantState) -> None:
        """Put `new` if the stored state is the one it follows; else StateConflictError."""
        item = {
            **self._key(tenant, "state"),
            "version": {"N": str(new.version)},
            "doc": {"S": new.doc()},
        }
        if new.version == 1:
            cond: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(version)"}
        else:
            cond = {
                "ConditionExpression": "version = :v",
                "ExpressionAttributeValues": {":v": {"N": str(new.version - 1)}},
            }
        try:
            await self.dynamodb.put_item(TableName=self.table, Item=item, **cond)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise StateConflictError(tenant) from exc
            raise

    async def take_lease(self, tenant: str, owner: str, seconds: float) -> bool:
        now = now_ms()
        try:
            await self.dynamodb.put_item(
                TableName=self.table,
                Item={
                    **self._key(tenant, "lease"),
                    "owner": {"S": owner},
                    "until": {"N": str(now + int(seconds * 1000))},
                },
                ConditionExpression="attribute_not_exists(#o) OR #u < :now OR #o = :me",
                ExpressionAttributeNames={"#o": "owner", "#u": "until"},
                ExpressionAttributeValues={":now": {"N": str(now)}, ":me": {"S": owner}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    async def release_lease(self, tenant: str, owner: str) -> None:
        try:
            await self.dynamodb.delete_item(
                TableName=self.table,
                Key=self._key(tenant, "lease"),
                ConditionExpression="#o = :me",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":me": {"S": owner}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
