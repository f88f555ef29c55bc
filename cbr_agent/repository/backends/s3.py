"""S3Backend: a repository in an S3-compatible bucket (OBS, MinIO, Ceph RGW, AWS S3), on botocore (boto3).

Objects are ``PREFIX/<type>/<name>`` (``PREFIX/config``). A PUT is atomic on S3 (the object appears whole
or not at all); each carries a Content-MD5, so a body cut short on the way is refused by the server rather
than stored. Objects larger than :attr:`S3Backend.single_put_max` go up as a multipart upload. Reads of a
pack's blobs are ranged GETs; listings page (``list_objects_v2``, one page in memory at a time).

Every request is retried with exponential backoff and full jitter on throttling (503 SlowDown), 5xx,
timeouts, dropped connections and short reads, ``s3_retries`` attempts in all; botocore's own retries are
off so that there is one policy, with an injectable sleep for tests. What cannot be retried becomes one
line: :class:`~cbr_agent.errors.RepositoryNotFound` (no bucket), :class:`RepositoryAccessDenied` (bad
credentials, a policy that refuses), :class:`RepositoryUnavailable` (endpoint unreachable), or a
:class:`RepositoryError`. Secrets never appear in a message.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

from cbr_agent.errors import (
    RepositoryAccessDenied,
    RepositoryError,
    RepositoryExists,
    RepositoryNotFound,
    RepositoryUnavailable,
)
from cbr_agent.repository.backend import TYPES, Buffer
from cbr_agent.repository.backends import BackendOptions
from cbr_agent.repository.backends.memory import check_name, join_buffers

log = logging.getLogger(__name__)

SINGLE_PUT_MAX = 64 * 1024 * 1024  # packs (8 MiB) go up in one PUT; larger objects as multipart
PART_SIZE = 16 * 1024 * 1024
PAGE_SIZE = 1000
BACKOFF_BASE = 0.25  # seconds; attempt n waits up to BACKOFF_BASE * 2**n, capped
BACKOFF_CAP = 20.0

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_RETRY_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestThrottled", "TooManyRequests",
    "RequestTimeout", "RequestTimeoutException", "InternalError", "ServiceUnavailable", "503", "500",
    "502", "504", "BadDigest", "IncompleteBody",
})
_DENIED_CODES = frozenset({
    "AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
    "TokenRefreshRequired", "AllAccessDisabled", "AccountProblem", "InvalidSecurity",
})
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


class _ShortRead(Exception):
    """The body of a GET ended before its Content-Length (a dropped connection): retried."""


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://BUCKET/PREFIX`` -> ``(bucket, prefix)``; the prefix has no leading or trailing slash."""
    rest = url[len("s3://") :] if url.startswith("s3://") else url
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise RepositoryError(
            f"repository URL {url!r}: {bucket!r} is not a valid bucket name",
            hint="use s3://BUCKET/PREFIX with a bucket of 3-63 lower-case letters, digits, '.' or '-'",
        )
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise RepositoryError(f"repository URL {url!r}: the prefix has an empty, '.' or '..' part")
    return bucket, prefix


def _import_botocore() -> tuple[Any, Any, Any]:
    try:
        import botocore.config
        import botocore.exceptions
        import botocore.session
    except ImportError:
        raise RepositoryError(
            "s3:// repositories need boto3 (botocore), which is not installed",
            hint="pip install 'cbr-agent[s3]' (the deb and rpm packages include it)",
        ) from None
    return botocore.session, botocore.config, botocore.exceptions


