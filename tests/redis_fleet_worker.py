"""One process of a fleet sharing a RedisTier (run by ``test_redis_fleet.py`` and the bench).

    python redis_fleet_worker.py CONFIG_JSON

It sets everything up, prints ``ready`` and waits for a line on stdin (so that every process
of the fleet starts at the same moment), then runs its mode and prints one JSON line:

* ``fanout``: ``fan_out`` over ``roles`` through the STS at ``sts_url`` (``shared`` false:
  without the tier); answers the access key per role, the errors and the tier's stats.
* ``aio-fanout``: the same with ``fan_out_async`` and real aiobotocore clients.
* ``block``: a refresh whose source blocks until the process is killed (prints ``entered``).
* ``provide``: one refresh of ``name`` whose source answers new credentials; answers them.

``announce`` (optional, a list of counters of the tier's ``stats()``): a line with the name of
each, once it is no longer 0, before the JSON line; so that a test can act once every process
got somewhere (waits on a lease, fell back to its source) instead of sleeping a guessed time.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any


def main() -> int:
    config: dict[str, Any] = json.loads(sys.argv[1])
    import boto3

    from creds_core import CredentialCache, Credentials
    from creds_core.fanout import fan_out
    from creds_core.redis import RedisTier

    tier = None
    if config.get("shared", True):
        tier = RedisTier(
            config["redis_url"],
            key=config["key"],
            namespace=config["namespace"],
            lease_ttl=config.get("lease_ttl", 10.0),
        )
    mode = config["mode"]
    if mode == "fanout":
        source = boto3.Session(
            region_name="us-east-1",
            aws_access_key_id=f"AKIA{uuid.uuid4().hex[:16]}".upper(),
            aws_secret_access_key="source-secret-of-the-fleet-test",
        )
        source.get_credentials()

        def key_of(session: Any, arn: str) -> str:
            return str(session.get_credentials().get_frozen_credentials().access_key)

    elif mode == "aio-fanout":
        import asyncio

        import creds_core.aiobotocore as ca
        from creds_core.fanout import fan_out_async

        source_key = f"AKIA{uuid.uuid4().hex[:16]}".upper()
        aio_source = ca.session(lambda: Credentials(source_key, "source-secret-of-the-fleet-test"))
        aio_source.set_config_variable("region", "us-east-1")

        async def key_of_async(session: Any, arn: str) -> str:
            credentials = await session.get_credentials()
            return str((await credentials.get_frozen_credentials()).access_key)

    print("ready", flush=True)
    sys.stdin.readline()
    started = time.monotonic()
    done = threading.Event()
    announcer = threading.Thread(
        target=_announce, args=(tier, config.get("announce", []), done), daemon=True
    )
    announcer.start()
    out: dict[str, Any] = {}
    if mode == "fanout":
        result = fan_out(
            key_of,
            config["roles"],
            session=source,
            shared=tier,
            max_workers=config.get("workers", 16),
            progress=False,
            endpoint_url=config["sts_url"],
            role_session_name="fleet",
        )
        out["results"] = result.results
        out["errors"] = {t: f"{type(e).__name__}: {e}" for t, e in result.errors.items()}
    elif mode == "aio-fanout":
        result = asyncio.run(
            fan_out_async(
                key_of_async,
                config["roles"],
                session=aio_source,
                shared=tier,
                max_concurrency=config.get("workers", 16),
                progress=False,
                endpoint_url=config["sts_url"],
                role_session_name="fleet",
            )
        )
        out["results"] = result.results
        out["errors"] = {t: f"{type(e).__name__}: {e}" for t, e in result.errors.items()}
    elif mode == "block":

        def blocked() -> Any:
            print("entered", flush=True)
            time.sleep(3600)  # until killed

        assert tier is not None
        CredentialCache(tier.wrap(blocked, config["name"], load_timeout=60), load_timeout=60).get()
    elif mode == "provide":

        def fresh() -> Credentials:
            expiry = datetime.now(timezone.utc) + timedelta(hours=1)
            return Credentials(f"ASIA{uuid.uuid4().hex[:16]}".upper(), "s", "t", expiry)

        assert tier is not None
        load_timeout = config.get("load_timeout", 30.0)
        wrapped = tier.wrap(fresh, config["name"], load_timeout=load_timeout)
        out["key"] = CredentialCache(wrapped, load_timeout=load_timeout).get().access_key_id
    done.set()
    announcer.join()  # nothing is announced after the JSON line
    out["seconds"] = time.monotonic() - started
    out["stats"] = dict(tier.stats()) if tier is not None else None
    print(json.dumps(out), flush=True)
    return 0


def _announce(tier: Any, counters: list[str], done: threading.Event) -> None:
    pending = list(counters)
    while pending and not done.is_set():
        stats = tier.stats()
        for name in [c for c in pending if stats[c]]:
            print(name, flush=True)
            pending.remove(name)
        done.wait(0.005)


if __name__ == "__main__":
    sys.exit(main())
