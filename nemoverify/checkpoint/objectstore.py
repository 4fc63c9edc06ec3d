"""Checkpoints in object storage: listed, sized and read with ranged GETs, never downloaded whole.

S3 (or any S3-compatible store): credentials the standard AWS ways (environment, profiles); a
non-AWS endpoint from AWS_ENDPOINT_URL, which boto3 reads itself and which is handed to the streamer
as RUNAI_STREAMER_S3_ENDPOINT, as vLLM does. GCS: the credentials the streamer's GCS extra uses
(RUNAI_STREAMER_GCS_CREDENTIAL_FILE, anonymous, or application default). Azure: the account, endpoint
and credentials the streamer's C++ Azure client reads (AZURE_STORAGE_ACCOUNT_NAME,
AZURE_STORAGE_ENDPOINT_SUFFIX, then AZURE_STORAGE_SAS_TOKEN, AZURE_STORAGE_ACCOUNT_KEY or
DefaultAzureCredential), so both passes read the same blobs as the same principal. Every call has
bounded timeouts and retries, so a dead server ends the run with an error, never a hang; and every
request is reported to `storage_watch` with the bytes it delivers as they arrive, so a server that
trickles ends the run too (`--storage-min-rate`).
"""

from __future__ import annotations

import contextlib
import io
import os
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from nemoverify.checkpoint.problems import CONTROL_CHARACTER
from nemoverify.checkpoint.storage import Fingerprint, UnsafeName, text_limit, too_large
from nemoverify.errors import StorageError
from nemoverify.redaction import redact
from nemoverify.storage_watch import piece_size, transfer

READ_CHUNK = 16 << 20


def object_storage(url: str) -> S3Storage | GCSStorage | AzureStorage:
    if url.startswith("s3://"):
        return S3Storage(url)
    if url.startswith("gs://"):
        return GCSStorage(url)
    if url.startswith("az://"):
        return AzureStorage(url)
    raise StorageError(f"{url}: not an object storage URL (s3://, gs:// or az://)")


class _BucketPrefix:
    """What every object store shares: a bucket, a prefix, and names that must stay under it."""

    scheme = ""

    def __init__(self, url: str) -> None:
        bucket, _, prefix = url[len(self.scheme) :].partition("/")
        if not bucket:
            raise StorageError(f"{url}: no bucket name")
        self.bucket = bucket
        # As the streamer's listing spells it (trailing slashes dropped, leading ones kept): the
        # objects read are the ones vLLM streams, whatever the URL's slashes.
        self.prefix = prefix.rstrip("/")
        self.root = f"{self.scheme}{bucket}/{self.prefix}".rstrip("/")
        self._client: Any = None

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def locate(self, name: str) -> str:
        if not name or name.startswith("/") or "\\" in name or ".." in name.split("/"):
            raise UnsafeName(f"file name {name!r} escapes the checkpoint prefix; refused")
        if CONTROL_CHARACTER.search(name):
            raise UnsafeName(f"file name {name!r} holds a control character; refused")
        return f"{self.scheme}{self.bucket}/{self._key(name)}"

    def size(self, name: str) -> int:
        return self.fingerprint(name)[0]

    def fingerprint(self, name: str) -> Fingerprint:
        raise NotImplementedError

    def changed(self, name: str, fingerprint: Fingerprint) -> str | None:
        """Why the object is no longer the one fingerprinted (size and ETag or generation), or None."""
        try:
            now = self.fingerprint(name)
        except FileNotFoundError:
            return "it was removed"
        return None if now == fingerprint else "it was replaced (its size or ETag changed)"

    def read_at(self, name: str, offset: int, length: int) -> bytes:
        return b"".join(bytes(c) for c in self.iter_range(name, offset, length))

    def iter_range(self, name: str, offset: int, length: int) -> Iterator[memoryview]:
        raise NotImplementedError


