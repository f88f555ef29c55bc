"""From the configuration to a backend: s3_* keys and credentials (file, environment), TLS settings,
and memory that stays bounded when the storage is slow."""

from __future__ import annotations

import os
import threading
import time

from cbr_agent.config import load_settings
from cbr_agent.repository import Repository
from cbr_agent.repository.backends import BackendOptions
from cbr_agent.repository.backends.memory import MemoryBackend
from cbr_agent.repository.backends.s3 import S3Backend
from tests.unit.repository.repo_helpers import CHEAP_KDF


def test_s3_credentials_come_from_the_credentials_file_and_never_show(tmp_path) -> None:
    creds = tmp_path / "credentials.toml"
    creds.write_text('s3_access_key_id = "AKFILE"\ns3_secret_access_key = "very-secret"\n')
    creds.chmod(0o600)  # a credentials file others may read is refused
    config = tmp_path / "agent.toml"
    config.write_text(f'credentials_file = "{creds}"\nrepository = "s3://bucket/host"\n'
                      's3_endpoint = "https://obs.example.test"\ns3_path_style = true\n')
    settings = load_settings(config_file=config, environ={"CBR_AGENT_S3_CONNECTIONS": "6"})
    options = BackendOptions.from_settings(settings)
    assert options.s3_access_key_id == "AKFILE" and options.s3_secret_access_key == "very-secret"
    assert options.s3_connections == 6 and options.s3_path_style and options.s3_tls_verify
    assert "very-secret" not in repr(options) and "very-secret" not in str(settings.redacted())


def test_client_settings_follow_the_options() -> None:
    backend = S3Backend("bucket", "p", BackendOptions(
        s3_endpoint="https://obs.example.test", s3_region="eu-de", s3_path_style=True,
        s3_ca_bundle="/etc/ssl/obs-ca.pem", s3_connections=3, s3_access_key_id="AK",
        s3_secret_access_key="SK"))
    client = backend.client
    assert client.meta.endpoint_url == "https://obs.example.test" and client.meta.region_name == "eu-de"
    assert client.meta.config.s3["addressing_style"] == "path"
    assert client._endpoint.http_session._verify == "/etc/ssl/obs-ca.pem"
    assert backend.upload_parallelism == 3 and backend.location == "s3://bucket/p"
    unverified = S3Backend("bucket", "", BackendOptions(s3_tls_verify=False, s3_access_key_id="AK",
                                                        s3_secret_access_key="SK"))
    assert unverified.client._endpoint.http_session._verify is False


class SlowBackend(MemoryBackend):
    """Pack writes block until released: a storage that does not answer."""

    def __init__(self) -> None:
        super().__init__()
        self.upload_parallelism = 2
        self.release = threading.Event()
        self.in_flight = 0
        self.most = 0
        self._count = threading.Lock()

    def put(self, name, data) -> None:
        if name.startswith("data/"):
            with self._count:
                self.in_flight += 1
                self.most = max(self.most, self.in_flight)
            self.release.wait(30)
            with self._count:
                self.in_flight -= 1
        super().put(name, data)


def test_memory_stays_bounded_when_the_storage_stalls() -> None:
    backend = SlowBackend()
    repo = Repository.init(backend, "pw", kdf=CHEAP_KDF)
    added = [0]

    def feed() -> None:
        with repo.writer(pack_size=64 * 1024) as writer:
            for _ in range(200):  # 200 packs' worth if nothing held it back
                blob = os.urandom(64 * 1024)  # incompressible: one blob fills a pack
                writer.add(repo.blob_id(blob), blob)
                added[0] += 1

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        time.sleep(1.0)  # the feeder runs until the queue is full, then blocks
        assert feeder.is_alive()
        assert backend.most == 2  # s3_connections uploads at once, no more
        assert added[0] <= 2 + 1 + 1  # in flight + queued + the one being added: memory is bounded
    finally:
        backend.release.set()
        feeder.join(30)
    assert added[0] == 200 and len(list(backend.list("data"))) == 200
