"""The S3 backend against moto's S3 server, directly and through the fault proxy: URL forms, bucket
creation, one clear error for a wrong endpoint, bad credentials or a missing bucket, retries with backoff
and jitter on SlowDown and cut uploads, multipart, paged listings, refused deletes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cbr_agent.errors import (
    RepositoryAccessDenied,
    RepositoryError,
    RepositoryExists,
    RepositoryNotFound,
    RepositoryUnavailable,
)
from cbr_agent.repository import Repository
from cbr_agent.repository.backends import BackendOptions, open_backend
from cbr_agent.repository.backends.limit import LimitedBackend
from cbr_agent.repository.backends.s3 import BACKOFF_BASE, S3Backend, parse_s3_url
from tests.integration.conftest import free_port
from tests.integration.repository.conftest import MiB, s3_backend, s3_options
from tests.unit.repository.repo_helpers import CHEAP_KDF, SMALL_CHUNKS

PACK = "c3" + "4" * 62


@given(bucket=st.from_regex(r"[a-z0-9][a-z0-9-]{1,30}[a-z0-9]", fullmatch=True),
       parts=st.lists(st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True), max_size=3))
def test_url_roundtrip(bucket: str, parts: list[str]) -> None:
    prefix = "/".join(parts)
    assert parse_s3_url(f"s3://{bucket}/{prefix}/") == (bucket, prefix)


@pytest.mark.parametrize("url", ["s3://", "s3://A_Bucket/x", "s3://ab/x", "s3://bucket/a//b",
                                 "s3://bucket/../x", "s3://" + "b" * 64])
def test_bad_urls_are_one_clear_error(url: str) -> None:
    with pytest.raises(RepositoryError, match="repository URL"):
        parse_s3_url(url)


def test_init_creates_the_bucket_and_refuses_a_second_repository(moto_s3, bucket_name) -> None:
    url = f"s3://{bucket_name}/hosts/web-1"
    options = s3_options(moto_s3.url)
    repo = Repository.init(url, "pw", kdf=CHEAP_KDF, chunker=SMALL_CHUNKS, options=options)
    assert repo.location == url
    assert Repository.open(url, "pw", options=options).id == repo.id
    with pytest.raises(RepositoryExists):
        Repository.init(url, "pw", kdf=CHEAP_KDF, options=options)
    other = Repository.init(f"s3://{bucket_name}/hosts/web-2", "pw", kdf=CHEAP_KDF, options=options)
    assert other.id != repo.id  # one bucket, a repository per prefix


def test_missing_bucket_is_repository_not_found(moto_s3, bucket_name) -> None:
    with pytest.raises(RepositoryNotFound, match="no repository at"):
        Repository.open(f"s3://{bucket_name}/x", "pw", options=s3_options(moto_s3.url))


def test_wrong_endpoint_is_unavailable_after_retries() -> None:
    slept: list[float] = []
    backend = S3Backend("bucket", "x", s3_options(f"http://127.0.0.1:{free_port()}", s3_retries=3),
                        sleep=slept.append)
    with pytest.raises(RepositoryUnavailable, match="after 3 attempts") as info:
        backend.is_present()
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)
    assert len(slept) == 2
    assert all(0 <= d <= BACKOFF_BASE * 2 ** (n + 1) for n, d in enumerate(slept))  # full jitter


def test_a_bucket_in_another_region_is_named(moto_s3, fault_proxy, bucket_name) -> None:
    fault_proxy.add("redirect")
    with pytest.raises(RepositoryError, match="is in another region") as info:
        Repository.open(f"s3://{bucket_name}/x", "pw", options=s3_options(fault_proxy.url))
    assert info.value.hint == "set s3_region to the bucket's region"


def test_an_endpoint_that_does_not_answer_is_never_taken_for_a_redirect() -> None:
    """A refused connection names the endpoint; '301' in its port or host is no redirect (it was)."""
    port = next(p for p in range(30100, 30200) if _is_free(p))
    backend = S3Backend("bucket", "x", s3_options(f"http://127.0.0.1:{port}", s3_retries=1))
    with pytest.raises(RepositoryUnavailable, match="could not connect"):
        backend.is_present()


def _is_free(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_bad_credentials_are_access_denied(moto_s3, fault_proxy, bucket_name) -> None:
    fault_proxy.add("badkey")
    with pytest.raises(RepositoryAccessDenied, match="InvalidAccessKeyId"):
        Repository.open(f"s3://{bucket_name}/x", "pw", options=s3_options(fault_proxy.url))


def test_slowdown_storm_is_ridden_out(moto_s3, fault_proxy, bucket_name) -> None:
    slept: list[float] = []
    backend = s3_backend(fault_proxy.url, bucket_name, sleep=slept.append, s3_retries=5)
    backend.create()
    fault_proxy.add("slowdown", method="PUT", count=4)
    backend.put("data/" + PACK, b"x" * 1000)
    assert backend.get("data/" + PACK) == b"x" * 1000
    assert fault_proxy.count("PUT", 503) == 4 and len(slept) == 4


def test_storm_longer_than_the_retries_fails_cleanly(moto_s3, fault_proxy, bucket_name) -> None:
    backend = s3_backend(fault_proxy.url, bucket_name, sleep=lambda _s: None, s3_retries=3)
    backend.create()
    fault_proxy.add("slowdown", method="PUT")
    with pytest.raises(RepositoryUnavailable, match="SlowDown"):
        backend.put("data/" + PACK, b"x")
    fault_proxy.clear()
    assert not backend.exists("data/" + PACK)


def test_cut_upload_is_retried_and_never_stored_short(moto_s3, fault_proxy, bucket_name) -> None:
    backend = s3_backend(fault_proxy.url, bucket_name, sleep=lambda _s: None)
    backend.create()
    fault_proxy.add("cut", method="PUT", count=2)
    blob = bytes(range(256)) * 4000
    backend.put("data/" + PACK, blob)
    assert fault_proxy.count("PUT", 0) == 2
    assert backend.size("data/" + PACK) == len(blob) and backend.get("data/" + PACK) == blob


def test_multipart_and_paged_listing(moto_s3, fault_proxy, bucket_name) -> None:
    backend = s3_backend(fault_proxy.url, bucket_name)
    backend.create()
    blob = b"m" * (12 * MiB)
    backend.put("data/" + PACK, blob)
    assert fault_proxy.count("POST", 200, "uploads") == 1  # CreateMultipartUpload
    assert fault_proxy.count("PUT", 200, "partNumber") == 3
    assert backend.get("data/" + PACK, 11 * MiB, 10) == b"m" * 10
    for i in range(25):
        backend.put(f"index/i{i:02d}", b"i")
    before = fault_proxy.count("GET", 200, "list-type=2")
    assert len(list(backend.list("index"))) == 25
    assert fault_proxy.count("GET", 200, "list-type=2") - before == 3  # page size 10


def test_refused_delete_is_access_denied(moto_s3, fault_proxy, bucket_name) -> None:
    backend = s3_backend(fault_proxy.url, bucket_name)
    backend.create()
    backend.put("locks/l1", b"x")
    fault_proxy.add("deny", method="DELETE")
    with pytest.raises(RepositoryAccessDenied, match="AccessDenied"):
        backend.delete("locks/l1")
    assert backend.exists("locks/l1")


def test_open_backend_chooses_s3_and_wraps_limits(moto_s3, bucket_name) -> None:
    options = BackendOptions(**{**s3_options(moto_s3.url).__dict__, "limit_upload": 100.0})
    backend = open_backend(f"s3://{bucket_name}/p", options)
    assert isinstance(backend, LimitedBackend) and isinstance(backend.inner, S3Backend)
    assert backend.upload_parallelism == 4
    assert "secret" not in repr(options).lower() or "s3_secret_access_key" not in repr(options)


def test_timeouts_and_dropped_connections_are_retried_other_errors_are_not() -> None:
    import botocore.exceptions as e

    backend = S3Backend("bucket", "x", s3_options("http://127.0.0.1:9"))
    url = "http://127.0.0.1:9/bucket"
    for exc in (e.ReadTimeoutError(endpoint_url=url), e.ConnectTimeoutError(endpoint_url=url),
                e.ConnectionClosedError(endpoint_url=url), e.EndpointConnectionError(endpoint_url=url)):
        assert backend._classify(exc) == "retry", exc
    slow = e.ClientError({"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}},
                         "PutObject")
    assert backend._classify(slow) == "retry"
    denied = e.ClientError({"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}},
                           "DeleteObject")
    assert backend._classify(denied) == "denied"
    assert backend._classify(e.SSLError(endpoint_url=url, error="bad cert")) == "tls"
    assert backend._classify(e.NoCredentialsError()) == "no-credentials"


def test_prune_helper_aborts_unfinished_multipart_uploads(moto_s3, bucket_name) -> None:
    backend = s3_backend(moto_s3.url, bucket_name)
    backend.create()
    backend.client.create_multipart_upload(Bucket=bucket_name, Key="repo/data/" + PACK)
    backend.client.create_multipart_upload(Bucket=bucket_name, Key="elsewhere/data/" + PACK)
    # (moto reports every upload as started in 2010, so "too young to abort" cannot be shown here)
    assert backend.remove_stale_temp_files(3600) == 1  # ours only, not another prefix's
    left = backend.client.list_multipart_uploads(Bucket=bucket_name).get("Uploads", [])
    assert [u["Key"] for u in left] == ["elsewhere/data/" + PACK]


def test_init_without_the_right_to_create_the_bucket_says_so(moto_s3, fault_proxy, bucket_name) -> None:
    fault_proxy.add("deny", method="PUT", count=1)  # the first PUT of an init is CreateBucket
    with pytest.raises(RepositoryAccessDenied, match=r"does not exist .* may not create it"):
        Repository.init(f"s3://{bucket_name}/x", "pw", kdf=CHEAP_KDF, options=s3_options(fault_proxy.url))
