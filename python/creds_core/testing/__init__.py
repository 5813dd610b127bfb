"""For tests and examples of code that uses creds_core: a manual clock and a local STS.

``ManualClock`` moves only when told (``advance``/``set``): give it to a CredentialCache or a
Limiter to test refresh rules without sleeping. ``StsServer`` is an STS on 127.0.0.1 (see
:mod:`creds_core.testing.sts`), the one the ``creds-core demo`` runs against; ``Ec2Server``
an EC2 that throttles per account and Region with EC2's quotas (:mod:`creds_core.testing.ec2`).
"""

from __future__ import annotations

from creds_core._core import ManualClock
from creds_core.testing.ec2 import Ec2Server
from creds_core.testing.sts import StsCall, StsServer

__all__ = ["Ec2Server", "ManualClock", "StsCall", "StsServer"]
