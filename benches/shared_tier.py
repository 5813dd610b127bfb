"""Beyond one host: the shared Redis tier for a fleet, and ``creds-core serve`` under load.

    .venv/bin/python benches/shared_tier.py                    # every figure, ~3 minutes
    .venv/bin/python benches/shared_tier.py --processes 2 4 --roles 1000
    make bench                                                 # also, via test_shared_tier.py

1. **Fleet**: N processes (``tests/redis_fleet_worker.py``) each ``fan_out`` over the same
   roles at the same moment, through the local StsServer (a token bucket of 100 AssumeRole/s,
   the real ``Throttling`` error beyond it, 20 ms per answer), with and without a
   ``RedisTier`` on a local redis-server.  Counted: AssumeRole calls and throttled answers
   (at the server), wall time (from the common start to the last process done), callers
   that failed.
2. **Memory per role in Redis**: ``MEMORY USAGE`` of the entries of 1,000 roles whose
   session tokens have a realistic size (1,024 characters).
3. **serve**: 1,000 clients connecting at once to ``creds-core serve`` (one asyncio
   connection each, ``GET /credentials``), three rounds: latency per request from connect to
   the last byte (p50, p99, max) and errors.

Writes ``docs/shared_tier.md`` and ``docs/shared_tier.png`` when run standalone; under
``make bench`` the figures go to pytest-benchmark's JSON and ``benches/report.py`` writes them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the fleet worker and the redis-server starter

from redis_fixtures import RedisServer  # noqa: E402

from creds_core.testing import StsServer  # noqa: E402

WORKER = ROOT / "tests" / "redis_fleet_worker.py"
KEY = base64.b64encode(b"b" * 32).decode()
STS_RATE = 100.0
STS_DELAY = 0.02
TOKEN_CHARS = 1024
COMMAND = ".venv/bin/python benches/shared_tier.py"
FLEET = "shared tier: fleet"
MEMORY = "shared tier: memory"
SERVE = "serve: 1,000 concurrent clients"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("AWS_")}
    home = tempfile.mkdtemp(prefix="creds-core-bench-")
    env.update(
        AWS_CONFIG_FILE=os.path.join(home, "config"),
        AWS_SHARED_CREDENTIALS_FILE=os.path.join(home, "credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        PYTHONPATH=str(ROOT / "python"),
    )
    return env


def run_fleet(processes: int, roles: int, shared: bool, redis_url: str) -> dict[str, Any]:
    """N worker processes x ``roles`` roles, started together; the figures of the run."""
    tag = uuid.uuid4().hex[:8]
    arns = [f"arn:aws:iam::{100_000_000_000 + i}:role/bench-{tag}" for i in range(roles)]
    with StsServer(
        rate=STS_RATE, burst=STS_RATE, delay=STS_DELAY, max_seconds=3600, max_requests=1_000_000
    ) as sts:
        config = {
            "mode": "fanout",
            "redis_url": redis_url,
            "key": KEY,
            "namespace": f"bench-{tag}",
            "sts_url": sts.url,
            "roles": arns,
            "shared": shared,
        }
        env = _env()
        procs = [
            subprocess.Popen(
                [sys.executable, str(WORKER), json.dumps(config)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(processes)
        ]
        try:
            for proc in procs:
                assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            started = time.monotonic()
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            outs = []
            for proc in procs:
                out, err = proc.communicate(timeout=3600)
                if proc.returncode != 0:
                    raise RuntimeError(f"a fleet worker failed: {err[-3000:]}")
                outs.append(json.loads(out.strip().splitlines()[-1]))
            wall = time.monotonic() - started
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
        counts = sts.counts
    stats = [o["stats"] for o in outs if o["stats"]]
    return {
        "processes": processes,
        "roles": roles,
        "shared": shared,
        "assume_role_calls": counts["AssumeRole"],
        "throttled": counts["throttled"],
        "wall_seconds": wall,
        "caller_failures": sum(len(o["errors"]) for o in outs),
        "tier_hits": sum(s["hits"] for s in stats),
        "lease_waits": sum(s["lease_waits"] for s in stats),
        "local_fallbacks": sum(s["local_fallbacks"] for s in stats),
        "sts_rate": STS_RATE,
        "sts_delay": STS_DELAY,
    }


def memory_per_role(redis_server: RedisServer, roles: int = 1000) -> dict[str, Any]:
    """``MEMORY USAGE`` of the entries of ``roles`` roles with realistic token sizes."""
    from creds_core import Credentials
    from creds_core.redis import RedisTier

    tier = RedisTier(redis_server.url, key=KEY, namespace="creds_core")
    client = redis_server.client()
    client.flushdb()
    before = int(client.info("memory")["used_memory"])
    expiry = datetime.now(timezone.utc) + timedelta(hours=1)
    for i in range(roles):
        creds = Credentials(
            f"ASIA{i:016d}", "s" * 40, "t" * TOKEN_CHARS, expiry, account_id=f"{i:012d}"
        )
        tier.wrap(creds, f"arn:aws:iam::{i:012d}:role/OrganizationAccountAccessRole").provide()
    usage = [int(client.memory_usage(k, samples=0)) for k in client.scan_iter(count=1000)]
    after = int(client.info("memory")["used_memory"])
    return {
        "roles": roles,
        "token_chars": TOKEN_CHARS,
        "entries": len(usage),
        "memory_usage_mean": statistics.mean(usage),
        "used_memory_per_role": (after - before) / roles,
    }


async def _one(host: str, port: int, request: bytes) -> tuple[float, int]:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
    return time.perf_counter() - started, int(raw.split(b" ", 2)[1])


def serve_load(clients: int = 1000, rounds: int = 3) -> dict[str, Any]:
    """Latency of ``clients`` concurrent requests to ``creds-core serve``, ``rounds`` times."""
    env = _env()
    env.update(AWS_ACCESS_KEY_ID="AKIABENCHSERVE000001", AWS_SECRET_ACCESS_KEY="bench-secret")
    proc = subprocess.Popen(
        [sys.executable, "-m", "creds_core", "serve", "--max-seconds", "600"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        variables: dict[str, str] = {}
        while len(variables) < 2:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"serve exited early: {proc.communicate(timeout=10)}")
            if line.startswith("export "):
                name, _, value = line[len("export ") :].strip().partition("=")
                variables[name] = shlex.split(value)[0]
        url = urlsplit(variables["AWS_CONTAINER_CREDENTIALS_FULL_URI"])
        host, port = str(url.hostname), int(url.port or 0)
        request = (
            f"GET /credentials HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: "
            f"{variables['AWS_CONTAINER_AUTHORIZATION_TOKEN']}\r\nConnection: close\r\n\r\n"
        ).encode()

        async def round_() -> list[tuple[float, int] | BaseException]:
            return await asyncio.gather(
                *(asyncio.wait_for(_one(host, port, request), 120) for _ in range(clients)),
                return_exceptions=True,
            )

        latencies: list[float] = []
        errors = 0
        walls = []
        for _ in range(rounds):
            started = time.perf_counter()
            answers = asyncio.run(round_())
            walls.append(time.perf_counter() - started)
            for answer in answers:
                if isinstance(answer, BaseException) or answer[1] != 200:
                    errors += 1
                else:
                    latencies.append(answer[0])
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))]

    return {
        "clients": clients,
        "rounds": rounds,
        "errors": errors,
        "p50": pct(0.50),
        "p99": pct(0.99),
        "max": latencies[-1],
        "round_seconds": statistics.median(walls),
    }


# --- report -----------------------------------------------------------------------------------


def _s(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.1f} s"


def markdown(
    fleet: list[dict[str, Any]],
    memory: dict[str, Any] | None,
    serve: dict[str, Any] | None,
    command: str = COMMAND,
) -> list[str]:
    lines: list[str] = []
    if fleet:
        f0 = fleet[0]
        lines += [
            "## Shared tier: a fleet of processes on one Redis",
            "",
            f"N processes, each `fan_out` over the same {f0['roles']:,} roles at the same"
            f" moment, against the local STS ({f0['sts_rate']:g} AssumeRole/s token bucket,"
            f" `Throttling` beyond it, {f0['sts_delay'] * 1000:g} ms per answer); `{command}`.",
            "",
            "| processes | shared tier | AssumeRole calls | throttled answers | wall time |"
            " caller failures | tier hits |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in fleet:
            lines.append(
                f"| {r['processes']} | {'yes' if r['shared'] else 'no'} |"
                f" {r['assume_role_calls']:,} | {r['throttled']:,} | {_s(r['wall_seconds'])} |"
                f" {r['caller_failures']} | {r['tier_hits']:,} |"
            )
        lines.append("")
    if memory:
        lines += [
            "## Shared tier: memory per role in Redis",
            "",
            f"{memory['roles']:,} entries with {memory['token_chars']:,}-character session"
            f" tokens: `MEMORY USAGE` {memory['memory_usage_mean']:.0f} bytes per entry on"
            f" average; `used_memory` grew by {memory['used_memory_per_role']:.0f} bytes per"
            " role.",
            "",
        ]
    if serve:
        lines += [
            "## creds-core serve: 1,000 concurrent clients",
            "",
            f"{serve['clients']:,} clients connect at once (asyncio, one connection each),"
            f" {serve['rounds']} rounds; latency per request, connect to last byte.",
            "",
            "| p50 | p99 | max | one round | errors |",
            "| --- | --- | --- | --- | --- |",
            f"| {_s(serve['p50'])} | {_s(serve['p99'])} | {_s(serve['max'])} |"
            f" {_s(serve['round_seconds'])} | {serve['errors']} |",
            "",
        ]
    return lines


def plot(fleet: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = sorted({r["processes"] for r in fleet})
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    for ax, field, title in zip(
        axes,
        ("assume_role_calls", "throttled", "wall_seconds"),
        ("AssumeRole calls", "throttled answers", "wall time (s)"),
    ):
        width = 0.38
        for offset, shared, colour, label in (
            (-width / 2, False, "#d1495b", "without the tier"),
            (width / 2, True, "#1b7f5f", "with RedisTier"),
        ):
            values = [
                next((r[field] for r in fleet if r["processes"] == n and r["shared"] == shared), 0)
                for n in counts
            ]
            bars = ax.bar(
                [i + offset for i in range(len(counts))], values, width, color=colour, label=label
            )
            ax.bar_label(bars, fmt="%.0f" if field != "wall_seconds" else "%.1f", fontsize=8)
        ax.set_xticks(range(len(counts)), [f"{n} process{'es' if n > 1 else ''}" for n in counts])
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    roles = fleet[0]["roles"]
    fig.suptitle(
        f"A fleet assuming the same {roles:,} roles against a local STS"
        f" ({fleet[0]['sts_rate']:g} calls/s); {COMMAND}",
        fontsize=11,
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)


def from_benches(
    benches: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], dict[str, Any] | None, dict[str, Any] | None]:
    """The figures of ``test_shared_tier.py`` in a pytest-benchmark JSON's benchmarks."""
    fleet = [b["extra_info"] for b in benches if b.get("group") == FLEET]
    memory = next((b["extra_info"] for b in benches if b.get("group") == MEMORY), None)
    serve = next((b["extra_info"] for b in benches if b.get("group") == SERVE), None)
    return fleet, memory, serve


def report_sections(benches: list[dict[str, Any]]) -> list[str]:
    """``benches/report.py``'s sections for these benchmarks (none if they did not run)."""
    return markdown(*from_benches(benches), command="make bench")


def report_plot(benches: list[dict[str, Any]], path: Path) -> None:
    """``benches/report.py``'s plot of the fleet runs, if they ran."""
    fleet = from_benches(benches)[0]
    if fleet:
        plot(fleet, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--roles", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args(argv)
    fleet = []
    with tempfile.TemporaryDirectory() as directory, RedisServer(Path(directory)) as redis:
        for n in args.processes:
            for shared in (False, True):
                result = run_fleet(n, args.roles, shared, redis.url)
                print(json.dumps(result), flush=True)
                fleet.append(result)
        memory = memory_per_role(redis)
        print(json.dumps(memory), flush=True)
    serve = serve_load(args.clients)
    print(json.dumps(serve), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "shared_tier.md").write_text(
        "\n".join(["# Shared tier and serve benchmarks", "", *markdown(fleet, memory, serve)])
    )
    plot(fleet, args.out / "shared_tier.png")
    print(f"wrote {args.out / 'shared_tier.md'} and {args.out / 'shared_tier.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
