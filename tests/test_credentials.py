"""Credentials: immutable, redacted, and built from every mapping shape AWS uses."""

from __future__ import annotations

import pickle
from datetime import datetime, timedelta, timezone

import pytest
from botocore.credentials import ReadOnlyCredentials

from creds_core import Credentials
from helpers import SECRET, TOKEN


def test_repr_and_str_never_show_the_secret_or_the_token() -> None:
    c = Credentials("AKIDEXAMPLE", SECRET, TOKEN, "2030-01-01T00:00:00Z", account_id="123456789012")
    for shown in (repr(c), str(c), f"{c}", format(c, "")):
        assert "AKIDEXAMPLE" in shown
        assert SECRET not in shown
        assert TOKEN not in shown


def test_expiry_accepts_aware_datetime_iso_string_and_epoch_seconds() -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    for value in (when, "2030-01-02T03:04:05Z", "2030-01-02T04:04:05+01:00", when.timestamp()):
        assert Credentials("a", "s", expiry=value).expiry == when
    assert Credentials("a", "s").expiry is None


# Every form botocore reads an expiry in, and what botocore makes of it.
EXPIRY_FORMS = [
    "2030-01-02T03:04:05Z",
    "2030-01-02T03:04:05.250Z",
    "2030-01-02T04:04:05+01:00",
    "2030-01-02T03:04:05",  # no zone: UTC
    "2030-01-02 03:04:05",
    "20300102T030405Z",  # ISO 8601 basic format
    "Wed, 02 Jan 2030 03:04:05 GMT",  # RFC 822
    "Wed, 02 Jan 2030 04:04:05 +0100",
    "1893553445",  # epoch seconds as text
    1893553445,
    1893553445.0,
    datetime(2030, 1, 2, 3, 4, 5),  # naive: UTC
    datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
]


@pytest.mark.parametrize("value", EXPIRY_FORMS, ids=repr)
def test_one_expiry_rule_botocores_for_every_path(value: object) -> None:
    from botocore.utils import parse_to_aware_datetime

    from creds_core.providers._util import parse_expiry

    expected = parse_to_aware_datetime(value)  # type: ignore[arg-type]
    assert Credentials("a", "s", expiry=value).expiry == expected  # type: ignore[arg-type]
    mapping = {"AccessKeyId": "a", "SecretAccessKey": "s", "Expiration": value}
    assert Credentials.from_mapping(mapping).expiry == expected
    assert parse_expiry(value) == expected


def test_custom_provider_may_answer_an_rfc_822_expiry() -> None:
    from creds_core import CredentialCache

    answer = {"AccessKeyId": "AKRFC822", "SecretAccessKey": "s",
              "Expiration": "Tue, 01 Jan 2030 00:00:00 GMT"}  # fmt: skip
    got = CredentialCache(lambda: answer).get()
    assert got.expiry == datetime(2030, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("bad", ["tomorrow", "2030-13-45T00:00:00Z", "", True, [1]])
def test_unparsable_expiry_is_a_value_error(bad: object) -> None:
    with pytest.raises(ValueError, match="expiry"):
        Credentials("a", "s", expiry=bad)  # type: ignore[arg-type]


def test_empty_keys_are_rejected() -> None:
    with pytest.raises(ValueError, match="access_key_id"):
        Credentials("", "s")
    with pytest.raises(ValueError, match="secret_access_key"):
        Credentials("a", " ")


def test_credentials_are_immutable_and_not_picklable() -> None:
    c = Credentials("a", SECRET)
    with pytest.raises(AttributeError):
        c.access_key_id = "b"  # type: ignore[misc]
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(c)


def test_from_mapping_reads_botocore_metadata_keys() -> None:
    c = Credentials.from_mapping(
        {
            "access_key": "AK",
            "secret_key": SECRET,
            "token": TOKEN,
            "expiry_time": "2030-01-01T00:00:00Z",
        }
    )
    assert (c.access_key_id, c.secret_access_key, c.session_token) == ("AK", SECRET, TOKEN)
    assert c.expiry == datetime(2030, 1, 1, tzinfo=timezone.utc)


def test_from_mapping_reads_sts_keys_with_a_datetime_expiration() -> None:
    exp = datetime.now(timezone.utc) + timedelta(hours=1)
    c = Credentials.from_mapping(
        {
            "AccessKeyId": "ASIA1",
            "SecretAccessKey": SECRET,
            "SessionToken": TOKEN,
            "Expiration": exp,
        }
    )
    assert (c.access_key_id, c.session_token, c.expiry) == ("ASIA1", TOKEN, exp)


def test_from_mapping_reads_credential_process_and_container_keys() -> None:
    c = Credentials.from_mapping(
        {
            "Version": 1,
            "AccessKeyId": "AKP",
            "SecretAccessKey": SECRET,
            "SessionToken": TOKEN,
            "Expiration": "2030-01-01T00:00:00Z",
            "AccountId": "123456789012",
        },
        provider_name="custom-process",
    )
    assert (c.account_id, c.provider_name) == ("123456789012", "custom-process")
    container = Credentials.from_mapping(
        {"AccessKeyId": "AKC", "SecretAccessKey": SECRET, "Token": TOKEN}
    )
    assert container.session_token == TOKEN


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"SecretAccessKey": SECRET}, "no access key id"),
        ({"AccessKeyId": "AK"}, "no secret access key"),
        ({"AccessKeyId": "", "SecretAccessKey": SECRET}, "AccessKeyId is empty"),
        ({"AccessKeyId": "AK", "SecretAccessKey": SECRET, "Version": 2}, "Version"),
        ({"AccessKeyId": "AK", "SecretAccessKey": SECRET, "Expiration": "soon"}, "Expiration"),
    ],
)
def test_from_mapping_names_the_problem_and_never_the_values(
    mapping: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as info:
        Credentials.from_mapping(mapping)
    assert SECRET not in str(info.value)


def test_to_botocore_gives_read_only_credentials() -> None:
    assert Credentials("AK", SECRET, TOKEN).to_botocore() == ReadOnlyCredentials(
        "AK", SECRET, TOKEN
    )


def test_equal_credentials_compare_equal() -> None:
    assert Credentials("AK", SECRET) == Credentials("AK", SECRET)
    assert Credentials("AK", SECRET) != Credentials("AK", "other")
    assert hash(Credentials("AK", SECRET)) == hash(Credentials("AK", SECRET))