class S3Backend:
    """A bucket and a prefix; thread-safe (a boto3 client is)."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        options: BackendOptions | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        single_put_max: int = SINGLE_PUT_MAX,
        part_size: int = PART_SIZE,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.options = options or BackendOptions()
        self.bucket = bucket
        self.prefix = prefix
        self.location = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self.endpoint = self.options.s3_endpoint or "AWS S3"
        self.upload_parallelism = max(1, int(self.options.s3_connections))
        self.retries = max(1, int(self.options.s3_retries))
        self.single_put_max = single_put_max
        self.part_size = part_size  # S3 wants at least 5 MiB for every part but the last
        self.page_size = page_size
        self._sleep = sleep
        # test knob: tests of the CLI shorten the backoff (in-process tests inject ``sleep`` instead)
        self.backoff_base = float(os.environ.get("CBR_AGENT_TEST_S3_BACKOFF") or BACKOFF_BASE)
        self._exc: Any = None
        self.client = self._make_client()

    @classmethod
    def from_url(cls, url: str, options: BackendOptions) -> S3Backend:
        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix, options)

    def _make_client(self) -> Any:
        # botocore alone (boto3's core): boto3 and s3transfer would add about 0.1 s to every command
        sessions, config, exceptions = _import_botocore()
        self._exc = exceptions
        o = self.options
        session = sessions.get_session()  # the usual AWS_* variables, ~/.aws files, profiles, roles
        if o.s3_access_key_id or o.s3_secret_access_key:
            session.set_credentials(o.s3_access_key_id, o.s3_secret_access_key, o.s3_session_token or None)
        region = o.s3_region or session.get_config_variable("region") or "us-east-1"
        cfg = config.Config(
            signature_version="s3v4",
            max_pool_connections=self.upload_parallelism + 4,  # uploads + restore/check readers
            retries={"total_max_attempts": 1},  # our own retry policy below
            connect_timeout=10,
            read_timeout=60,
            s3={"addressing_style": "path" if o.s3_path_style else "auto"},
            # the newer default CRC checksums are not understood by every S3-compatible store;
            # we send Content-MD5, which all of them check
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        verify: bool | str = o.s3_ca_bundle if o.s3_ca_bundle else bool(o.s3_tls_verify)
        return session.create_client("s3", region_name=region, endpoint_url=o.s3_endpoint or None,
                                     verify=verify, config=cfg)

    # ------------------------------------------------------------------ requests and their errors
    def _key(self, name: str) -> str:
        check_name(name)
        return f"{self.prefix}/{name}" if self.prefix else name

    def _call(self, what: str, request: Callable[[], Any], *, missing_ok: bool = False) -> Any:
        """Run ``request`` with retries; FileNotFoundError for a missing object when ``missing_ok``."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return request()
            except Exception as exc:  # classified below; anything unknown is re-raised as it is
                kind = self._classify(exc)
                if kind == "missing" and missing_ok:
                    raise FileNotFoundError(what) from None
                if kind == "retry" and attempt < self.retries:
                    delay = random.uniform(0, min(BACKOFF_CAP, self.backoff_base * 2**attempt))
                    log.debug("S3 %s failed (%s); retry %d of %d in %.1f s", what, self._short(exc),
                              attempt, self.retries - 1, delay)
                    self._sleep(delay)
                    continue
                self._raise(what, exc, kind, attempt)

    def _classify(self, exc: Exception) -> str:
        e = self._exc
        if isinstance(exc, _ShortRead):
            return "retry"
        if isinstance(exc, e.ClientError):
            code, status = _code(exc), _status(exc)
            if code in _MISSING_CODES:
                return "missing"
            if code in ("NoSuchBucket",):
                return "no-bucket"
            if code in _DENIED_CODES:
                return "denied"
            if code == "PermanentRedirect" or status == 301:
                return "wrong-region"
            if code in _RETRY_CODES or status >= 500 or status == 429:
                return "retry"
            return "other"
        if isinstance(exc, e.SSLError):
            return "tls"
        if isinstance(exc, (e.NoCredentialsError, e.PartialCredentialsError)):
            return "no-credentials"
        if isinstance(exc, (e.ConnectionError, e.HTTPClientError, e.IncompleteReadError)):
            return "retry"  # refused, reset, timed out, cut short
        return "unknown"

    def _raise(self, what: str, exc: Exception, kind: str, attempts: int) -> NoReturn:
        where = f"{self.location} at {self.endpoint}"
        if kind == "no-bucket":
            raise RepositoryNotFound(f"S3 bucket {self.bucket!r} does not exist at {self.endpoint}",
                                     hint="create it with 'cbr-agent init', or check the URL and "
                                     "s3_endpoint") from None
        if kind == "denied":
            code = _code(exc)
            hint = None
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"):
                hint = ("check s3_access_key_id and s3_secret_access_key (credentials file) or "
                        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
            elif code == "403":
                code = "403 Forbidden"
            raise RepositoryAccessDenied(f"S3 refused {what} in {where}: {code}", hint=hint) from None
        if kind == "wrong-region":
            raise RepositoryError(f"S3 bucket {self.bucket!r} is in another region than {self.endpoint} "
                                  "serves", hint="set s3_region to the bucket's region") from None
        if kind == "tls":
            raise RepositoryUnavailable(
                f"TLS verification of the S3 endpoint {self.endpoint} failed",
                hint="set s3_ca_bundle to the CA that signed its certificate") from None
        if kind == "no-credentials":
            raise RepositoryAccessDenied(
                f"no S3 credentials for {self.location}",
                hint="set s3_access_key_id and s3_secret_access_key in the credentials file, or "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY") from None
        if kind == "retry":
            tries = f" after {attempts} attempts" if attempts > 1 else ""
            raise RepositoryUnavailable(
                f"S3 {what} in {where} failed{tries}: {self._short(exc)}") from None
        if kind in ("other", "missing"):
            raise RepositoryError(f"S3 {what} in {where} failed: {self._short(exc)}") from None
        raise exc

    def _short(self, exc: Exception) -> str:
        e = self._exc
        if isinstance(exc, e.ClientError):
            return _code(exc)
        for cls, words in ((e.ConnectTimeoutError, "connecting timed out"),
                           (e.ReadTimeoutError, "no answer in time"),
                           (e.EndpointConnectionError, "could not connect"),
                           (e.ConnectionClosedError, "the connection was closed"),
                           (e.ConnectionError, "the connection failed"),
                           (e.HTTPClientError, "the connection failed"),
                           (e.IncompleteReadError, "the answer was cut short")):
            if isinstance(exc, cls):
                return words
        return _short_text(exc)

    # ------------------------------------------------------------------ lifecycle
    def _bucket_exists(self) -> bool:
        try:
            # a listing rather than HEAD: its error has a body (InvalidAccessKeyId, NoSuchBucket, ...)
            self._call("checking the bucket", lambda: self.client.list_objects_v2(
                Bucket=self.bucket, Prefix=f"{self.prefix}/" if self.prefix else "", MaxKeys=1),
                missing_ok=True)
        except FileNotFoundError:
            return False
        except RepositoryNotFound:
            return False
        return True

    def is_present(self) -> bool:
        return self._bucket_exists()

    def is_empty(self) -> bool:
        prefix = f"{self.prefix}/" if self.prefix else ""
        page = self._call("listing", lambda: self.client.list_objects_v2(
            Bucket=self.bucket, Prefix=prefix, MaxKeys=1))
        return not page.get("Contents")

    def create(self) -> None:
        if not self._bucket_exists():
            self._create_bucket()
        if self.exists("config"):
            raise RepositoryExists(f"a repository already exists at {self.location}")
        if self.is_empty():
            return
        # what an init killed before its config leaves: key and lock objects only; clear them
        if any(True for t in ("data", "index", "snapshots") for _ in self.list(t)):
            raise RepositoryExists(f"{self.location} is not empty")
        for t in ("keys", "locks"):
            for name, _size in list(self.list(t)):
                self.delete(f"{t}/{name}")
        if not self.is_empty():
            raise RepositoryExists(f"{self.location} is not empty")

    def _create_bucket(self) -> None:
        region = self.client.meta.region_name
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self._call(f"creating bucket {self.bucket!r}", lambda: self.client.create_bucket(**kwargs))
        except RepositoryAccessDenied:
            raise RepositoryAccessDenied(
                f"S3 bucket {self.bucket!r} does not exist at {self.endpoint} and these credentials may "
                "not create it", hint="create the bucket, or use credentials that may") from None
        except RepositoryError as exc:
            if "BucketAlreadyOwnedByYou" not in str(exc):
                raise
        log.info("created S3 bucket %s at %s", self.bucket, self.endpoint)

    # ------------------------------------------------------------------ objects
    def put(self, name: str, data: Buffer | Sequence[Buffer]) -> None:
        key = self._key(name)
        body = join_buffers(data)
        if len(body) > self.single_put_max:
            self._put_multipart(name, key, body)
            return
        md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode("ascii")
        self._call(f"writing {name}", lambda: self.client.put_object(
            Bucket=self.bucket, Key=key, Body=body, ContentMD5=md5, ContentLength=len(body)))

    def _put_multipart(self, name: str, key: str, body: bytes) -> None:
        upload = self._call(f"starting the upload of {name}", lambda: self.client.create_multipart_upload(
            Bucket=self.bucket, Key=key))
        upload_id = upload["UploadId"]
        view = memoryview(body)
        parts = []
        try:
            for number, start in enumerate(range(0, len(body), self.part_size), start=1):
                chunk = bytes(view[start : start + self.part_size])
                md5 = base64.b64encode(hashlib.md5(chunk, usedforsecurity=False).digest()).decode("ascii")
                answer = self._call(f"writing part {number} of {name}", lambda n=number, c=chunk, m=md5:
                                    self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                            PartNumber=n, Body=c, ContentMD5=m))
                parts.append({"PartNumber": number, "ETag": answer["ETag"]})
            self._call(f"finishing the upload of {name}", lambda: self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}))
        except BaseException:
            with contextlib.suppress(Exception):  # best effort; a lifecycle rule cleans up the rest
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        key = self._key(name)
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("negative offset or length")
        if length == 0:
            self.size(name)  # FileNotFoundError when missing, as the other backends
            return b""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if offset or length is not None:
            kwargs["Range"] = f"bytes={offset}-" + ("" if length is None else str(offset + length - 1))

        def fetch() -> bytes:
            answer = self.client.get_object(**kwargs)
            body = answer["Body"].read()
            expected = answer.get("ContentLength")
            if expected is not None and len(body) != expected:
                raise _ShortRead(f"got {len(body)} of {expected} bytes")
            return bytes(body)

        try:
            return self._call(f"reading {name}", fetch, missing_ok=True)
        except RepositoryError as exc:
            if "InvalidRange" in str(exc):  # offset at or past the end: nothing there, as pread says
                self.size(name)
                return b""
            raise

    def list(self, type_: str) -> Iterator[tuple[str, int]]:
        if type_ not in TYPES:
            raise ValueError(f"bad object type {type_!r}")
        prefix = f"{self.prefix}/{type_}/" if self.prefix else f"{type_}/"
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": self.page_size}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call(f"listing {type_}", lambda kw=kwargs: self.client.list_objects_v2(**kw))
            for item in page.get("Contents", ()):
                base = item["Key"][len(prefix) :]
                if base and "/" not in base and not base.startswith("."):
                    yield base, int(item["Size"])
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def delete(self, name: str) -> None:
        key = self._key(name)
        try:
            self._call(f"deleting {name}", lambda: self.client.delete_object(Bucket=self.bucket, Key=key),
                       missing_ok=True)
        except FileNotFoundError:
            return

    def remove_stale_temp_files(self, older_than: float) -> int:
        """Abort multipart uploads under the prefix started more than ``older_than`` seconds ago (what
        a writer killed in the middle of one leaves; the storage bills their parts). Prune calls this
        under its exclusive lock, as it clears the directory backend's temp files."""
        prefix = f"{self.prefix}/" if self.prefix else ""
        cutoff = time.time() - older_than
        removed = 0
        stale: list[tuple[str, str]] = []
        markers: dict[str, str] = {}
        while True:
            page = self._call("listing unfinished uploads", lambda m=markers:
                              self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=prefix, **m))
            for upload in page.get("Uploads", ()):
                started = upload.get("Initiated")
                if started is None or started.timestamp() <= cutoff:
                    stale.append((upload["Key"], upload["UploadId"]))
            if not page.get("IsTruncated"):
                break
            markers = {"KeyMarker": page.get("NextKeyMarker", ""),
                       "UploadIdMarker": page.get("NextUploadIdMarker", "")}
        for key, upload_id in stale:
            self._call(f"aborting the upload of {key}", lambda k=key, u=upload_id:
                       self.client.abort_multipart_upload(Bucket=self.bucket, Key=k, UploadId=u))
            removed += 1
        return removed

    def _head(self, name: str) -> dict[str, Any]:
        key = self._key(name)
        return self._call(f"checking {name}", lambda: self.client.head_object(Bucket=self.bucket, Key=key),
                          missing_ok=True)

    def exists(self, name: str) -> bool:
        try:
            self._head(name)
        except FileNotFoundError:
            return False
        return True

    def size(self, name: str) -> int:
        return int(self._head(name)["ContentLength"])


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", "")) or str(_status(exc))


def _status(exc: Any) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _short_text(exc: Exception) -> str:
    """The error in a few words (botocore's messages can carry a whole URL; no secrets are in them)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
