"""Thin S3 helpers: whole-object reads and writes, listings, batched deletes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client


class ObjectMissingError(KeyError):
    """The object was listed or announced but is gone (e.g. compacted away)."""


async def get_bytes(s3: S3Client, bucket: str, key: str) -> bytes:
    try:
        resp = await s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            raise ObjectMissingError(key) from exc
        raise
    async with resp["Body"] as body:
        return await body.read()


async def put_bytes(s3: S3Client, bucket: str, key: str, body: bytes) -> None:
    await s3.put_object(Bucket=bucket, Key=key, Body=body, ContentEncoding="gzip")


async def list_keys(s3: S3Client, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    token: str | None = None
    while True:
        if token:
            resp = await s3.list_objects_v2(Bucket=bucket, Prefix=prefix, ContinuationToken=token)
        else:
            resp = await s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
        keys.extend(obj["Key"] for obj in resp.get("Contents", []))
        if not resp.get("IsTruncated"):
            return keys
        token = resp.get("NextContinuationToken")


async def delete_keys(s3: S3Client, bucket: str, keys: list[str]) -> None:
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        await s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}
        )
