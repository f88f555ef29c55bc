"""Whatever the authentication headers hold, :func:`authenticate` answers with an AuthError (401/403)
or accepts: never another exception, which the server would turn into a 500 (issue 10.8)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cbr_agent.controlplane.auth import authenticate
from cbr_agent.controlplane.credentials import AccessKey, Credentials, token_digest
from cbr_agent.errors import AuthError

CREDS = Credentials(access_keys={"AK1": AccessKey("AK1", "SK1", "p")}, tokens={token_digest("tok"): "p"})
NOW = datetime(2024, 4, 16, 9, 53, 41, tzinfo=timezone.utc)
header_names = st.sampled_from(["host", "x-sdk-date", "content-type", "x-a", "", ";", "authorization"])
authorizations = st.one_of(
    st.text(),
    st.builds(lambda ak, signed, sig: f"SDK-HMAC-SHA256 Access={ak}, SignedHeaders={signed}, Signature={sig}",
              st.sampled_from(["AK1", "", "x", "AK1 "]), st.lists(header_names).map(";".join),
              st.text(max_size=70)),
)


@settings(max_examples=1000, deadline=None)
@given(authorization=authorizations, headers=st.dictionaries(header_names, st.text(max_size=20)),
       path=st.text(max_size=30), body=st.binary(max_size=20),
       query=st.lists(st.tuples(st.text(max_size=5), st.text(max_size=5)), max_size=3),
       date=st.one_of(st.just("20240416T095341Z"), st.text(max_size=20)))
@example(authorization="SDK-HMAC-SHA256 Access=AK1, SignedHeaders=host;x-sdk-date, Signature=\x80",
         headers={}, path="/", body=b"", query=[], date="20240416T095341Z")
def test_any_authorization_is_accepted_or_an_auth_error(authorization: str, headers: dict[str, str],
                                                        path: str, body: bytes,
                                                        query: list[tuple[str, str]], date: str) -> None:
    headers = {**headers, "authorization": authorization, "x-sdk-date": date}
    try:
        authenticate(CREDS, method="POST", path=path, query=query, headers=headers, body=body,
                     project_id="p", now=NOW)
    except AuthError as exc:
        assert exc.status in (401, 403)


@pytest.mark.parametrize("token", ["", " ", "\x80", "\ufffd", "tok\x00", "t" * 100_000])
def test_any_token_is_an_auth_error(token: str) -> None:
    with pytest.raises(AuthError):
        authenticate(CREDS, method="GET", path="/", query=[], headers={"x-auth-token": token}, body=b"",
                     project_id="p", now=NOW)
