"""botocore internals the package touches are guarded: when one is missing in some botocore
version, creds_core warns once and takes botocore's plain path, never crashes.

(``make compat`` runs the parity suite against the lowest supported botocore as well.)
"""

from __future__ import annotations

import logging

import botocore
import botocore.hooks
import pytest
from botocore.credentials import ReadOnlyCredentials

import creds_core.boto3 as cb
from creds_core import Credentials
from creds_core import _sessions as sessions
from creds_core._botocore import frozen_credentials
from creds_core.providers import identity_center
from server_fixtures import StsServer

ROLE = "arn:aws:iam::123456789012:role/compat"


@pytest.fixture(autouse=True)
def _isolated(isolated_aws: object) -> None:
    pass


def test_role_sessions_fall_back_to_plain_sessions_when_an_internal_is_missing(
    monkeypatch: pytest.MonkeyPatch, sts_server: StsServer, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(
        sessions,
        "_REQUIRED_INTERNALS",
        (*sessions._REQUIRED_INTERNALS, (botocore.hooks, "_NoSuchInternal")),
    )
    monkeypatch.setattr(sessions, "_WARNED", set())
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts_server.url)
    source = cb.session(
        region_name="us-east-1", aws_access_key_id="AKIDCOMPAT", aws_secret_access_key="s"
    )
    with caplog.at_level(logging.WARNING, logger="creds_core._sessions"):
        first = cb.assume_role(source, ROLE, role_session_name="plain-1")
        second = cb.assume_role(source, ROLE, role_session_name="plain-2")
    assert not isinstance(first._session, sessions.AccountBotocoreSession)
    warnings = [r for r in caplog.records if "_NoSuchInternal" in r.getMessage()]
    assert len(warnings) == 1  # once per process
    # The plain session still signs through the role's cache.
    assert cb.get_cache(first) is not None and cb.get_cache(first) is not cb.get_cache(second)
    frozen = first.get_credentials().get_frozen_credentials()
    assert frozen.access_key == sts_server.issued[0].access_key_id
    assert first.get_credentials().method == "assume-role"
    assert cb.sts_endpoint(source) == sts_server.url


def test_frozen_credentials_match_readonlycredentials_of_this_botocore() -> None:
    frozen = frozen_credentials("AK", "SK", "TOKEN", "111122223333")
    assert isinstance(frozen, ReadOnlyCredentials)
    assert frozen._fields == ReadOnlyCredentials._fields
    assert tuple(frozen)[:3] == ("AK", "SK", "TOKEN")


def test_identity_center_fetch_falls_back_when_refresh_internals_are_missing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Plain:  # what a botocore without RefreshableCredentials._refresh_using would give
        def get_frozen_credentials(self) -> ReadOnlyCredentials:
            return ReadOnlyCredentials("AKPLAIN", "secret", "token")

    monkeypatch.setattr(identity_center, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="creds_core.providers.identity_center"):
        data = identity_center._fetch("sso", Plain())
        identity_center._fetch("sso", Plain())
    assert Credentials.from_mapping(data).access_key_id == "AKPLAIN"
    assert len([r for r in caplog.records if "_refresh_using" in r.getMessage()]) == 1
