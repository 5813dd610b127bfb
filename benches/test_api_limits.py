"""ApiLimits: what an unthrottled API call pays for its bucket.

A real EC2 client makes DescribeRegions calls whose answer comes from a ``before-send``
handler (botocore's own short-circuit: no network, so the per-call difference is not lost in
HTTP noise), with and without ``api_limits=``; the rounds of both are interleaved and the
median of the per-round differences is the added cost.  The issue's target: at most 5 us.

make bench    (or: .venv/bin/python -m pytest benches/test_api_limits.py --benchmark-only -s)
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import botocore.awsrequest

import creds_core.boto3
from creds_core import ApiLimits

GROUP = "api limits: added cost of an unthrottled call"
CALLS = 2_000
ROUNDS = 15
BODY = (
    b'<DescribeRegionsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
    b"<requestId>1</requestId><regionInfo/></DescribeRegionsResponse>"
)


class _Raw:
    def stream(self, **_: Any) -> Any:
        return iter([BODY])

    def read(self, *_: Any, **__: Any) -> bytes:
        return BODY


def _answer(request: Any, **_: Any) -> Any:
    return botocore.awsrequest.AWSResponse(request.url, 200, {}, _Raw())


def _client(limits: ApiLimits | None) -> Any:
    session = creds_core.boto3.session(
        aws_access_key_id="AKIABENCHAPILIMITS01",
        aws_secret_access_key="bench-secret",
        region_name="us-east-1",
        api_limits=limits,
    )
    client = session.client("ec2", endpoint_url="http://127.0.0.1:9")
    client.meta.events.register_last("before-send", _answer)
    return client


def _per_call_us(client: Any) -> float:
    started = time.perf_counter()
    for _ in range(CALLS):
        client.describe_regions()
    return (time.perf_counter() - started) / CALLS * 1e6


def test_added_cost_of_an_unthrottled_call(benchmark: Any) -> None:
    benchmark.group = GROUP
    benchmark.name = "EC2 DescribeRegions, creds_core session with and without ApiLimits"
    limits = ApiLimits({"ec2": {"rate": 1e9, "burst": 1e9}})
    plain, limited = _client(None), _client(limits)
    for client in (plain, limited):
        _per_call_us(client)  # warm up: models, handlers, connection of nothing
    pairs: list[tuple[float, float]] = []

    def rounds() -> None:
        for _ in range(ROUNDS):
            pairs.append((_per_call_us(plain), _per_call_us(limited)))

    benchmark.pedantic(rounds, rounds=1, iterations=1)
    added = statistics.median(b - a for a, b in pairs)
    benchmark.extra_info.update(
        plain_us=statistics.median(a for a, _ in pairs),
        with_api_limits_us=statistics.median(b for _, b in pairs),
        added_us=added,
        calls=CALLS * ROUNDS,
    )
    print(f"\n{GROUP}: {benchmark.extra_info}")
    (stats,) = limits.stats().values()
    assert stats["acquired"] == CALLS * (ROUNDS + 1)
