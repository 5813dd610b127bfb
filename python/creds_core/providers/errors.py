"""Mapping of botocore (and other) failures onto creds_core's error classes.

The cache decides what to do from the class of the error a provider raises:

* :class:`~creds_core.CredentialsNotLoaded`: nothing here, a chain moves on;
* :class:`~creds_core.ProviderError`: recoverable (throttling, 5xx, network, timeouts, a bad
  answer): the cache keeps serving what it has and backs off;
* :class:`~creds_core.NonRecoverableError`: retrying will not help (access denied, invalid
  configuration): raised at once.

Every error built here carries ``provider`` and ``code`` attributes (the Rust side reads both),
chains the original exception (``raise mapped from exc``) and has a message that says what to
do.  Messages are built from error codes, AWS error messages, file names and profile names only,
never from a secret access key, a session token or a credential process's output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from botocore import exceptions as bce
from botocore.parsers import ResponseParserError

from creds_core._core import THROTTLING_CODES as _RUST_THROTTLING_CODES
from creds_core._core import (
    CredentialsError,
    CredentialsNotLoaded,
    NonRecoverableError,
    ProviderError,
    UserActionRequired,
)

__all__ = [
    "NON_RECOVERABLE_CODES",
    "RECOVERABLE_CODES",
    "THROTTLING_CODES",
    "ErrorKind",
    "classify_code",
    "from_exception",
    "make_error",
    "needs_user",
    "non_recoverable",
    "not_loaded",
    "recoverable",
]

#: botocore's throttling error codes, as listed in DESIGN.md. One list, kept in the Rust core
#: (the shared Limiter slows down on exactly these codes).
THROTTLING_CODES: frozenset[str] = frozenset(_RUST_THROTTLING_CODES)

#: Error codes that retrying later may fix although the HTTP status is a 4xx.
RECOVERABLE_CODES: frozenset[str] = frozenset(
    {
        "RequestTimeout",
        "RequestTimeoutException",
        "IDPCommunicationError",
        "InternalFailure",
        "InternalError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestExpired",
        "RequestTimeTooSkewed",
    }
)

#: Error codes that retrying will not fix: the caller or the configuration must change.
NON_RECOVERABLE_CODES: frozenset[str] = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "ValidationError",
        "RegionDisabledException",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidIdentityToken",
        "IDPRejectedClaim",
        "MalformedPolicyDocument",
        "PackedPolicyTooLarge",
        "InvalidAction",
        "InvalidParameterValue",
        "MissingParameter",
        "OptInRequired",
    }
)

#: Hints appended to messages for well-known codes: what the user should do about them.
_HINTS: Mapping[str, str] = {
    "AccessDenied": (
        "check that the role's trust policy allows the source identity and that the source "
        "identity may call sts:AssumeRole on this role"
    ),
    "InvalidClientTokenId": (
        "the source credentials are not valid (deactivated or deleted key, or a session token "
        "used with the wrong key); refresh or replace them"
    ),
    "SignatureDoesNotMatch": (
        "the source secret access key does not match its access key id; fix the source credentials"
    ),
    "ExpiredToken": "the source credentials have expired; refresh them and try again",
    "ExpiredTokenException": (
        "the token has expired; make sure whatever writes the token (file) keeps it fresh"
    ),
    "InvalidIdentityToken": "the web identity token was rejected; check the token file",
    "RegionDisabledException": (
        "STS is not activated in this region; activate it in the IAM console or use another "
        "region or endpoint"
    ),
    "ValidationError": "fix the parameters of the request (role ARN, session name, duration...)",
}

ErrorKind = Literal["not_loaded", "recoverable", "non_recoverable"]

E = TypeVar("E", bound=CredentialsError)

# Transport failures: always recoverable, the code is the botocore class name.
_NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    bce.EndpointConnectionError,
    bce.ConnectTimeoutError,
    bce.ReadTimeoutError,
    bce.ConnectionClosedError,
    bce.ConnectionError,
    bce.HTTPClientError,
)

# botocore configuration errors: the configuration must change.
_CONFIG_ERRORS: tuple[type[BaseException], ...] = (
    bce.ProfileNotFound,
    bce.PartialCredentialsError,
    bce.InvalidConfigError,  # includes InfiniteLoopConfigError
    bce.ConfigParseError,
    bce.UnknownCredentialError,
    bce.InvalidIMDSEndpointError,
    bce.InvalidIMDSEndpointModeError,
    bce.NoRegionError,
    bce.UnknownEndpointError,
    bce.InvalidRegionError,
    bce.ParamValidationError,
    bce.ValidationError,
    bce.UnknownServiceError,
    bce.InvalidEndpointConfigurationError,
    bce.InvalidRetryConfigurationError,
    bce.InvalidSTSRegionalEndpointsConfigError,
    bce.InvalidDefaultsMode,
    bce.InvalidProxiesConfigError,
    bce.MissingDependencyException,
    bce.RefreshWithMFAUnsupportedError,
    bce.UnknownSignatureVersionError,
    bce.EndpointResolutionError,
)


#: What to do about botocore configuration errors (the default: "fix the configuration").
_CONFIG_HINTS: Mapping[str, str] = {
    "NoRegionError": (
        "fix the configuration: set a region (AWS_DEFAULT_REGION, region in the profile or the "
        "region argument)"
    ),
    "ProfileNotFound": "fix the configuration: create the profile or select another one",
    "ParamValidationError": "fix the configuration: the request parameters are invalid",
}


def _text(exc: BaseException) -> str:
    """An exception's message without its final full stop (messages here go on after it)."""
    return str(exc).strip().rstrip(".") or type(exc).__name__


