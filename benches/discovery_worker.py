"""One discovery case of ``benches/test_discovery.py``, in a fresh process:
``python discovery_worker.py SPEC_JSON``.

Runs :func:`creds_core._cli.discovery.discover` over the spec's accounts against the local
EC2 at ``url`` and prints one JSON line (the discovery's counts and wall time, plus
ApiLimits' totals for creds_core).  The spec:

* ``library``: ``creds_core`` (``creds_core.boto3.session(..., api_limits=ApiLimits())``,
  EC2's default buckets, botocore's ``standard`` mode with 3 attempts beside it, as the README
  advises; ``redis_url``: ``ApiLimits(shared=RedisTier(...))``) or ``botocore`` (a plain
  ``boto3.Session`` per account, retries ``{"mode": mode, "total_max_attempts": attempts}``);
* ``layout``: ``account`` (one client per account, shared by its work items) or ``item`` (a
  new client for every work item, from the account's session);
* ``keys``: ``{access_key_id: account}``, static keys the server maps to their accounts (the
  creds_core credentials carry the account id, as a role's do);
* ``threads``, ``max_pages``, ``start_at`` (a ``time.time()`` at which to start, so that the
  processes of a fleet start together).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import asdict
from typing import Any

SECRET = "creds-core-bench-not-a-secret"
REGION = "us-east-1"


def run(spec: dict[str, Any]) -> dict[str, Any]:
    import boto3
    from botocore.config import Config

    import creds_core.boto3
    from creds_core import ApiLimits, Credentials
    from creds_core._cli.discovery import discover

    limits = None
    if spec["library"] == "creds_core":
        shared = None
        if spec.get("redis_url"):
            from creds_core.redis import RedisTier

            shared = RedisTier(spec["redis_url"], key=spec["redis_key"], namespace="bench")
        limits = ApiLimits(shared=shared)
        retries = {"mode": "standard", "total_max_attempts": 3}
    else:
        retries = {"mode": spec["mode"], "total_max_attempts": spec["attempts"]}
    config = Config(retries=retries, max_pool_connections=spec["threads"])  # type: ignore[arg-type]
    sessions: dict[str, Any] = {}
    for key, account in spec["keys"].items():
        if limits is not None:
            credentials = Credentials(key, SECRET, account_id=account)
            sessions[account] = creds_core.boto3.session(
                lambda c=credentials: c, api_limits=limits, region_name=REGION
            )
        else:
            sessions[account] = boto3.Session(
                aws_access_key_id=key, aws_secret_access_key=SECRET, region_name=REGION
            )
    made = 0
    lock = threading.Lock()  # botocore sessions make clients one at a time

    def new_client(account: str) -> Any:
        nonlocal made
        with lock:
            made += 1
            return sessions[account].client("ec2", endpoint_url=spec["url"], config=config)

    if spec["layout"] == "account":
        clients = {account: new_client(account) for account in sessions}
        client = clients.__getitem__
    else:
        client = new_client
    delay = spec.get("start_at", 0.0) - time.time()
    if delay > 0:
        time.sleep(delay)
    result = discover(client, list(sessions), threads=spec["threads"], max_pages=spec["max_pages"])
    info: dict[str, Any] = asdict(result) | {"clients": made}
    if limits is not None:
        info["api_limits"] = limits.totals()
        if limits.shared is not None:
            info["redis"] = limits.shared.stats()
    return info


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))), flush=True)