class S3Storage(_BucketPrefix):
    scheme = "s3://"
    CONNECT_TIMEOUT, READ_TIMEOUT, ATTEMPTS = 5, 30, 2

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:
                raise StorageError("reading s3:// needs the s3 extra: pip install 'nemoverify[s3]'") from None
            # Two attempts in all (botocore's `max_attempts` counts retries: 2 there made three).
            config = Config(
                connect_timeout=self.CONNECT_TIMEOUT,
                read_timeout=self.READ_TIMEOUT,
                retries={"total_max_attempts": self.ATTEMPTS, "mode": "standard"},
            )
            try:
                self._client = boto3.client("s3", config=config)
            except ValueError as exc:  # botocore's "Invalid endpoint", an IPv6 address left open, ...
                raise StorageError(
                    redact(f"{self.root}: the S3 endpoint is not a usable URL ({exc}); check AWS_ENDPOINT_URL")
                ) from None
        return self._client

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        """One S3 call, its failures turned into the exceptions the checkpoint reader understands,
        each message naming the object and the server (credentials redacted)."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectTimeoutError,
            EndpointConnectionError,
            ReadTimeoutError,
        )

        try:
            with transfer(self.from_server(what)):
                return fn(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(what) from None
            if code == "NoSuchBucket":
                raise StorageError(f"{self.root}: no such bucket '{self.bucket}'") from None
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise StorageError(f"{what}: access denied ({code}); check the AWS credentials") from None
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            said = exc.response.get("Error", {}).get("Message")
            if not code or code.isdigit():  # no S3 error document: botocore names the HTTP status only
                raise StorageError(
                    redact(
                        f"{what}: the server at {self._endpoint()} did not answer as S3 does (HTTP {status}"
                        + (f", {said}" if said else "")
                        + "); check AWS_ENDPOINT_URL"
                    )
                ) from None
            raise StorageError(redact(f"{what}: {code}" + (f": {said}" if said else ""))) from None
        except (ReadTimeoutError, ConnectTimeoutError) as exc:
            kind = "no answer" if isinstance(exc, ReadTimeoutError) else "no connection"
            limit = self.READ_TIMEOUT if isinstance(exc, ReadTimeoutError) else self.CONNECT_TIMEOUT
            raise StorageError(
                redact(f"{what}: {kind} from {self._endpoint()} within {limit} s, in each of {self.ATTEMPTS} attempts")
            ) from None
        except EndpointConnectionError:
            raise StorageError(redact(f"{what}: cannot connect to {self._endpoint()}")) from None
        except BotoCoreError as exc:
            raise StorageError(redact(f"{what}: {exc}")) from None

    def _endpoint(self) -> str:
        return str(self.client.meta.endpoint_url)

    def from_server(self, what: str) -> str:
        return redact(f"{what} (from {self._endpoint()})")

    def _read_body(self, what: str, body: Any, length: int) -> Iterator[bytes]:
        """Up to `length` bytes of a response body, a piece at a time, each piece a request the
        storage watch times (a body read blocks until its piece has arrived, however slowly)."""
        from botocore.exceptions import BotoCoreError

        left = length
        try:
            while left:
                with transfer(self.from_server(what)):
                    chunk = body.read(min(left, piece_size()))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk
        except (BotoCoreError, OSError) as exc:
            raise StorageError(redact(f"{what}: the read failed: {exc}")) from None

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

    def fingerprint(self, name: str) -> Fingerprint:
        head = self._call(self.locate(name), self.client.head_object, Key=self._key(name))
        return int(head["ContentLength"]), zlib.crc32(str(head.get("ETag", "")).encode())

    def read_text(self, name: str) -> str | None:
        """A JSON object of the checkpoint, within `text_limit` (refused by its length before a byte is read)."""
        try:
            reply = self._call(self.locate(name), self.client.get_object, Key=self._key(name))
        except FileNotFoundError:
            return None
        body, limit = reply["Body"], text_limit(name)
        try:
            if int(reply.get("ContentLength") or 0) > limit:
                raise too_large(int(reply["ContentLength"]), limit)
            data = b"".join(self._read_body(self.locate(name), body, limit + 1))
        finally:
            body.close()
        if len(data) > limit:
            raise too_large(len(data), limit)
        return data.decode("utf-8")

    def iter_range(self, name: str, offset: int, length: int) -> Iterator[memoryview]:
        """The bytes [offset, offset+length) in pieces, from one ranged GET: bounded memory."""
        if length <= 0:
            return
        where = self.locate(name)
        rng = f"bytes={offset}-{offset + length - 1}"
        body = self._call(where, self.client.get_object, Key=self._key(name), Range=rng)["Body"]
        left = length
        try:
            for chunk in self._read_body(where, body, length):
                left -= len(chunk)
                yield memoryview(chunk)
            if left:
                raise StorageError(f"{where}: the object ended {left:,} bytes early")
        finally:
            body.close()


class GCSStorage(_BucketPrefix):
    """Google Cloud Storage through google-cloud-storage (the `gcs` extra), with the credentials the
    streamer's GCS extra resolves, so both passes read as the same principal."""

    scheme = "gs://"
    TIMEOUT = (5, 30)  # connect, read: seconds
    # How long one call may keep retrying: about two attempts, as for S3 (the library's default
    # retries for 120 s, so a refused connection took 96 s where S3 took 3.5).
    RETRY_S = 6

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                from google.auth import exceptions as aexc
                from google.cloud import storage
                from runai_model_streamer_gcs.credentials.credentials import get_credentials
            except ImportError:
                raise StorageError("reading gs:// needs the gcs extra: pip install 'nemoverify[gcs]'") from None
            try:
                credentials = get_credentials().gcp_credentials()
            except aexc.GoogleAuthError as exc:
                said = str(exc).split(". ")[0]
                raise StorageError(
                    redact(
                        f"{self.root}: no Google Cloud credentials ({said}); set RUNAI_STREAMER_GCS_CREDENTIAL_FILE "
                        "to a service-account key, run `gcloud auth application-default login`, or set "
                        "RUNAI_STREAMER_GCS_USE_ANONYMOUS_CREDENTIALS=true for a public bucket (the streamer "
                        "reads these too)"
                    )
                ) from None
            self._client = storage.Client(
                project=os.environ.get("GOOGLE_CLOUD_PROJECT", "nemoverify"), credentials=credentials
            )
        return self._client

    def _retry(self) -> Any:
        from google.cloud.storage.retry import DEFAULT_RETRY

        return DEFAULT_RETRY.with_timeout(self.RETRY_S)

    def _call(self, what: str, fn: Any, *args: Any, timed: bool = True, **kwargs: Any) -> Any:
        """One GCS call, its failures turned into the exceptions the checkpoint reader understands;
        `timed` by the storage watch as one request unless the caller counts its bytes itself."""
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as aexc

        try:
            with transfer(self.from_server(what)) if timed else contextlib.nullcontext():
                return fn(*args, timeout=self.TIMEOUT, retry=self._retry(), **kwargs)
        except gexc.RetryError as exc:  # what each attempt met, the last one said
            raise StorageError(
                redact(f"{what}: no answer from {self.server()} in {self.RETRY_S} s of attempts: {exc.cause}")
            ) from None
        except gexc.NotFound as exc:
            if "bucket" in str(exc).lower():
                raise StorageError(f"{self.root}: no such bucket '{self.bucket}'") from None
            raise FileNotFoundError(what) from None
        except (gexc.Forbidden, gexc.Unauthorized, aexc.GoogleAuthError) as exc:
            raise StorageError(
                redact(f"{what}: access denied ({type(exc).__name__}); check the GCS credentials")
            ) from None
        except (gexc.GoogleAPIError, OSError) as exc:  # requests' connection errors are OSErrors
            raise StorageError(redact(f"{what}: {exc}")) from None

    def _blob(self, name: str) -> Any:
        return self.client.bucket(self.bucket).blob(self._key(name))

    def server(self) -> str:
        return os.environ.get("STORAGE_EMULATOR_HOST") or "https://storage.googleapis.com"

    def from_server(self, what: str) -> str:
        return redact(f"{what} (from {self.server()})")

    def _download(self, name: str, start: int, end: int) -> bytes:
        """Bytes [start, end] of an object, in one GET whose bytes are counted as they arrive (the
        library writes the body to a file object 8 KiB at a time)."""
        where = self.locate(name)
        with transfer(self.from_server(where)) as delivered:
            received = _Counted(delivered)
            self._call(where, self._blob(name).download_to_file, received, start=start, end=end, timed=False)
        return received.getvalue()

    def list_safetensors(self) -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""

        def names(timeout: Any, retry: Any) -> list[str]:  # pages lazily: errors surface while iterating
            listing = self.client.list_blobs(self.bucket, prefix=base, delimiter="/", timeout=timeout, retry=retry)
            return [b.name for b in listing]

        keys = self._call(self.root, names)
        return sorted(k[len(base) :] for k in keys if k.endswith(".safetensors"))

    def fingerprint(self, name: str) -> Fingerprint:
        blob = self._call(self.locate(name), self.client.bucket(self.bucket).get_blob, self._key(name))
        if blob is None:
            raise FileNotFoundError(self.locate(name))
        return int(blob.size), zlib.crc32(str(blob.etag or blob.generation).encode())

    def read_text(self, name: str) -> str | None:
        """A JSON object of the checkpoint, within `text_limit` (its size asked first)."""
        try:
            size, limit = self.fingerprint(name)[0], text_limit(name)
            if size > limit:
                raise too_large(size, limit)
            data = self._download(name, 0, limit) if size else b""
        except FileNotFoundError:
            return None
        if len(data) > limit:
            raise too_large(len(data), limit)
        return bytes(data).decode("utf-8")

    def iter_range(self, name: str, offset: int, length: int) -> Iterator[memoryview]:
        """Ranged GETs of READ_CHUNK each: bounded memory, and every request under a timeout."""
        end = offset + length
        while offset < end:
            n = min(READ_CHUNK, end - offset)
            chunk = self._download(name, offset, offset + n - 1)
            if len(chunk) != n:
                raise StorageError(f"{self.locate(name)}: the object ended {end - offset - len(chunk):,} bytes early")
            offset += n
            yield memoryview(chunk)


