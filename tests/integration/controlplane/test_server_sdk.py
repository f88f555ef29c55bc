"""The official CBR SDK (huaweicloudsdkcbr) pointed at our server: all seven agent calls, over HTTP
and over HTTPS with a self-signed certificate."""

from __future__ import annotations

import datetime as dt
import ipaddress
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from huaweicloudsdkcbr.v1 import (
    AddAgentPathRequest,
    AgentAddPathReq,
    AgentRegister,
    AgentRegisterReq,
    AgentRemovePathReq,
    AgentUpdate,
    AgentUpdateReq,
    CbrClient,
    ExcludePath,
    ListAgentRequest,
    RegisterAgentRequest,
    RemoveAgentPathRequest,
    ShowAgentRequest,
    UnregisterAgentRequest,
    UpdateAgentRequest,
)
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.http.http_config import HttpConfig

from cbr_agent.api.models import AgentRegistration

# the SDK appends "Z" to every timestamp before parsing, so the reference's own format
# ("...334+00:00") comes back as a string with a warning; that is the SDK's quirk, not ours
pytestmark = [pytest.mark.filterwarnings("ignore:Unable to convert string to datetime"),
              pytest.mark.filterwarnings("ignore:Unverified HTTPS request")]


def sdk_client(server: Any, *, sk: str | None = None) -> CbrClient:
    config = HttpConfig.get_default_config()
    config.ignore_ssl_verification = True
    config.timeout = (5, 10)
    creds = BasicCredentials(server.ak, sk or server.sk, server.project_id)
    return CbrClient.new_builder().with_http_config(config).with_credentials(creds) \
        .with_endpoint(server.url).build()


def seven_calls(client: CbrClient) -> None:
    agent_id = str(uuid.uuid4())
    reg = client.register_agent(RegisterAgentRequest(body=AgentRegisterReq(agent=AgentRegister(
        agent_id=agent_id, host_name="sdk-host-ü", host_ip="10.1.2.3", host_os="linux",
        agent_version="1.0.0", agent_type="native"))))
    assert reg.agent.agent_id == agent_id and reg.agent.status == "normal"
    assert reg.agent.host_name == "sdk-host-ü"
    added = client.add_agent_path(AddAgentPathRequest(agent_id=agent_id, body=AgentAddPathReq(
        add_path=["/home/hcp", "/opt/workspace/"],
        exclude_path=[ExcludePath(path_name="/home/hcp", exclude_path_name=["/home/hcp/1", "*.txt"])])))
    assert added.added == ["/home/hcp", "/opt/workspace"] and added.existed == []
    shown = client.show_agent(ShowAgentRequest(agent_id=agent_id))
    assert [p.dir_path for p in shown.agent.paths] == ["/home/hcp", "/opt/workspace"]
    assert shown.agent.paths[0].exclude_paths == "/home/hcp/1,*.txt"
    listed = client.list_agent(ListAgentRequest(agent_id=[agent_id, str(uuid.uuid4())], limit="10",
                                                offset=0, status="normal"))
    assert listed.count == 1 and listed.limit == 10 and listed.agents[0].agent_id == agent_id
    updated = client.update_agent(UpdateAgentRequest(agent_id=agent_id, body=AgentUpdateReq(
        agent=AgentUpdate(status="uninstall"))))
    assert updated.agent.status == "uninstall"
    removed = client.remove_agent_path(RemoveAgentPathRequest(agent_id=agent_id, body=AgentRemovePathReq(
        remove_path=["/opt/workspace", "/nope"])))
    assert removed.removed == ["/opt/workspace"] and removed.not_existed == ["/nope"]
    client.unregister_agent(UnregisterAgentRequest(agent_id=agent_id))
    with pytest.raises(ClientRequestException) as exc_info:
        client.show_agent(ShowAgentRequest(agent_id=agent_id))
    assert (exc_info.value.status_code, exc_info.value.error_code) == (404, "BackupService.6302")


def test_sdk_seven_calls_over_http(cp_server_module: Any) -> None:
    seven_calls(sdk_client(cp_server_module))


def test_sdk_sees_auth_errors(cp_server_module: Any) -> None:
    with pytest.raises(ClientRequestException) as exc_info:
        sdk_client(cp_server_module, sk="wrong").list_agent(ListAgentRequest())
    assert (exc_info.value.status_code, exc_info.value.error_code) == (401, "APIGW.0301")


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def test_sdk_and_client_over_https(cp_server_factory: Any, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server = cp_server_factory(extra_args=["--tls-cert", str(cert), "--tls-key", str(key)])
    assert server.url.startswith("https://")
    seven_calls(sdk_client(server))
    # our own client verifies the certificate against the CA bundle it is given
    with server.client(verify=str(cert), max_attempts=1) as client:
        agent = client.register_agent(AgentRegistration(str(uuid.uuid4()), "h", "10.0.0.1", "linux"))
        assert agent.status == "normal"
