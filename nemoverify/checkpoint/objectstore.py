"""Checkpoints in S3 (or any S3-compatible store): listed, sized and read with ranged GETs.

Credentials come the standard AWS ways (environment, profiles); a non-AWS endpoint comes from
AWS_ENDPOINT_URL, which boto3 reads itself and which is handed to the streamer as
RUNAI_STREAMER_S3_ENDPOINT, as vLLM does. Every call has bounded timeouts and retries, so a dead
server ends the run with an error, never a hang.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

from nemoverify.checkpoint.storage import UnsafeName
from nemoverify.errors import StorageError, redact

OBJECT_SCHEMES = ("s3://", "gs://", "az://")
READ_CHUNK = 16 << 20


def is_object_url(path: str) -> bool:
    return path.startswith(OBJECT_SCHEMES)


class S3Storage:
    def __init__(self, url: str) -> None:
        if not url.startswith("s3://"):
            raise StorageError(
                f"{url}: only s3:// (and S3-compatible endpoints) is supported for verification; "
                "gs:// and az:// need a ranged reader for the reference pass that nemoverify does not have yet"
            )
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise StorageError(f"{url}: no bucket name")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.root = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:
                raise StorageError("reading s3:// needs the s3 extra: pip install 'nemoverify[s3]'") from None
            config = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2, "mode": "standard"})
            self._client = boto3.client("s3", config=config)
        return self._client

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        """One S3 call, its failures turned into the exceptions the checkpoint reader understands."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(what) from None
            if code == "NoSuchBucket":
                raise StorageError(f"{self.root}: no such bucket '{self.bucket}'") from None
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise StorageError(f"{what}: access denied ({code}); check the AWS credentials") from None
            raise StorageError(redact(f"{what}: {code or exc}")) from None
        except BotoCoreError as exc:
            raise StorageError(redact(f"{what}: {exc}")) from None

    def list_safetensors(self) -> list[str]:
        names: list[str] = []
        token: dict[str, str] = {}
        base = f"{self.prefix}/" if self.prefix else ""
        while True:
            page = self._call(self.root, self.client.list_objects_v2, Prefix=base, Delimiter="/", **token)
            for obj in page.get("Contents", []):
                name = obj["Key"][len(base) :]
                if name.endswith(".safetensors"):
                    names.append(name)
            if not page.get("IsTruncated"):
                return sorted(names)
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def locate(self, name: str) -> str:
        if not name or name.startswith("/") or "\\" in name or ".." in name.split("/"):
            raise UnsafeName(f"file name {name!r} escapes the checkpoint prefix; refused")
        return f"s3://{self.bucket}/{self._key(name)}"

    def _head(self, name: str) -> Any:
        return self._call(self.locate(name), self.client.head_object, Key=self._key(name))

    def size(self, name: str) -> int:
        return int(self._head(name)["ContentLength"])

    def fingerprint(self, name: str) -> tuple[int, int]:
        head = self._head(name)
        return int(head["ContentLength"]), zlib.crc32(str(head.get("ETag", "")).encode())

    def read_at(self, name: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        rng = f"bytes={offset}-{offset + length - 1}"
        body = self._call(self.locate(name), self.client.get_object, Key=self._key(name), Range=rng)["Body"]
        return bytes(body.read())

    def read_text(self, name: str) -> str | None:
        try:
            body = self._call(self.locate(name), self.client.get_object, Key=self._key(name))["Body"]
        except FileNotFoundError:
            return None
        return bytes(body.read()).decode("utf-8")

    def iter_range(self, name: str, offset: int, length: int) -> Iterator[memoryview]:
        """The bytes [offset, offset+length) in chunks, from one ranged GET: bounded memory."""
        from botocore.exceptions import BotoCoreError

        if length <= 0:
            return
        rng = f"bytes={offset}-{offset + length - 1}"
        body = self._call(self.locate(name), self.client.get_object, Key=self._key(name), Range=rng)["Body"]
        left = length
        try:
            while left:
                chunk = body.read(min(left, READ_CHUNK))
                if not chunk:
                    raise StorageError(f"{self.locate(name)}: the object ended {left:,} bytes early")
                left -= len(chunk)
                yield memoryview(chunk)
        except (BotoCoreError, OSError) as exc:
            raise StorageError(redact(f"{self.locate(name)}: the read failed: {exc}")) from None
        finally:
            body.close()
