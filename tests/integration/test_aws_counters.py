"""The clients count S3 payload bytes as moto receives and sends them: what
`make bench-history` divides by events to show storage traffic per stage."""

from __future__ import annotations

import io

from shared.aws import body_bytes
from tests.integration.test_store import BUCKET, aws_for


async def test_s3_bytes_written_and_read_are_counted(moto_url: str) -> None:
    async with aws_for(moto_url) as aws:
        await aws.s3.put_object(Bucket=BUCKET, Key="count/a", Body=b"x" * 1000)
        await aws.s3.put_object(Bucket=BUCKET, Key="count/b", Body=io.BytesIO(b"y" * 300))
        whole = await aws.s3.get_object(Bucket=BUCKET, Key="count/a")
        assert len(await whole["Body"].read()) == 1000
        part = await aws.s3.get_object(Bucket=BUCKET, Key="count/a", Range="bytes=100-199")
        assert len(await part["Body"].read()) == 100
        await aws.s3.list_objects_v2(Bucket=BUCKET, Prefix="count/")
        assert aws.counter.s3_bytes[("PutObject", "written")] == 1300
        assert aws.counter.s3_bytes[("GetObject", "read")] == 1100
        assert aws.counter.counts[("s3", "GetObject")] == 2


def test_body_bytes_of_what_botocore_holds() -> None:
    f = io.BytesIO(b"abcdef")
    f.seek(2)
    assert (body_bytes(None), body_bytes(b"abc"), body_bytes("é"), body_bytes(f)) == (0, 3, 2, 4)
    assert f.tell() == 2
