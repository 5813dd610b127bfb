"""The async peer's hot path, run in a virtual environment of its own (``python
aio_peer_worker.py URL N``): aioboto3-assume (aioboto3 pins an older aiobotocore and botocore
than the project's, so it cannot share the project's environment).

An ``aioboto3_assume.assume_role`` session's credentials are fetched once from the StsServer
at URL, then ``await credentials.get_frozen_credentials()`` is timed N times in a loop on
fresh credentials (best of 5 rounds).  Prints one JSON line: seconds per await, the loop's
own cost per iteration, and the package versions.  Needs nothing of creds_core.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from importlib import metadata


async def main(url: str, n: int) -> dict[str, object]:
    import aioboto3
    from aioboto3_assume import assume_role

    source = aioboto3.Session(
        aws_access_key_id="AKIAAIOPEERSOURCE001",
        aws_secret_access_key="aio-peer-source-secret-not-real",
        region_name="us-east-1",
    )
    session = assume_role(
        source_session=source,
        assume_role_kwargs={
            "RoleArn": "arn:aws:iam::111122223333:role/aio-peer",
            "RoleSessionName": "aio-peer",
        },
        sts_client_kwargs={"endpoint_url": url, "region_name": "us-east-1"},
    )
    credentials = session._session._credentials
    first = await credentials.get_frozen_credentials()  # the one STS call
    assert first.access_key.startswith("ASIA"), first.access_key
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(n):
            await credentials.get_frozen_credentials()
        best = min(best, (time.perf_counter() - started) / n)
    return {
        "seconds_per_await": best,
        "versions": {
            name: metadata.version(name)
            for name in ("aioboto3-assume", "aioboto3", "aiobotocore", "botocore")
        },
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], int(sys.argv[2])))))
