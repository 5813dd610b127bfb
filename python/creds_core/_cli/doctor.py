"""``creds-core doctor``: how the default chain resolves credentials here, and what to fix.

It resolves credentials once through creds_core's default chain (botocore's order), timing
every provider it tries, then reports which one served, the expiry and the cache's refresh
windows (``CredentialCache.inspect()``), the identity STS sees and the clock skew against the
``Date`` header of an STS answer, followed by warnings a user should act on.

The only network calls are the chain's own (IMDS, container endpoint, STS for roles...) and
one ``GetCallerIdentity`` call to the STS endpoint botocore's configuration selects
(``AWS_ENDPOINT_URL_STS``, the profile's ``endpoint_url``, else the region's endpoint), signed
with the resolved credentials or unsigned when there are none (its ``Date`` header still
tells the clock skew); ``--no-sts`` skips it.  No secret is ever printed: the access key id
is shown masked (``AKIA…WXYZ``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any, TextIO

from creds_core._cli.common import (
    EXIT_OK,
    describe_error,
    is_profile_missing,
    iso_utc,
    mask_key,
    one_line,
    selected_profile,
)
from creds_core._core import (
    CredentialCache,
    Credentials,
    CredentialsError,
    CredentialsNotLoaded,
    ProviderChain,
)
from creds_core._provider import Provider

__all__ = ["Attempt", "Report", "StsCheck", "diagnose", "run"]

#: Local wall clock (seconds since the epoch); a module attribute so tests can skew it.
wall_clock = time.time

#: Providers slower than this get a warning.
SLOW_PROVIDER = 1.0
#: A clock further than this from STS's gets a warning (SigV4 allows 5 minutes).
SKEW_WARNING = 30.0
#: CredentialCache's default load_timeout (fan-out's role caches use fanout.DEFAULT_LOAD_TIMEOUT):
#: resolving slower than this times out with default options.
CACHE_LOAD_TIMEOUT = 5.0
_IMDS = "iam-role"
_TIMEOUT_CODES = frozenset({"ReadTimeoutError", "ConnectTimeoutError", "Timeout"})


@dataclass
class Attempt:
    """One provider of the chain, as tried (or not) during the resolution."""

    index: int
    name: str
    outcome: str = "not tried"  # served, not loaded, failed, not tried
    seconds: float | None = None
    message: str = ""
    code: str | None = None


class _Timed(Provider):
    """Wraps a provider of the chain: records what it answered and how long it took."""

    def __init__(self, inner: Any, attempt: Attempt) -> None:
        self._inner = inner
        self._attempt = attempt
        self.name = attempt.name

    def _call(self) -> Any:
        inner = self._inner
        if hasattr(inner, "provide"):
            return inner.provide()
        if isinstance(inner, CredentialCache):
            return inner.get()
        if isinstance(inner, Credentials):
            return inner
        return inner()

    def provide(self) -> Any:
        attempt = self._attempt
        started = time.perf_counter()
        try:
            result = self._call()
        except CredentialsNotLoaded as exc:
            self._record("not loaded", started, exc)
            raise
        except BaseException as exc:
            self._record("failed", started, exc)
            raise
        attempt.seconds = time.perf_counter() - started
        if result is None:
            attempt.outcome = "not loaded"
            attempt.message = "nothing here"
        else:
            attempt.outcome = "served"
        return result

    def _record(self, outcome: str, started: float, exc: BaseException) -> None:
        attempt = self._attempt
        attempt.seconds = time.perf_counter() - started
        attempt.outcome = outcome
        text = str(exc) if isinstance(exc, CredentialsError) else type(exc).__name__
        prefix = f"{attempt.name}: "
        attempt.message = one_line(text[len(prefix) :] if text.startswith(prefix) else text, 300)
        attempt.code = getattr(exc, "code", None)

    def fallback_on_interrupt(self) -> Credentials | None:
        fallback = getattr(self._inner, "fallback_on_interrupt", None)
        return fallback() if callable(fallback) else None


@dataclass
class StsCheck:
    """What one call to the configured STS endpoint told."""

    endpoint: str | None = None
    arn: str | None = None
    account: str | None = None
    error: str | None = None
    error_code: str | None = None
    skew: float | None = None  # STS's Date minus the local clock, seconds


@dataclass
class Report:
    profile: str
    selected_by: str
    given_profile: str | None
    config_file: str | None
    credentials_file: str | None
    chain_name: str
    attempts: list[Attempt]
    seconds: float
    credentials: Credentials | None
    error: BaseException | None
    inspect: Mapping[str, Any]
    sts: StsCheck | None
    sso_token: Mapping[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _botocore_session(profile: str | None) -> Any:
    import botocore.session

    session = botocore.session.Session()
    if profile:
        session.set_config_variable("profile", profile)
    return session


def check_sts(profile: str | None, creds: Credentials | None, timeout: float) -> StsCheck:
    """Call GetCallerIdentity on the configured STS endpoint; read identity and clock skew."""
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    from creds_core.providers._sts import quiet_botocore

    check = StsCheck()
    try:
        session = _botocore_session(profile)
        region = session.get_config_variable("region") or "us-east-1"
        config = Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"mode": "standard", "total_max_attempts": 1},
            signature_version=UNSIGNED if creds is None else None,
        )
        keys: dict[str, Any] = {}
        if creds is not None:
            keys = {
                "aws_access_key_id": creds.access_key_id,
                "aws_secret_access_key": creds.secret_access_key,
                "aws_session_token": creds.session_token,
            }
        client = session.create_client("sts", region_name=region, config=config, **keys)
        check.endpoint = client.meta.endpoint_url
    except (BotoCoreError, ValueError) as exc:
        check.error = one_line(str(exc), 300)
        return check
    headers: Mapping[str, str] = {}
    before = wall_clock()
    try:
        with quiet_botocore():
            response = client.get_caller_identity()
        headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        check.arn = response.get("Arn")
        check.account = response.get("Account")
    except ClientError as exc:
        error = exc.response.get("Error", {})
        check.error_code = error.get("Code")
        check.error = one_line(f"{error.get('Code')}: {error.get('Message', '')}", 300)
        headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    except Exception as exc:  # unreachable endpoint, timeouts, a bad answer...
        check.error = one_line(str(exc) or type(exc).__name__, 300)
        return check
    after = wall_clock()
    date = headers.get("date")
    if date:
        try:
            server = parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            return check
        # The Date header is truncated to the second: its mean is 0.5 s before the instant.
        check.skew = server + 0.5 - (before + after) / 2
    return check


def _duration(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def _warnings(report: Report) -> None:
    warn, note = report.warnings.append, report.notes.append
    served = next((a for a in report.attempts if a.outcome == "served"), None)
    creds = report.credentials
    for attempt in report.attempts:
        if attempt.seconds is None:
            continue
        if attempt.name == _IMDS and attempt.outcome != "served":
            if attempt.code in _TIMEOUT_CODES or attempt.seconds >= SLOW_PROVIDER:
                warn(
                    f"IMDS (iam-role) did not answer in time: {attempt.seconds:.1f} s spent "
                    "waiting for the instance metadata service. Off EC2, every credential "
                    "lookup that reaches it pays this; set AWS_EC2_METADATA_DISABLED=true (or "
                    "configure credentials that come earlier in the chain)."
                )
                continue
        if attempt.seconds >= SLOW_PROVIDER:
            warn(
                f"{attempt.name} took {attempt.seconds:.1f} s to answer; every refresh pays "
                "this (check the source, or give the cache a longer load_timeout)."
            )
    if report.seconds >= CACHE_LOAD_TIMEOUT:
        warn(
            f"resolving took {report.seconds:.1f} s, more than creds_core's default "
            f"load_timeout ({CACHE_LOAD_TIMEOUT:g} s): a CredentialCache with default options "
            "would time out; fix the slow source or raise load_timeout."
        )
    if creds is not None and served is not None:
        if served.name == "custom-process" and creds.expiry is None:
            warn(
                f'the credential_process of profile "{report.profile}" printed no Expiration: '
                "its credentials are taken as never expiring and are never refreshed (by "
                "creds_core or botocore). Make it print Expiration (ISO-8601), or use static "
                "keys if they really are long-lived."
            )
        if served.name == "env" and report.selected_by in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
            warn(
                "AWS_ACCESS_KEY_ID is set, so environment credentials are used and "
                f'{report.selected_by}="{report.profile}" is ignored (botocore does the same); '
                "unset AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN to use the "
                "profile."
            )
        if creds.expiry is not None:
            left = (creds.expiry - datetime.now(timezone.utc)).total_seconds()
            advisory = report.inspect.get("advisory_window")
            if left <= 0:
                warn(f"{served.name} handed out credentials that expired {_duration(left)} ago.")
            elif isinstance(advisory, (int, float)) and left <= advisory:
                warn(
                    f"{served.name} handed out credentials that expire in {_duration(left)}, "
                    f"already inside the advisory window ({_duration(advisory)}): it serves "
                    "credentials cached close to expiry, so callers refresh very often; make it "
                    "return fresher credentials."
                )
    _sso_warnings(report)
    if report.selected_by == "--profile" and os.environ.get("AWS_ACCESS_KEY_ID"):
        note(
            "AWS_ACCESS_KEY_ID is set but ignored because a profile was given explicitly "
            "(botocore does the same)."
        )
    sts = report.sts
    if sts is not None:
        if sts.skew is not None and abs(sts.skew) >= SKEW_WARNING:
            direction = "behind" if sts.skew > 0 else "ahead of"
            warn(
                f"the local clock is {_duration(sts.skew)} {direction} STS's (Date header): "
                "AWS rejects signatures more than 5 minutes off, and refresh windows are "
                "computed from the local clock; fix the system clock (NTP)."
            )
        if creds is not None and sts.error_code in (
            "InvalidClientTokenId",
            "SignatureDoesNotMatch",
            "ExpiredToken",
            "UnrecognizedClientException",
            "AccessDenied",
        ):
            warn(
                f"STS rejected the credentials ({sts.error_code}): they resolve but do not "
                "work; replace or refresh them at their source."
            )
        if sts.error is not None and sts.skew is None:
            note("STS did not answer (see above): the clock was not checked.")


def _sso_warnings(report: Report) -> None:
    from creds_core.providers.identity_center import SSO_TOKEN_WARNING

    token = report.sso_token
    if token is None:
        return
    command = token["command"]
    expires = token.get("expires_at")
    if expires is None:
        report.warnings.append(
            f'profile "{token["profile"]}" uses IAM Identity Center but no SSO token was found '
            f"in the cache; run `{command}`."
        )
        return
    left = (expires - datetime.now(timezone.utc)).total_seconds()
    if left <= 0 and not token.get("refreshable"):
        report.warnings.append(
            f"the SSO token expired {_duration(left)} ago and cannot be refreshed; run `{command}`."
        )
    elif left < SSO_TOKEN_WARNING and not token.get("refreshable"):
        report.warnings.append(
            f"the SSO token expires in {_duration(left)} and cannot be refreshed: after that, "
            f"credentials are served until they expire, then `{command}` is needed."
        )


def diagnose(
    profile: str | None, *, timeout: float, sts: bool = True, sts_timeout: float = 5.0
) -> Report:
    """Resolve credentials once, timing every provider; collect warnings."""
    from creds_core.providers import default_chain

    name, how = selected_profile(profile)
    config_file = credentials_file = None
    try:
        session = _botocore_session(profile)
        config_file = session.get_config_variable("config_file")
        credentials_file = session.get_config_variable("credentials_file")
    except Exception:  # a broken configuration: the chain reports it below
        pass
    chain = default_chain(profile)
    attempts = [Attempt(i + 1, _name(p, i)) for i, p in enumerate(chain.providers)]
    timed = ProviderChain(
        [_Timed(p, a) for p, a in zip(chain.providers, attempts)], name=chain.name
    )
    cache = CredentialCache(timed, load_timeout=timeout, name="creds-core doctor")
    creds: Credentials | None = None
    error: BaseException | None = None
    started = time.perf_counter()
    try:
        creds = cache.get()
    except CredentialsError as exc:
        error = exc
    seconds = time.perf_counter() - started
    report = Report(
        profile=name,
        selected_by=how,
        given_profile=profile,
        config_file=config_file,
        credentials_file=credentials_file,
        chain_name=chain.name,
        attempts=attempts,
        seconds=seconds,
        credentials=creds,
        error=error,
        inspect=cache.inspect(),
        sts=None,
    )
    if sts and not (error is not None and is_profile_missing(error)):
        report.sts = check_sts(profile, creds, sts_timeout)
    try:
        from creds_core.providers.identity_center import sso_token_status

        report.sso_token = sso_token_status(profile)
    except Exception:  # a broken configuration: the chain reported it already
        report.sso_token = None
    _warnings(report)
    return report


def _name(provider: Any, index: int) -> str:
    name = getattr(provider, "name", None)
    return str(name) if name else f"provider {index + 1}"


def _file(path: str | None) -> str:
    if not path:
        return "-"
    full = os.path.expanduser(path)
    return f"{full} ({'found' if os.path.isfile(full) else 'not found'})"


def _at(when: Any) -> str:
    return iso_utc(when) if isinstance(when, datetime) else "-"


def render(report: Report, out: TextIO) -> None:
    """Print the report (never a secret)."""

    def line(label: str, value: str) -> None:
        out.write(f"  {label:<18} {value}\n")

    out.write(f"creds-core doctor: profile {report.profile!r} ({report.selected_by})\n")
    line("config file", _file(report.config_file))
    line("credentials file", _file(report.credentials_file))
    out.write(f"\nProviders of the {report.chain_name}, in order:\n")
    width = max((len(a.name) for a in report.attempts), default=10)
    for a in report.attempts:
        took = f"{a.seconds * 1000:9.1f} ms" if a.seconds is not None else f"{'-':>12}"
        outcome = "checked" if a.name == "profile" and a.outcome == "not loaded" else a.outcome
        detail = f": {a.message}" if a.message and a.outcome != "served" else ""
        out.write(f"  {a.index:>2}. {a.name:<{width}} {took}  {outcome}{detail}\n")
    creds = report.credentials
    out.write("\nCredentials:\n")
    if creds is None:
        assert report.error is not None
        _, message = describe_error(report.error, report.given_profile, hint=False)
        line("none", message)
    else:
        inspect = report.inspect
        line("served by", str(creds.provider_name))
        line("access key id", mask_key(creds.access_key_id))
        line("session token", "yes" if creds.session_token else "no (long-term keys)")
        if creds.account_id:
            line("account", creds.account_id)
        line("resolved in", f"{report.seconds * 1000:.1f} ms")
        if creds.expiry is None:
            line("expiry", "none: never refreshed")
        else:
            left = creds.expiry - datetime.now(timezone.utc)
            when = "ago" if left < timedelta(0) else "from now"
            line("expiry", f"{iso_utc(creds.expiry)} ({_duration(left.total_seconds())} {when})")
            advisory = inspect.get("advisory_window")
            mandatory = inspect.get("mandatory_window")
            if isinstance(advisory, (int, float)):
                line(
                    "advisory window",
                    f"{_duration(advisory)}: a background refresh starts at "
                    f"{_at(inspect.get('refresh_at'))}",
                )
            if isinstance(mandatory, (int, float)):
                line(
                    "mandatory window",
                    f"{_duration(mandatory)}: callers wait for a refresh from "
                    f"{_at(inspect.get('mandatory_at'))}",
                )
    token = report.sso_token
    if token is not None:
        out.write("\nIAM Identity Center:\n")
        if token.get("sso_session"):
            line("sso-session", str(token["sso_session"]))
        line("token cache", _file(token.get("path")))
        expires = token.get("expires_at")
        if isinstance(expires, datetime):
            left = expires - datetime.now(timezone.utc)
            when = "ago" if left < timedelta(0) else "from now"
            line("token expiry", f"{iso_utc(expires)} ({_duration(left.total_seconds())} {when})")
            line(
                "refreshable",
                "yes (SSO OIDC refresh token)" if token.get("refreshable") else "no",
            )
        line("log in again", f"`{token['command']}`")
    sts = report.sts
    out.write("\nSTS:\n")
    if sts is None:
        line("check", "skipped")
    else:
        line("endpoint", sts.endpoint or "-")
        if sts.arn:
            line("identity", f"{sts.arn} (account {sts.account})")
        elif sts.error:
            line("error", sts.error)
        if sts.skew is not None:
            verdict = "ok" if abs(sts.skew) < SKEW_WARNING else "TOO FAR"
            line("clock skew", f"{sts.skew:+.1f} s (STS Date header minus local clock): {verdict}")
    for note in report.notes:
        out.write(f"\nnote: {note}\n")
    if report.warnings:
        out.write(f"\nWarnings ({len(report.warnings)}):\n")
        for warning in report.warnings:
            out.write(f"  ! {warning}\n")
    else:
        out.write("\nNo warnings.\n")
    out.flush()


def run(profile: str | None, *, timeout: float, sts: bool, sts_timeout: float, out: TextIO) -> int:
    """Diagnose, print the report; the exit code is that of the resolution."""
    report = diagnose(profile, timeout=timeout, sts=sts, sts_timeout=sts_timeout)
    render(report, out)
    if report.error is not None:
        code, _ = describe_error(report.error, profile)
        return code
    return EXIT_OK