def _code(error_code: Any) -> str:
    """An Azure error code as the service spells it ("ContainerNotFound"), not as the SDK's enum prints."""
    return str(getattr(error_code, "value", error_code) or "")


class AzureStorage(_BucketPrefix):
    """Azure Blob Storage through azure-storage-blob (the `azure` extra): `az://container/prefix`.

    Addressed and authenticated exactly as the released streamer's C++ client does it, so that the
    reference and the candidate read the same blobs: `https://<AZURE_STORAGE_ACCOUNT_NAME>.<suffix>`
    with the suffix from AZURE_STORAGE_ENDPOINT_SUFFIX (default blob.core.windows.net), and the first
    of AZURE_STORAGE_SAS_TOKEN, AZURE_STORAGE_ACCOUNT_KEY, DefaultAzureCredential. A connection string
    is not used: the released streamer ignores it, and the candidate would read elsewhere.
    """

    scheme = "az://"
    CONNECT_TIMEOUT, READ_TIMEOUT = 5, 30  # seconds

    @property
    def client(self) -> Any:
        """The container's client (the bucket is the container)."""
        if self._client is None:
            try:
                from azure.core.credentials import AzureNamedKeyCredential
                from azure.storage.blob import BlobServiceClient, LinearRetry
            except ImportError:
                raise StorageError("reading az:// needs the azure extra: pip install 'nemoverify[azure]'") from None
            account = os.environ.get("AZURE_STORAGE_ACCOUNT_NAME", "")
            if not account:
                raise StorageError(
                    f"{self.root}: az:// needs AZURE_STORAGE_ACCOUNT_NAME, the only place the Run:ai streamer's "
                    "Azure client takes the account from (it ignores AZURE_STORAGE_CONNECTION_STRING)"
                )
            suffix = os.environ.get("AZURE_STORAGE_ENDPOINT_SUFFIX") or "blob.core.windows.net"
            sas = os.environ.get("AZURE_STORAGE_SAS_TOKEN", "").lstrip("?")
            key = os.environ.get("AZURE_STORAGE_ACCOUNT_KEY", "")
            credential: Any
            if sas:
                credential = sas
            elif key:
                credential = AzureNamedKeyCredential(account, key)
            else:
                try:
                    from azure.identity import DefaultAzureCredential
                except ImportError:
                    raise StorageError(
                        "az:// without AZURE_STORAGE_SAS_TOKEN or AZURE_STORAGE_ACCOUNT_KEY needs azure-identity: "
                        "pip install 'nemoverify[azure]'"
                    ) from None
                credential = DefaultAzureCredential()
            service = BlobServiceClient(
                f"https://{account}.{suffix}",
                credential=credential,
                # Two attempts about a second apart, as for S3 (the SDK's default waits 15 s before its first retry).
                retry_policy=LinearRetry(backoff=1, random_jitter_range=1, retry_total=1),
                connection_timeout=self.CONNECT_TIMEOUT,
                read_timeout=self.READ_TIMEOUT,
            )
            self._client = service.get_container_client(self.bucket)
        return self._client

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """One Azure call, its failures turned into the exceptions the checkpoint reader understands."""
        from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError

        try:
            with transfer(self.from_server(what)):
                return fn(*args, **kwargs)
        except ClientAuthenticationError as exc:
            code = _code(getattr(exc, "error_code", None)) or type(exc).__name__
            raise StorageError(redact(f"{what}: access denied ({code}); check the Azure credentials")) from None
        except HttpResponseError as exc:
            code = _code(getattr(exc, "error_code", None)) or str(exc.status_code or "")
            if code == "ContainerNotFound":
                raise StorageError(f"{self.root}: no such container '{self.bucket}'") from None
            if code in ("BlobNotFound", "404"):
                raise FileNotFoundError(what) from None
            if exc.status_code == 403:
                raise StorageError(redact(f"{what}: access denied ({code}); check the Azure credentials")) from None
            raise StorageError(redact(f"{what}: {code or exc}")) from None
        except (AzureError, OSError) as exc:  # connection refused, timeouts, a server gone
            raise StorageError(redact(f"{what}: {exc}")) from None

    def from_server(self, what: str) -> str:
        account = os.environ.get("AZURE_STORAGE_ACCOUNT_NAME", "")
        suffix = os.environ.get("AZURE_STORAGE_ENDPOINT_SUFFIX") or "blob.core.windows.net"
        return redact(f"{what} (from https://{account}.{suffix})")

    def list_safetensors(self) -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""

        def names() -> list[str]:  # walk_blobs pages lazily: errors surface while iterating
            return [
                b.name
                for b in self.client.walk_blobs(name_starts_with=base, delimiter="/", timeout=self.READ_TIMEOUT)
                if not b.name.endswith("/")  # BlobPrefix entries (the "directories") end with the delimiter
            ]

        keys = self._call(self.root, names)
        return sorted(k[len(base) :] for k in keys if k.endswith(".safetensors"))

    def fingerprint(self, name: str) -> Fingerprint:
        blob = self.client.get_blob_client(self._key(name))
        props = self._call(self.locate(name), blob.get_blob_properties, timeout=self.READ_TIMEOUT)
        return int(props.size), zlib.crc32(str(props.etag).encode())

    def read_text(self, name: str) -> str | None:
        """A JSON blob of the checkpoint, within `text_limit` (its size asked first)."""
        blob = self.client.get_blob_client(self._key(name))
        try:
            size, limit = self.fingerprint(name)[0], text_limit(name)
            if size > limit:
                raise too_large(size, limit)
            length = min(size, limit + 1) or None  # a ranged read of an empty blob is an error
            data = self._call(
                self.locate(name),
                lambda: blob.download_blob(
                    offset=0 if length else None, length=length, timeout=self.READ_TIMEOUT
                ).readall(),
            )
        except FileNotFoundError:
            return None
        if len(data) > limit:
            raise too_large(len(data), limit)
        return bytes(data).decode("utf-8")

    def iter_range(self, name: str, offset: int, length: int) -> Iterator[memoryview]:
        """Ranged GETs of one piece each (`storage_watch.piece_size`): the SDK reads a response whole
        before it returns, so a request that trickles is seen only by the piece it was to deliver."""
        blob = self.client.get_blob_client(self._key(name))
        end = offset + length
        while offset < end:
            n = min(piece_size(), end - offset)

            def get(start: int = offset, count: int = n) -> bytes:
                return bytes(blob.download_blob(offset=start, length=count, timeout=self.READ_TIMEOUT).readall())

            chunk = self._call(self.locate(name), get)
            if len(chunk) != n:
                raise StorageError(f"{self.locate(name)}: the object ended {end - offset - len(chunk):,} bytes early")
            offset += n
            yield memoryview(chunk)


class _Counted(io.BytesIO):
    """A file object that tells `delivered` the length of each write, as the bytes arrive."""

    def __init__(self, delivered: Callable[[int], None]) -> None:
        super().__init__()
        self._delivered = delivered

    def write(self, data: Any) -> int:
        n = super().write(data)
        self._delivered(n)
        return n
