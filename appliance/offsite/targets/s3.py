"""S3-compatible object storage as an offsite target (AWS S3, MinIO, Ceph RGW, Wasabi, B2) through boto3.

Objects are ``<prefix>/<path>`` in one bucket; a single PUT is atomic. When the bucket has Object Lock enabled,
every object is written with a retention date (``lock_days`` from now, in the bucket's default mode or
GOVERNANCE), so not even the appliance's own credentials can delete it earlier; a delete that the lock refuses
is reported as not done and retried by a later retention run.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from appliance.offsite.errors import ObjectMissing, TargetUnreachable
from appliance.offsite.targets.base import check_path, check_prefix
from appliance.system.errors import InvalidInput

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX = re.compile(r"([A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*)?")
_ENDPOINT = re.compile(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?(/[A-Za-z0-9._~/-]*)?|\[[0-9a-fA-F:]+\]")
_REGION = re.compile(r"[a-z0-9-]{1,32}")


@dataclass(frozen=True)
class S3Config:
    bucket: str
    endpoint: str | None = None
    region: str = "us-east-1"
    prefix: str = ""
    access_key: str = ""
    lock_days: int = 30  # retention of each object when the bucket has Object Lock

    def check(self) -> S3Config:
        if not _BUCKET.fullmatch(self.bucket) or ".." in self.bucket:
            raise InvalidInput(f"S3 bucket name {self.bucket!r} is not valid")
        if self.endpoint is not None and not _ENDPOINT.fullmatch(self.endpoint):
            raise InvalidInput("the S3 endpoint must be a URL such as https://s3.example.com:9000")
        if not _REGION.fullmatch(self.region):
            raise InvalidInput(f"S3 region {self.region!r} is not valid")
        if not _PREFIX.fullmatch(self.prefix.strip("/")) or ".." in self.prefix.split("/"):
            raise InvalidInput("the S3 prefix must be a plain path (letters, digits, '._~-')")
        if not self.access_key or not self.access_key.isprintable() or len(self.access_key) > 128:
            raise InvalidInput("the S3 access key is required")
        if not 0 <= self.lock_days <= 36500:
            raise InvalidInput("lock days must be between 0 and 36500")
        return self


class S3Target:
    kind = "s3"

    def __init__(self, name: str, config: S3Config, secret_key: str) -> None:
        self.name = name
        self.config = config.check()
        self.prefix = config.prefix.strip("/") + "/" if config.prefix.strip("/") else ""
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=config.endpoint,
            region_name=config.region,
            aws_access_key_id=config.access_key,
            aws_secret_access_key=secret_key,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=15, read_timeout=120),
        )
        self._lock: tuple[str, int] | None | bool = False  # not looked up yet

    def _fail(self, exc: Exception, path: str) -> Exception:
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                return ObjectMissing(path, self.name)
            return TargetUnreachable(self.name, f"{code}: {exc.response.get('Error', {}).get('Message', '')}")
        return TargetUnreachable(self.name, str(exc))

    def object_lock(self) -> tuple[str, int] | None:
        """(mode, days) to apply to new objects, or None when the bucket has no Object Lock."""
        if self._lock is False:
            try:
                conf = self.client.get_object_lock_configuration(Bucket=self.config.bucket)["ObjectLockConfiguration"]
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code not in ("ObjectLockConfigurationNotFoundError", "ObjectLockConfigurationNotFound"):
                    raise self._fail(exc, "object lock") from exc
                conf = {}
            except BotoCoreError as exc:
                raise self._fail(exc, "object lock") from exc
            if conf.get("ObjectLockEnabled") == "Enabled" and self.config.lock_days > 0:
                mode = conf.get("Rule", {}).get("DefaultRetention", {}).get("Mode", "GOVERNANCE")
                self._lock = (mode, self.config.lock_days)
            else:
                self._lock = None
        return self._lock if isinstance(self._lock, tuple) else None

    def put(self, path: str, data: bytes | bytearray) -> None:
        key = self.prefix + check_path(path)
        extra: dict[str, Any] = {}
        lock = self.object_lock()
        if lock is not None:
            until = dt.datetime.now(dt.UTC) + dt.timedelta(days=lock[1])
            extra = {"ObjectLockMode": lock[0], "ObjectLockRetainUntilDate": until, "ChecksumAlgorithm": "SHA256"}
        try:
            self.client.put_object(Bucket=self.config.bucket, Key=key, Body=bytes(data), **extra)
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(exc, path) from exc

    def get(self, path: str) -> bytes:
        key = self.prefix + check_path(path)
        try:
            body: bytes = self.client.get_object(Bucket=self.config.bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(exc, path) from exc
        return body

    def list(self, prefix: str = "") -> list[str]:
        check_prefix(prefix)
        out: list[str] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.config.bucket, Prefix=self.prefix + prefix
            )
            for page in pages:
                out += [o["Key"][len(self.prefix) :] for o in page.get("Contents", [])]
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(exc, prefix or "/") from exc
        return sorted(out)

    def delete(self, path: str) -> bool:
        """Delete the object (every version, when the bucket keeps versions); False when it was not there or
        Object Lock still protects it."""
        key = self.prefix + check_path(path)
        try:
            versions = self.client.list_object_versions(Bucket=self.config.bucket, Prefix=key)
            found = [v for v in versions.get("Versions", []) if v["Key"] == key]
            found += [m for m in versions.get("DeleteMarkers", []) if m["Key"] == key]
            if not found:
                return False
            for v in found:
                self.client.delete_object(Bucket=self.config.bucket, Key=key, VersionId=v["VersionId"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "AccessDenied":
                return False  # still locked
            raise self._fail(exc, path) from exc
        except BotoCoreError as exc:
            raise self._fail(exc, path) from exc
        return True

    def close(self) -> None:
        self.client.close()
