"""A local STS for examples, demos and tests: :class:`StsServer` answers AssumeRole,
AssumeRoleWithWebIdentity and GetCallerIdentity on 127.0.0.1 as STS does (same XML, same
error shapes), with a token bucket (``rate``/``burst``: throttled answers like STS's), a
latency, denied roles and the fault modes of ``server.mode``. It does not check signatures.

    from creds_core.testing import StsServer
    with StsServer(rate=100, delay=0.02) as sts:
        session = creds_core.boto3.assume_role(source, role_arn, endpoint_url=sts.url)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from creds_core.testing._server import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_CALLER_ARN,
    SENTINEL_SECRET,
    SENTINEL_TOKEN,
    STS_NAMESPACE,
    STS_VERSION,
    Clock,
    CredentialServer,
    DenyRoles,
    IssuedCredentials,
    Mode,
    _iso,
    _Request,
    _Response,
)

__all__ = ["StsCall", "StsServer"]


@dataclass(frozen=True)
class StsCall:
    """One STS request as the server saw it; token-like fields are hidden from repr."""

    action: str
    outcome: str  # ok, throttled, denied, error, invalid, unauthenticated
    signer_access_key_id: str | None
    role_arn: str | None = None
    role_session_name: str | None = None
    external_id: str | None = None
    serial_number: str | None = None
    token_code: str | None = field(default=None, repr=False)
    duration_seconds: int | None = None
    source_identity: str | None = None
    web_identity_token: str | None = field(default=None, repr=False)
    issued_access_key_id: str | None = None
    request_id: str = ""


_CREDENTIAL_SCOPE = re.compile(r"Credential=([^/,\s]+)/")
_SESSION_NAME = re.compile(r"^[\w+=,.@-]*$")
_SIGNED_ACTIONS = frozenset({"AssumeRole", "GetCallerIdentity"})
_ACTIONS = frozenset({"AssumeRole", "AssumeRoleWithWebIdentity", "GetCallerIdentity"})


class _StsError(Exception):
    """An STS error answer, raised inside the handler and rendered as ErrorResponse XML."""

    def __init__(self, status: int, code: str, message: str, outcome: str) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message
        self.outcome = outcome


class StsServer(CredentialServer):
    """AWS STS over the query protocol: AssumeRole, AssumeRoleWithWebIdentity, GetCallerIdentity.

    Responses and errors use STS's real XML, checked against botocore's sts service model.
    ``rate`` (requests per second, None = unlimited) and ``burst`` form a token bucket over all
    actions, beyond which the real ``Throttling`` error (HTTP 400) is answered; mode "throttle"
    answers it to every request.  Mode "error" answers 500 ``InternalFailure``; "bad_json"
    answers 200 with a body that is not XML.  ``deny_roles`` (a set of role ARNs or a predicate)
    answers 403 ``AccessDenied``.  AssumeRole and GetCallerIdentity need a SigV4
    ``Authorization`` header (else 403 ``MissingAuthenticationToken``, as AWS documents);
    AssumeRoleWithWebIdentity is unsigned.  Signatures are not verified.

    Every request that reaches the protocol layer is recorded in ``calls``.  Counter kinds: the
    action name (``AssumeRole``...); outcomes ``throttled``, ``denied``, ``errors``, ``invalid``,
    ``unauthenticated`` and ``issued``.
    """

    default_key_prefix = "ASIASTS"

    def __init__(
        self,
        *,
        rate: float | None = None,
        burst: float | None = None,
        deny_roles: DenyRoles = None,
        account_id: str = DEFAULT_ACCOUNT_ID,
        caller_arn: str = DEFAULT_CALLER_ARN,
        secret_access_key: str = SENTINEL_SECRET,
        session_token: str = SENTINEL_TOKEN,
        credential_lifetime: float = 3600.0,
        key_prefix: str | None = None,
        port: int = 0,
        mode: Mode = "ok",
        latency: float = 2.0,
        delay: float = 0.0,
        hang_seconds: float = 30.0,
        max_requests: int = 100_000,
        max_seconds: float = 600.0,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(
            secret_access_key=secret_access_key,
            session_token=session_token,
            credential_lifetime=credential_lifetime,
            key_prefix=key_prefix,
            port=port,
            mode=mode,
            latency=latency,
            delay=delay,
            hang_seconds=hang_seconds,
            max_requests=max_requests,
            max_seconds=max_seconds,
            clock=clock,
        )
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive or None")
        #: Token bucket refill, requests per second; None disables rate limiting.
        self.rate = rate
        #: Token bucket size; None means max(1, rate).
        self.burst = burst
        #: Role ARNs (or a predicate on the role ARN) answered with AccessDenied.
        self.deny_roles: DenyRoles = deny_roles
        self.account_id = account_id
        #: The identity of signers whose keys this server did not issue.
        self.caller_arn = caller_arn
        self._calls: list[StsCall] = []
        self._bucket_lock = threading.Lock()
        self._bucket_tokens: float | None = None
        self._bucket_last = 0.0
        # access key issued here -> (assumed role ARN, assumed role id), for caller identity
        self._sessions: dict[str, tuple[str, str]] = {}

    def account_of(self, access_key_id: str) -> str | None:
        """The account of the role whose credentials this server issued with
        ``access_key_id`` (None for a key it did not issue): give it to
        :class:`~creds_core.testing.Ec2Server` as ``accounts``."""
        with self._lock:
            session = self._sessions.get(access_key_id)
        return session[0].split(":")[4] if session is not None else None

    @property
    def calls(self) -> list[StsCall]:
        """Every recorded request, oldest first (a copy)."""
        with self._lock:
            return list(self._calls)

    # -- parsing ---------------------------------------------------------------------------

    @staticmethod
    def _signer(request: _Request, params: Mapping[str, str]) -> str | None:
        match = _CREDENTIAL_SCOPE.search(request.headers.get("authorization", ""))
        if match:
            return match.group(1)
        presigned = params.get("X-Amz-Credential")
        return presigned.split("/", 1)[0] if presigned else None

    def _observe(self, request: _Request) -> str:
        action = request.form().get("Action")
        return action if action else "unknown"

    # -- rate limiting ---------------------------------------------------------------------

    def _take_token(self) -> bool:
        with self._bucket_lock:
            rate = self.rate
            if rate is None:
                self._bucket_tokens = None
                return True
            burst = self.burst if self.burst is not None else max(1.0, rate)
            now = time.monotonic()
            if self._bucket_tokens is None:
                tokens = burst
            else:
                tokens = min(burst, self._bucket_tokens + (now - self._bucket_last) * rate)
            self._bucket_last = now
            if tokens >= 1.0:
                self._bucket_tokens = tokens - 1.0
                return True
            self._bucket_tokens = tokens
            return False

    # -- answering -------------------------------------------------------------------------

    def _respond(self, request: _Request, kind: str, mode: Mode) -> _Response:
        params = request.form()
        request_id = str(uuid.uuid4())
        action = params.get("Action", "")
        signer = self._signer(request, params)
        issued: IssuedCredentials | None = None
        duration = _int_or_none(params.get("DurationSeconds"))
        try:
            self._check(request, params, action, signer, mode)
            if action == "GetCallerIdentity":
                body = self._caller_identity(signer, request_id)
            else:
                issued, body = self._assume(params, action, signer, mode, duration, request_id)
            outcome = "ok"
            response = _Response(
                200,
                body.encode("utf-8"),
                "text/xml",
                (("x-amzn-RequestId", request_id),),
            )
        except _StsError as err:
            outcome = err.outcome
            self._bump(outcome)
            response = self._error(err, request_id)
        call = StsCall(
            action=action,
            outcome=outcome,
            signer_access_key_id=signer,
            role_arn=params.get("RoleArn"),
            role_session_name=params.get("RoleSessionName"),
            external_id=params.get("ExternalId"),
            serial_number=params.get("SerialNumber"),
            token_code=params.get("TokenCode"),
            duration_seconds=duration,
            source_identity=params.get("SourceIdentity"),
            web_identity_token=params.get("WebIdentityToken"),
            issued_access_key_id=issued.access_key_id if issued else None,
            request_id=request_id,
        )
        with self._lock:
            self._calls.append(call)
        if outcome == "ok" and mode == "bad_json":
            return _Response(200, b"<html><body>Service Unavailable", "text/html")
        return response

    def _check(
        self,
        request: _Request,
        params: Mapping[str, str],
        action: str,
        signer: str | None,
        mode: Mode,
    ) -> None:
        """Raise the error STS would answer, in the order STS checks: fault, auth, rate, input."""
        if mode == "error":
            raise _StsError(500, "InternalFailure", "An internal error occurred.", "errors")
        if mode == "throttle":
            raise _StsError(400, "Throttling", "Rate exceeded", "throttled")
        version = params.get("Version", "")
        if not action:
            raise _StsError(400, "MissingAction", "Missing Action", "invalid")
        if version != STS_VERSION:
            raise _StsError(
                400,
                "InvalidAction",
                f"Could not find operation {action} for version {version or 'NO_VERSION'}",
                "invalid",
            )
        if action not in _ACTIONS:
            raise _StsError(
                400,
                "InvalidAction",
                f"Could not find operation {action} for version {version}",
                "invalid",
            )
        if action in _SIGNED_ACTIONS and signer is None:
            raise _StsError(
                403,
                "MissingAuthenticationToken",
                "Request is missing Authentication Token",
                "unauthenticated",
            )
        if not self._take_token():
            raise _StsError(400, "Throttling", "Rate exceeded", "throttled")
        if action == "GetCallerIdentity":
            return
        self._validate_assume(params, action)
        role_arn = params["RoleArn"]
        if self._denied(role_arn):
            if action == "AssumeRole":
                caller = self._caller_arn(signer)
                message = (
                    f"User: {caller} is not authorized to perform: sts:AssumeRole "
                    f"on resource: {role_arn}"
                )
            else:
                message = "Not authorized to perform sts:AssumeRoleWithWebIdentity"
            raise _StsError(403, "AccessDenied", message, "denied")

    @staticmethod
    def _validate_assume(params: Mapping[str, str], action: str) -> None:
        required = ["RoleArn", "RoleSessionName"]
        if action == "AssumeRoleWithWebIdentity":
            required.append("WebIdentityToken")
        for name in required:
            if not params.get(name):
                member = name[0].lower() + name[1:]
                raise _StsError(
                    400,
                    "ValidationError",
                    f"1 validation error detected: Value null at '{member}' failed to satisfy "
                    "constraint: Member must not be null",
                    "invalid",
                )
        session = params["RoleSessionName"]
        if not 2 <= len(session) <= 64:
            bound = "greater than or equal to 2" if len(session) < 2 else "less than or equal to 64"
            raise _StsError(
                400,
                "ValidationError",
                f"1 validation error detected: Value '{session}' at 'roleSessionName' failed "
                f"to satisfy constraint: Member must have length {bound}",
                "invalid",
            )
        if not _SESSION_NAME.match(session):
            raise _StsError(
                400,
                "ValidationError",
                f"1 validation error detected: Value '{session}' at 'roleSessionName' failed "
                "to satisfy constraint: Member must satisfy regular expression pattern: "
                "[\\w+=,.@-]*",
                "invalid",
            )
        if len(params["RoleArn"]) < 20:
            raise _StsError(
                400,
                "ValidationError",
                "1 validation error detected: Value at 'roleArn' failed to satisfy constraint:"
                " Member must have length greater than or equal to 20",
                "invalid",
            )
        raw = params.get("DurationSeconds")
        if raw is None:
            return
        seconds = _int_or_none(raw)
        if seconds is None:
            raise _StsError(
                400, "ValidationError", f"Invalid value for DurationSeconds: {raw}", "invalid"
            )
        if not 900 <= seconds <= 43200:
            bound = (
                "greater than or equal to 900" if seconds < 900 else "less than or equal to 43200"
            )
            raise _StsError(
                400,
                "ValidationError",
                f"1 validation error detected: Value '{raw}' at 'durationSeconds' failed to "
                f"satisfy constraint: Member must have value {bound}",
                "invalid",
            )

    def _denied(self, role_arn: str) -> bool:
        deny = self.deny_roles
        if deny is None:
            return False
        if callable(deny):
            return bool(deny(role_arn))
        return role_arn in deny

    def _caller_arn(self, signer: str | None) -> str:
        if signer is not None:
            with self._lock:
                session = self._sessions.get(signer)
            if session is not None:
                return session[0]
        return self.caller_arn

    def _assumed_role(self, role_arn: str, session: str) -> tuple[str, str]:
        """The (assumed-role ARN, AssumedRoleId) STS derives from a role ARN and session."""
        parts = role_arn.split(":", 5)
        account = parts[4] if len(parts) == 6 and parts[4] else self.account_id
        partition = parts[1] if len(parts) == 6 and parts[1] else "aws"
        role_name = re.split(r"[/:]", role_arn)[-1]
        digest = hashlib.sha256(role_arn.encode("utf-8")).hexdigest().upper()
        return (
            f"arn:{partition}:sts::{account}:assumed-role/{role_name}/{session}",
            f"AROA{digest[:17]}:{session}",
        )

    def _assume(
        self,
        params: Mapping[str, str],
        action: str,
        signer: str | None,
        mode: Mode,
        duration: int | None,
        request_id: str,
    ) -> tuple[IssuedCredentials, str]:
        session = params["RoleSessionName"]
        arn, role_id = self._assumed_role(params["RoleArn"], session)
        creds = self._issue(mode, None if duration is None else float(duration))
        with self._lock:
            self._sessions[creds.access_key_id] = (arn, role_id)
        parts: list[str] = []
        source_identity = params.get("SourceIdentity")
        if action == "AssumeRoleWithWebIdentity":
            claims = _jwt_claims(params["WebIdentityToken"])
            subject = str(claims.get("sub", "creds-core-test-subject"))
            audience = claims.get("aud", "creds-core-test-audience")
            if isinstance(audience, list):
                audience = audience[0] if audience else ""
            provider = str(claims.get("iss", "creds-core-test-idp"))
            provider = provider.split("://", 1)[-1]
            parts.append(_el("SubjectFromWebIdentityToken", subject))
            parts.append(_el("Audience", str(audience)))
        parts.append(
            "<AssumedRoleUser>"
            + _el("AssumedRoleId", role_id)
            + _el("Arn", arn)
            + "</AssumedRoleUser>"
        )
        parts.append(
            "<Credentials>"
            + _el("AccessKeyId", creds.access_key_id)
            + _el("SecretAccessKey", creds.secret_access_key)
            + _el("SessionToken", creds.session_token)
            + _el("Expiration", _iso(creds.expiration))
            + "</Credentials>"
        )
        if action == "AssumeRoleWithWebIdentity":
            parts.append(_el("Provider", provider))
        if any(k in params for k in ("Policy", "PolicyArns.member.1", "Tags.member.1")):
            parts.append(_el("PackedPolicySize", "6"))
        if source_identity:
            parts.insert(0, _el("SourceIdentity", source_identity))
        return creds, _envelope(action, "".join(parts), request_id)

    def _caller_identity(self, signer: str | None, request_id: str) -> str:
        with self._lock:
            session = self._sessions.get(signer) if signer is not None else None
        if session is not None:
            arn, user_id = session
            account = arn.split(":")[4]
        else:
            arn = self.caller_arn
            parts = arn.split(":")
            account = parts[4] if len(parts) > 4 and parts[4] else self.account_id
            digest = hashlib.sha256(arn.encode("utf-8")).hexdigest().upper()
            user_id = "AIDA" + digest[:17]
        body = _el("UserId", user_id) + _el("Account", account) + _el("Arn", arn)
        return _envelope("GetCallerIdentity", body, request_id)

    @staticmethod
    def _error(err: _StsError, request_id: str) -> _Response:
        kind = "Receiver" if err.status >= 500 else "Sender"
        body = (
            f'<ErrorResponse xmlns="{STS_NAMESPACE}">'
            f"<Error>{_el('Type', kind)}{_el('Code', err.code)}{_el('Message', err.message)}"
            f"</Error>{_el('RequestId', request_id)}</ErrorResponse>\n"
        )
        return _Response(
            err.status,
            body.encode("utf-8"),
            "text/xml",
            (("x-amzn-RequestId", request_id),),
        )


def _int_or_none(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def _el(tag: str, text: str) -> str:
    return f"<{tag}>{escape(text)}</{tag}>"


def _envelope(action: str, result: str, request_id: str) -> str:
    return (
        f'<{action}Response xmlns="{STS_NAMESPACE}">\n'
        f"  <{action}Result>{result}</{action}Result>\n"
        f"  <ResponseMetadata>{_el('RequestId', request_id)}</ResponseMetadata>\n"
        f"</{action}Response>\n"
    )


def _jwt_claims(token: str) -> dict[str, Any]:
    """The unverified claims of a JWT, or {} when the token is not one (tests pass any string)."""
    pieces = token.split(".")
    if len(pieces) != 3:
        return {}
    payload = pieces[1] + "=" * (-len(pieces[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


# Parsed by botocore's query and rest-xml error parsers alike (STS, S3, ...).