def make_error(cls: type[E], provider: str, message: str, *, code: str | None = None) -> E:
    """An instance of ``cls`` whose message starts with ``provider: `` and that has the
    ``provider`` and ``code`` attributes set."""
    prefix = f"{provider}: "
    text = message if message.startswith(prefix) else prefix + message
    err = cls(text)
    err.provider = provider
    err.code = code
    return err


def not_loaded(provider: str, message: str, *, code: str | None = None) -> CredentialsNotLoaded:
    """ "Nothing here": a chain moves on to its next provider."""
    return make_error(CredentialsNotLoaded, provider, message, code=code)


def recoverable(provider: str, message: str, *, code: str | None = None) -> ProviderError:
    """A failure that may pass: the cache keeps serving and backs off."""
    return make_error(ProviderError, provider, message, code=code)


def non_recoverable(provider: str, message: str, *, code: str | None = None) -> NonRecoverableError:
    """A failure that retrying will not fix: raised at once."""
    return make_error(NonRecoverableError, provider, message, code=code)


def needs_user(provider: str, message: str, *, code: str | None = None) -> UserActionRequired:
    """A failure only the user can fix (log in again, an MFA code); ``message`` says what to
    run.  The cache serves its credentials while they are valid, then raises it at once."""
    return make_error(UserActionRequired, provider, message, code=code)


def classify_code(code: str | None, status: int | None = None) -> ErrorKind:
    """Classify an AWS error code (and HTTP status) as recoverable or not.

    Throttling codes, 429, 5xx and :data:`RECOVERABLE_CODES` are recoverable;
    :data:`NON_RECOVERABLE_CODES` and other 4xx answers are not; anything else is recoverable.
    """
    if code in THROTTLING_CODES or code in RECOVERABLE_CODES:
        return "recoverable"
    if code in NON_RECOVERABLE_CODES:
        return "non_recoverable"
    if status is not None:
        if status == 429 or status >= 500:
            return "recoverable"
        if 400 <= status < 500:
            return "non_recoverable"
    return "recoverable"


def _client_error_details(exc: bce.ClientError) -> tuple[str | None, int | None, str]:
    response: Mapping[str, Any] = exc.response or {}
    error = response.get("Error") or {}
    code = error.get("Code") or None
    message = str(error.get("Message") or "").strip()[:500]
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    if status is None:
        raw = error.get("HTTPStatusCode")
        status = raw if isinstance(raw, int) else None
    return (str(code) if code is not None else None), status, message


def from_exception(
    exc: BaseException, *, provider: str, action: str | None = None
) -> CredentialsError:
    """The creds_core error for ``exc``, raised by ``provider`` while doing ``action``.

    Use as ``raise from_exception(exc, provider=...) from exc``.  creds_core errors are
    returned unchanged.  ``action`` (e.g. ``"sts:AssumeRole on arn:..."``) is only used in the
    message.
    """
    if isinstance(exc, CredentialsError):
        return exc
    doing = f" ({action})" if action else ""

    if isinstance(exc, bce.ClientError):
        code, status, aws_message = _client_error_details(exc)
        kind = classify_code(code, status)
        status_text = f"HTTP {status}" if status is not None else "no HTTP status"
        detail = f": {aws_message}" if aws_message else ""
        text = (
            f"the request failed{doing} with {code or 'an unknown error'} ({status_text}){detail}"
        )
        if code in THROTTLING_CODES or status == 429:
            text += "; the request was throttled, the next refresh tries again after a backoff"
        elif kind == "recoverable":
            text += "; this may pass, the next refresh tries again after a backoff"
        hint = _HINTS.get(code or "")
        if hint:
            text += f"; {hint}"
        cls: type[CredentialsError] = (
            NonRecoverableError if kind == "non_recoverable" else ProviderError
        )
        return make_error(cls, provider, text, code=code or (str(status) if status else None))

    if isinstance(exc, bce.NoCredentialsError):
        return not_loaded(provider, f"no credentials were found{doing}", code="NoCredentials")

    if isinstance(exc, bce.ConfigNotFound):
        return not_loaded(provider, f"{exc}{doing}", code="ConfigNotFound")

    if isinstance(exc, _NETWORK_ERRORS):
        name = type(exc).__name__
        return recoverable(
            provider,
            f"could not reach the endpoint{doing}: {_text(exc)}; "
            "the next refresh tries again after a backoff",
            code=name,
        )

    if isinstance(exc, _CONFIG_ERRORS):
        name = type(exc).__name__
        return non_recoverable(
            provider,
            f"invalid configuration{doing}: {_text(exc)}; "
            + _CONFIG_HINTS.get(name, "fix the configuration"),
            code=name,
        )

    if isinstance(exc, ResponseParserError):
        return recoverable(
            provider,
            f"the answer could not be parsed{doing}; the next refresh tries again after a backoff",
            code="MalformedResponse",
        )

    if isinstance(exc, (bce.CredentialRetrievalError, bce.MetadataRetrievalError)):
        return recoverable(provider, f"{_text(exc)}{doing}", code=type(exc).__name__)

    if isinstance(exc, TimeoutError):
        return recoverable(provider, f"timed out{doing}", code="Timeout")

    if isinstance(exc, OSError):
        return recoverable(
            provider, f"{type(exc).__name__}{doing}: {_text(exc)}", code=type(exc).__name__
        )

    name = type(exc).__name__
    return recoverable(provider, f"unexpected {name}{doing}: {_text(exc)}", code=name)
