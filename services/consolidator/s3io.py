"""The store's S3 calls: listings with sizes, range reads, raw puts, with byte counts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from shared.objects import ObjectMissingError

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client


@dataclass(frozen=True)
class Listed:
    key: str
    size: int


@dataclass
class S3Io:
    s3: S3Client
    bucket: str
    traffic: Counter[str] = field(default_factory=Counter)  # bytes "read" and "written"

    async def listdir(self, prefix: str, delimiter: str = "") -> tuple[list[Listed], list[str]]:
        """Objects under `prefix` (and the common prefixes when `delimiter` is set)."""
        found: list[Listed] = []
        dirs: list[str] = []
        kwargs: dict[str, str] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        while True:
            resp = await self.s3.list_objects_v2(**kwargs)  # type: ignore[arg-type]
            found.extend(Listed(o["Key"], o["Size"]) for o in resp.get("Contents", []))
            dirs.extend(p["Prefix"] for p in resp.get("CommonPrefixes", []))
            if not resp.get("IsTruncated"):
                return found, dirs
            kwargs["ContinuationToken"] = resp["NextContinuationToken"]

    async def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        """Bytes [start, end) of an object (the whole object without a range; a
        negative `start` alone: that many bytes from the end)."""
        span = ""
        if start is not None and start < 0:
            span = f"bytes={start}"
        elif start is not None and end is not None:
            span = f"bytes={start}-{end - 1}"
        try:
            if span:
                resp = await self.s3.get_object(Bucket=self.bucket, Key=key, Range=span)
            else:
                resp = await self.s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise ObjectMissingError(key) from exc
            raise
        async with resp["Body"] as body:
            data = await body.read()
        self.traffic["read"] += len(data)
        return data

    async def put(self, key: str, body: bytes) -> None:
        await self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        self.traffic["written"] += len(body)

    async def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            await self.s3.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}
            )
