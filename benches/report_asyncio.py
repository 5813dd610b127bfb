"""The asyncio section of ``docs/benchmarks.md`` (from ``benches/test_asyncio.py``)."""

from __future__ import annotations

from typing import Any

Bench = dict[str, Any]
TIMES = "\N{MULTIPLICATION SIGN}"

HOT = "asyncio hot path"
WAIT = "asyncio many waiters"
FAN = "asyncio fan-out"


def _group(benches: list[Bench], prefix: str) -> list[Bench]:
    return [b for b in benches if str(b.get("group") or "").startswith(prefix)]


def _ns(seconds: float) -> str:
    return f"{seconds * 1e9:,.0f} ns" if seconds < 1e-6 else f"{seconds * 1e6:.1f} µs"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def asyncio_section(benches: list[Bench]) -> list[str]:
    hot = _group(benches, HOT)
    wait = _group(benches, WAIT)
    fan = _group(benches, FAN)
    if not (hot or wait or fan):
        return []
    lines = ["## asyncio", ""]
    if hot:
        times = {b["name"]: b["extra_info"]["seconds_per_call"] for b in hot}
        sync = next((t for n, t in times.items() if "get() (sync" in n), None)
        lines += [
            "Fresh credentials, in a running event loop: seconds per iteration of a loop that "
            "calls (and awaits) the method, best of 5 rounds, the loop's own cost included.  "
            "aioboto3-assume runs in a virtual environment of its own (it pins an older "
            "aiobotocore).",
            "",
        ]
        rows = [
            [name, _ns(t), f"{t / sync:.1f}{TIMES}" if sync else ""]
            for name, t in sorted(times.items(), key=lambda kv: kv[1])
        ]
        lines += [*_table(["", "per call", "vs. get()"], rows), ""]
    if wait:
        info0 = wait[0]["extra_info"]
        lines += [
            f"{info0['waiters']:,} coroutines awaiting one refresh whose source answers after "
            f"{info0['source_latency'] * 1000:.0f} ms (all rounds; the loop stall is measured "
            "once every waiter is waiting: starting ten thousand tasks is one long turn of "
            "the loop whatever they await):",
            "",
        ]
        rows = []
        for b in wait:
            i = b["extra_info"]
            rows.append(
                [
                    b["name"],
                    ", ".join(_ms(s) for s in i["served_after"]),
                    ", ".join(f"{s * 1000:.1f} ms" for s in i["max_loop_stall"]),
                    str(max(i["source_calls"])),
                ]
            )
        lines += [*_table(["", "all served after", "longest loop stall", "source calls"], rows)]
        lines.append("")
    if fan:
        lines += [
            "Ready per-account aiobotocore S3 clients through the local StsServer (100 calls/s, "
            "20 ms per answer), one event loop, a fresh process per case:",
            "",
        ]
        rows = []
        for b in fan:
            i = b["extra_info"]
            rows.append(
                [
                    b["name"],
                    _ms(i["seconds"]),
                    f"{i['seconds_per_account'] * 1000:.1f} ms",
                    f"{i['held_mb_per_account']:.2f} MB",
                    f"{i['peak_rss_mb']:,.0f} MB",
                    _ms(i["max_loop_stall"]),
                    f"{i['assume_role_calls']:,} / {i['throttled']:,}",
                    str(i["failures"]),
                ]
            )
        header = [
            "",
            "wall time",
            "per account",
            "memory per account",
            "peak RSS",
            "longest loop stall",
            "AssumeRole calls / throttled",
            "failures",
        ]
        lines += [*_table(header, rows), ""]
    return lines
