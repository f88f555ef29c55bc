"""Backends for the conformance suite (directory, memory, S3), and the S3 server they need.

``moto_s3``      moto's S3 server on 127.0.0.1, an ephemeral port, one per test session
``s3_env``       environment for a CLI subprocess: test credentials, no instance metadata lookups
``bucket_name``  a fresh bucket name per test (moto keeps every bucket for the session)
``fault_proxy``  a :class:`FaultProxy` in front of moto, one per test
"""

from __future__ import annotations

import secrets

import pytest

from cbr_agent.repository.backend import DirectoryBackend
from cbr_agent.repository.backends import BackendOptions
from cbr_agent.repository.backends.memory import MemoryBackend
from tests.integration.repository.s3server import ACCESS_KEY, SECRET_KEY, FaultProxy, MotoS3

BACKENDS = ["directory", "memory", "s3"]
MiB = 1024 * 1024


@pytest.fixture(scope="session")
def moto_s3():
    server = MotoS3()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_instance_metadata(monkeypatch):
    """botocore must never look for credentials at the cloud metadata address (not loopback)."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def bucket_name() -> str:
    return "cbr-test-" + secrets.token_hex(6)


@pytest.fixture
def fault_proxy(moto_s3):
    proxy = FaultProxy(moto_s3.port)
    yield proxy
    proxy.stop()


def s3_options(endpoint: str, **kw) -> BackendOptions:
    kw.setdefault("s3_retries", 4)
    return BackendOptions(s3_endpoint=endpoint, s3_region="us-east-1", s3_path_style=True,
                          s3_access_key_id=ACCESS_KEY, s3_secret_access_key=SECRET_KEY, **kw)


def s3_backend(endpoint: str, bucket: str, prefix: str = "repo", *, sleep=None, **kw):
    from cbr_agent.repository.backends.s3 import S3Backend

    extra = {"sleep": sleep} if sleep is not None else {}
    return S3Backend(bucket, prefix, s3_options(endpoint, **kw), single_put_max=5 * MiB, part_size=5 * MiB,
                     page_size=10, **extra)


@pytest.fixture(params=BACKENDS)
def any_backend(request, tmp_path, bucket_name):
    if request.param == "directory":
        backend = DirectoryBackend(tmp_path / "repo")
    elif request.param == "memory":
        backend = MemoryBackend()
    else:
        backend = s3_backend(request.getfixturevalue("moto_s3").url, bucket_name)
    backend.create()
    return backend
