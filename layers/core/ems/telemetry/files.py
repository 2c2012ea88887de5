"""The export bucket (S3): large export files, handed out through presigned links."""

from __future__ import annotations

from ems.core.aws import client
from ems.core.errors import PayloadTooLarge
from ems.core.settings import settings


class S3ExportFiles:
    def put(self, key: str, body: bytes, content_type: str, filename: str, expires_s: int) -> str:
        bucket = settings().export_bucket
        if not bucket:
            raise PayloadTooLarge(
                "too large to return inline, and this deployment has no export bucket", "end_time"
            )
        s3 = client("s3")
        s3.put_object(
            Bucket=bucket, Key=key, Body=body, ContentType=content_type,
            ContentDisposition=f'attachment; filename="{filename}"',
        )  # fmt: skip
        url: str = s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_s
        )
        return url
