"""creds_core: AWS credentials for boto3 that never deadlock, never stampede STS, never stall a
request on a refresh, and keep serving when a credential source is slow, throttled or down.

The cache, chains and threading live in Rust (``creds_core._core``); this package adds the
pure-Python providers, the boto3 glue and the command line.
"""

from __future__ import annotations

import atexit
import os
from typing import TYPE_CHECKING

from creds_core._core import (
    CredentialCache,
    CredentialCycleError,
    Credentials,
    CredentialsError,
    CredentialsNotLoaded,
    Limiter,
    NonRecoverableError,
    ProviderChain,
    ProviderError,
    ProviderTimedOut,
    UserActionRequired,
    _after_fork_in_child,
    _shutdown,
    configure_runtime,
    runtime_config,
)
from creds_core._provider import Provider

if TYPE_CHECKING:
    from creds_core.api_limits import ApiLimits

__all__ = [
    "ApiLimits",
    "CredentialCache",
    "CredentialCycleError",
    "Credentials",
    "CredentialsError",
    "CredentialsNotLoaded",
    "Limiter",
    "NonRecoverableError",
    "Provider",
    "ProviderChain",
    "ProviderError",
    "ProviderTimedOut",
    "UserActionRequired",
    "configure_runtime",
    "runtime_config",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # ApiLimits imports botocore (its circuit error is a BotoCoreError): loaded on first use,
    # so that ``import creds_core`` stays light.
    if name == "ApiLimits":
        from creds_core.api_limits import ApiLimits

        return ApiLimits
    raise AttributeError(f"module 'creds_core' has no attribute {name!r}")


# A cache built before fork() keeps working in the child: the runtime is rebuilt there.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

# Provider threads must be out of Python before the interpreter finalizes.
atexit.register(_shutdown)
