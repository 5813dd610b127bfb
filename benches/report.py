"""Run the benchmark suites and write ``docs/benchmarks.md`` and ``docs/benchmarks.png``.

    .venv/bin/python benches/report.py                  # pytest benches, then both files
    .venv/bin/python benches/report.py --json RUN.json  # both files from a saved run

Without ``--json`` it runs ``python -m pytest benches --benchmark-only
--benchmark-json=.benchmarks/latest.json`` (arguments after ``--`` are passed on) and reads
that file.  Every figure comes from pytest-benchmark's JSON: its timing statistics for the
hot path at 1 thread, and the ``extra_info`` each bench records for everything else
(throughput, waits, source calls, the fan-out subprocess measurements).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import shared_tier
from report_asyncio import asyncio_section
from report_discovery import discovery_section

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = ROOT / ".benchmarks" / "latest.json"
COMMAND = "make bench"
COMMAND_LONG = ".venv/bin/python benches/report.py"
PACKAGES = (
    "creds_core",
    "botocore",
    "boto3",
    "boto3-refresh-session",
    "aws-assume-role-lib",
    "aiobotocore",
    "pytest-benchmark",
)

HOT_1 = "hot path: fresh credentials, 1 thread"
HOT_8 = "hot path: fresh credentials, 8 threads"
SINGLE = "single flight"
STORM = "refresh storm"
SLOW = "slow source"
FANOUT = "fan-out"

# One colour per library, the same in every panel.
COLOURS = {
    "creds_core": "#1b7f5f",
    "botocore": "#d1495b",
    "boto3-refresh-session": "#edae49",
    "aws-assume-role-lib": "#5b6c8f",
    "boto3": "#8d6a9f",
    "boto3-clients": "#c39bd3",
}

Bench = dict[str, Any]
TIMES = "\N{MULTIPLICATION SIGN}"


# --- reading -----------------------------------------------------------------------------------


def run_pytest(json_path: Path, extra: Sequence[str]) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pytest",
        "benches",
        "-q",
        "--benchmark-only",
        f"--benchmark-json={json_path}",
        *extra,
    ]
    print("$", " ".join(command), flush=True)
    done = subprocess.run(command, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the benchmarks failed (exit {done.returncode}): no report written")


def group(benches: Iterable[Bench], prefix: str) -> list[Bench]:
    return [b for b in benches if str(b.get("group") or "").startswith(prefix)]


def library(name: str) -> str:
    """The colour key of a bench row, from its name."""
    lowered = name.lower()
    for key in ("creds_core", "boto3-refresh-session", "aws-assume-role-lib", "botocore"):
        if key in lowered:
            return key
    return "boto3-clients" if "one boto3 session" in lowered else "boto3"


# --- formatting --------------------------------------------------------------------------------


def fmt_time(seconds: float) -> str:
    if seconds >= 0.9995:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms" if seconds < 0.1 else f"{seconds * 1e3:.0f} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:.3g} µs"
    return f"{seconds * 1e9:.0f} ns"


def fmt_ratio(x: float) -> str:
    return f"{x:.0f}{TIMES}" if x >= 10 else f"{x:.1f}{TIMES}"


def fmt_int(n: float) -> str:
    return f"{n:,.0f}"


#: Rows where creds_core is not ahead of its best peer, collected while the sections render.
NOT_AHEAD: list[str] = []


def versus(
    ours: float | None, peers: Iterable[float | None], *, lower_is_better: bool, row: str
) -> str:
    """How creds_core's figure compares with the best peer's in the same run: ``3.1x ahead``,
    or ``**not ahead** (0.93x)`` (then ``row`` is listed in :data:`NOT_AHEAD`)."""
    values = [p for p in peers if p is not None]
    if ours is None or not values:
        return ""
    best = min(values) if lower_is_better else max(values)
    if lower_is_better:
        ratio = best / ours if ours > 0 else float("inf")
    else:
        ratio = ours / best if best > 0 else float("inf")
    if ratio == float("inf"):
        return "ahead (ours: none)"
    shown = f"{ratio:.2f}{TIMES}" if ratio < 10 else fmt_ratio(ratio)
    if ratio > 1.0:
        return f"{shown} ahead"
    NOT_AHEAD.append(row)
    return f"**not ahead** ({shown})"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


# --- sections ----------------------------------------------------------------------------------


def hot_path(benches: list[Bench]) -> list[str]:
    one = {b["name"]: b for b in group(benches, HOT_1)}
    eight = {b["name"]: b for b in group(benches, HOT_8)}
    if not one:
        return []
    ref = next((n for n in one if n.startswith("botocore")), None)
    ref_t = one[ref]["stats"]["median"] if ref else None
    ref_8 = eight[ref]["extra_info"]["calls_per_second"] if ref and ref in eight else None
    rows = []
    peers = [n for n in one if library(n) != "creds_core"]

    def rate_of(name: str) -> float | None:
        value = eight.get(name, {}).get("extra_info", {}).get("calls_per_second")
        return float(value) if value else None

    for name, b in sorted(one.items(), key=lambda kv: kv[1]["stats"]["median"]):
        median = b["stats"]["median"]
        rate = rate_of(name)
        ours = library(name) == "creds_core"
        rows.append(
            [
                name,
                fmt_time(median),
                fmt_ratio(ref_t / median) if ref_t else "",
                f"{rate / 1e6:.2f} M" if rate else "",
                fmt_ratio(rate / ref_8) if rate and ref_8 else "",
                " / ".join(
                    [
                        versus(
                            median,
                            [one[p]["stats"]["median"] for p in peers],
                            lower_is_better=True,
                            row=f"hot path, 1 thread: {name}",
                        ),
                        versus(
                            rate,
                            [rate_of(p) for p in peers],
                            lower_is_better=False,
                            row=f"hot path, 8 threads: {name}",
                        ),
                    ]
                )
                if ours
                else "",
            ]
        )
    seconds = next(iter(eight.values()))["extra_info"]["seconds_per_round"] if eight else 1.0
    return [
        "## 1. Hot path: fresh credentials",
        "",
        "What the request signer asks for on every request.  1 thread: pytest-benchmark's median"
        f" time per call.  8 threads: calls per second summed over 8 threads calling in a loop"
        f" for {seconds:g} s (best of 3; the GIL is shared, so this is at most one core's"
        " worth).  Every peer holds fresh credentials whose refresh would call a local stub or"
        " the local StsServer.  The last three rows all run botocore's"
        " `RefreshableCredentials.get_frozen_credentials()`; differences among them are"
        " run-to-run noise.",
        "",
        *table(
            [
                "credentials object",
                "1 thread: median per call",
                "vs botocore",
                "8 threads: calls/s",
                "vs botocore",
                "vs best peer (1 / 8 threads)",
            ],
            rows,
        ),
        "",
    ]


def single_flight(benches: list[Bench]) -> list[str]:
    rows = []
    items = group(benches, SINGLE)
    if not items:
        return []
    info0 = items[0]["extra_info"]

    def kind(name: str) -> str:  # a stub source, or the StsServer: compared with their like
        return name[name.rfind("(") :]

    for b in items:
        i = b["extra_info"]
        peers = [
            p["extra_info"]
            for p in items
            if library(p["name"]) != "creds_core" and kind(p["name"]) == kind(b["name"])
        ]
        ours = library(b["name"]) == "creds_core"
        rows.append(
            [
                b["name"],
                fmt_int(i["source_calls"]),
                fmt_time(i["wait_p50"]),
                fmt_time(i["wait_p99"]),
                fmt_time(i["wait_max"]),
                fmt_time(i["span"]),
                fmt_int(i["errors"]),
                " / ".join(
                    [
                        versus(
                            i["span"],
                            [p["span"] for p in peers],
                            lower_is_better=True,
                            row=f"single flight, all served after: {b['name']}",
                        ),
                        versus(
                            i["wait_p50"],
                            [p["wait_p50"] for p in peers],
                            lower_is_better=True,
                            row=f"single flight, wait p50: {b['name']}",
                        ),
                    ]
                )
                if ours
                else "",
            ]
        )
    return [
        "## 2. Single flight: 1,000 callers, credentials just expired",
        "",
        f"{fmt_int(info0['threads'])} threads call at once; the source takes"
        f" {fmt_time(info0['source_delay'])} (a stub, or the StsServer answering AssumeRole"
        " after that long).  A caller's wait runs from its own call to its return, so a"
        " thread the GIL lets in only after the refresh has finished waits next to nothing"
        ' (a low p50 can mean that); "all served" runs from the first call to the last'
        " return and is the figure to compare.  creds_core rows are compared with the best peer"
        " over the same kind of source (stub or StsServer).  Figures: the median over"
        f" {info0['rounds']} round(s).  Time is moved past expiry with a ManualClock"
        " (creds_core) or a shifted `time_fetcher` (botocore-based peers).",
        "",
        *table(
            [
                "",
                "source calls",
                "wait p50",
                "wait p99",
                "wait max",
                "all served after",
                "errors",
                "vs best peer (all served / p50)",
            ],
            rows,
        ),
        "",
    ]


def fanout(benches: list[Bench]) -> list[str]:
    items = group(benches, FANOUT)
    if not items:
        return []
    rows = []
    peer_infos = [b["extra_info"] for b in items if library(b["name"]) != "creds_core"]
    for b in items:
        i = b["extra_info"]
        ours = library(b["name"]) == "creds_core"
        rows.append(
            [
                i["label"],
                fmt_int(i["accounts"]),
                fmt_time(i["wall_seconds"]),
                f"{i['seconds_per_account'] * 1e3:.1f} ms",
                fmt_int(i["sts_calls"]),
                fmt_int(i["throttled"]),
                fmt_int(i["caller_failures"]),
                f"{i['peak_rss_mb']:,.0f} MB",
                f"{i['held_mb']:,.0f} MB",
                f"{i['held_mb_per_account']:.2f} MB",
                " / ".join(
                    [
                        versus(
                            i["seconds_per_account"],
                            [p["seconds_per_account"] for p in peer_infos],
                            lower_is_better=True,
                            row=f"fan-out, time per account: {i['label']}, {i['accounts']}",
                        ),
                        versus(
                            i["held_mb_per_account"],
                            [p["held_mb_per_account"] for p in peer_infos],
                            lower_is_better=True,
                            row=f"fan-out, memory per account: {i['label']}, {i['accounts']}",
                        ),
                    ]
                )
                if ours
                else "",
            ]
        )
    info0 = items[0]["extra_info"]
    lines = [
        "## 3. Multi-account fan-out",
        "",
        "Ready-to-use per-account S3 clients (the role's credentials resolved through the local"
        f" StsServer: {info0['sts_rate']:g} requests/s, {fmt_time(info0['sts_delay'])} per"
        f" answer) built by {info0['workers']} worker threads; each case in a fresh process."
        "  Peak RSS is the process's ``ru_maxrss``; memory held is the resident memory the"
        " ready clients add (RSS after minus before; for creds_core it includes the service"
        " models, loaded once).",
        "",
        *table(
            [
                "",
                "accounts",
                "wall time",
                "per account",
                "STS calls",
                "throttled",
                "caller failures",
                "peak RSS",
                "memory held",
                "per account",
                "vs best peer (time / memory per account)",
            ],
            rows,
        ),
        "",
    ]
    ours = [b["extra_info"] for b in items if library(b["name"]) == "creds_core"]
    common = [b["extra_info"] for b in items if b["extra_info"].get("case") == "boto3"]
    careful = [b["extra_info"] for b in items if b["extra_info"].get("case") == "boto3-clients"]
    if ours and common:
        ref = common[0]
        big = max(ours, key=lambda i: i["accounts"])  # the first such row: fan_out
        same = next((i for i in ours if i["accounts"] == ref["accounts"]), None)
        lines += [
            "Per account, against a new boto3 Session and client per account"
            f" ({fmt_int(ref['accounts'])} accounts; the targets):",
            "",
            *_versus(big, ref),
            *(_versus(same, ref) if same is not None and same is not big else []),
            "",
        ]
        if careful:
            speed, memory = _ratios(big, careful[0])
            lines += [
                f"Against one boto3 session with a client per account made with the role's"
                f" keys ({fmt_int(careful[0]['accounts'])} accounts), {big['label']} is"
                f" {fmt_ratio(speed)} as fast and holds {fmt_ratio(memory)} less memory per"
                " account; those clients keep the keys they were made with and cannot"
                " refresh them.",
                "",
            ]
        if ref["accounts"] != big["accounts"]:
            lines += [
                f"The peers ran with {fmt_int(ref['accounts'])} accounts to keep `make bench`"
                " short: their time and memory grow linearly with the accounts"
                f" (≈{ref['seconds_per_account'] * 1e3:.0f} ms and"
                f" {ref['held_mb_per_account']:.0f} MB each, so about"
                f" {ref['seconds_per_account'] * big['accounts']:.0f} s and"
                f" {ref['held_mb_per_account'] * big['accounts'] / 1024:.0f} GB for"
                f" {fmt_int(big['accounts'])}).  `CREDS_CORE_BENCH_FANOUT_PEERS="
                f"{big['accounts']} {COMMAND}` runs them at full size.",
                "",
            ]
    return lines


def _ratios(ours: dict[str, Any], ref: dict[str, Any]) -> tuple[float, float]:
    """How many times faster and smaller per account ``ours`` is than ``ref``."""
    speed = ref["seconds_per_account"] / ours["seconds_per_account"]
    memory = ref["held_mb_per_account"] / ours["held_mb_per_account"]
    return speed, memory


def _versus(ours: dict[str, Any], ref: dict[str, Any]) -> list[str]:
    speed, memory = _ratios(ours, ref)
    return [
        f"* {ours['label']}, {fmt_int(ours['accounts'])} accounts:"
        f" **{fmt_ratio(speed)} faster** (target ≥ 10{TIMES}: {_met(speed >= 10)}),"
        f" **{fmt_ratio(memory)} less memory** (target ≥ 10{TIMES}: {_met(memory >= 10)})."
    ]


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def storm(benches: list[Bench]) -> list[str]:
    items = group(benches, STORM)
    if not items:
        return []
    rows = []
    peer_infos = [b["extra_info"] for b in items if library(b["name"]) != "creds_core"]
    for b in items:
        i = b["extra_info"]
        ours = library(b["name"]) == "creds_core"
        limit = (
            f" (limit {i['limiter_rate']:g} + burst {i['limiter_burst']:g})"
            if "limiter_rate" in i
            else " (no limiter)"
        )
        rows.append(
            [
                b["name"],
                fmt_int(i["source_calls"]),
                fmt_time(i["storm_seconds"]),
                f"{i['mean_rate']:,.0f}/s",
                f"{i['peak_rate_1s']:,.0f}/s{limit}",
                fmt_int(i["caller_waits"]) if "caller_waits" in i else "n/a",
                fmt_int(i["get_calls"]),
                fmt_time(i["get_p50"]),
                fmt_time(i["get_p99"]),
                fmt_time(i["get_max"]),
                versus(
                    i["get_p99"],
                    [p["get_p99"] for p in peer_infos],
                    lower_is_better=True,
                    row=f"refresh storm, get() p99: {b['name']}",
                )
                if ours
                else "",
            ]
        )
    i0 = items[0]["extra_info"]
    return [
        "## 4. Refresh storm: 10,000 roles due within one minute",
        "",
        f"{fmt_int(i0['roles'])} cached roles whose advisory windows open within the same"
        " minute; a ManualClock jumps past that minute so that all are due at once, while"
        f" {i0['callers']} caller threads keep calling `get()` on all of them.  The source is"
        f" a stub taking {fmt_time(i0['source_delay'])}; creds_core's caches share one"
        ' `Limiter`.  "Callers that waited" is the caches\' own count of calls that waited for'
        " a refresh; `get()` latencies include GIL scheduling among the threads.",
        "",
        *table(
            [
                "",
                "source calls",
                "storm lasted",
                "mean rate",
                "peak rate (any 1 s)",
                "callers that waited",
                "get() calls",
                "get() p50",
                "p99",
                "max",
                "vs best peer (get() p99)",
            ],
            rows,
        ),
        "",
    ]


def slow_source(benches: list[Bench]) -> list[str]:
    items = group(benches, SLOW)
    if not items:
        return []
    rows = []

    def waited(i: dict[str, Any]) -> float:
        # Runs before this figure existed: the longest wait stands in for it.
        return float(i.get("seconds_waited_over_100ms", i["longest_wait"]))

    for b in items:
        i = b["extra_info"]
        lib = "creds_core" if b["name"].endswith("creds_core") else "botocore"
        how = f"{lib} (load_timeout {i['load_timeout']:g} s)" if "load_timeout" in i else lib
        peers = [
            p["extra_info"]
            for p in items
            if not p["name"].endswith("creds_core") and p["extra_info"]["window"] == i["window"]
        ]
        rows.append(
            [
                i["window"],
                how,
                fmt_time(i["all_served_after"]),
                fmt_time(i["longest_wait"]),
                fmt_int(i["calls_waiting_over_100ms"]),
                fmt_time(waited(i)),
                fmt_int(i["source_calls"]),
                " / ".join(
                    [
                        versus(
                            i["all_served_after"],
                            [p["all_served_after"] for p in peers],
                            lower_is_better=True,
                            row=f"slow source, {i['window']}: every caller served after",
                        ),
                        versus(
                            waited(i),
                            [waited(p) for p in peers],
                            lower_is_better=True,
                            row=f"slow source, {i['window']}: time spent waiting",
                        ),
                    ]
                )
                if lib == "creds_core"
                else "",
            ]
        )
    i0 = items[0]["extra_info"]
    return [
        "## 5. Slow source",
        "",
        f"The refresh takes 30 s, **scaled down to {i0['source_delay']:g} s** here;"
        f" {i0['callers']} callers call in a loop (1 ms apart) for"
        f" {i0['source_delay'] + 1:g} s from the moment the credentials (1 h) enter the"
        " window: advisory = expiry in 12 min, mandatory = expiry in 30 s, expired = 1 s"
        " ago.  In the mandatory and expired windows creds_core answers each call within"
        " `load_timeout` with the last good credentials (still valid in the mandatory window,"
        " already expired in the last row: static stability) while the refresh goes on; once"
        " the refresh has outlived `load_timeout`, later calls are answered at once (one wait"
        " per refresh).  Time spent waiting: the calls over 100 ms, added up over all callers."
        "  boto3-refresh-session and aws-assume-role-lib use botocore's"
        " `RefreshableCredentials` and behave as botocore.",
        "",
        *table(
            [
                "window",
                "library",
                "every caller served after",
                "longest wait",
                "calls that waited > 100 ms",
                "time spent waiting",
                "source calls",
                "vs botocore (served after / waiting)",
            ],
            rows,
        ),
        "",
    ]


def header(data: dict[str, Any]) -> list[str]:
    machine = data.get("machine_info", {})
    cpu = machine.get("cpu", {})
    when = str(data.get("datetime", ""))[:16].replace("T", " ")
    versions = ", ".join(f"{p} {_version(p)}" for p in PACKAGES)
    return [
        "# Benchmarks",
        "",
        f"Written by `{COMMAND}` (`{COMMAND_LONG}`), which runs the pytest-benchmark suites in"
        " `benches/` and turns their JSON into this page and `benchmarks.png`.  Nothing talks"
        " to AWS: sources are local stubs or the project's own StsServer and Ec2Server on"
        " 127.0.0.1.",
        "",
        f"Run of {when} UTC on {cpu.get('count', '?')} CPUs ({cpu.get('brand_raw', '?')}),"
        f" Python {machine.get('python_version', '?')}; {versions}.  One run.  From run to run"
        " on this (shared) machine the hot path moves by about 10 %, the concurrent figures"
        " (waits, latency maxima, fan-out times) by up to 2x; source call counts do not"
        " move.",
        "",
        "![benchmarks](benchmarks.png)",
        "",
    ]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def markdown(data: dict[str, Any]) -> str:
    benches: list[Bench] = data["benchmarks"]
    NOT_AHEAD.clear()
    body: list[str] = []
    sections = (
        hot_path,
        single_flight,
        fanout,
        storm,
        slow_source,
        asyncio_section,
        discovery_section,
    )
    for section in sections:
        body += section(benches)
    body += shared_tier.report_sections(benches)  # the shared tier and serve (own file)
    verdict = (
        ["**Rows where creds_core is not ahead of the best peer in this run:**", ""]
        + [f"* {row}" for row in NOT_AHEAD]
        if NOT_AHEAD
        else ["creds_core is ahead of the best peer on every compared row of this run."]
    )
    lines = [
        *header(data),
        "Each creds_core row gives its ratio against the best peer of the same run (the"
        f" peer's figure over creds_core's, so above 1{TIMES} is ahead) and is marked"
        " **not ahead** where it is not.",
        "",
        *verdict,
        "",
        *body,
    ]
    return "\n".join(lines).rstrip() + "\n"


# --- plotting ----------------------------------------------------------------------------------


def _short(name: str) -> str:
    replacements = {
        "creds_core boto3 adapter get_frozen_credentials()": "creds_core boto3 adapter",
        "creds_core CredentialCache.get()": "creds_core CredentialCache",
        "botocore RefreshableCredentials": "botocore Refreshable",
        "creds_core.boto3.assume_role + Limiter": "creds_core assume_role",
        "creds_core.fanout.fan_out + Limiter": "creds_core fan_out",
        "creds_core.boto3.assume_role": "creds_core assume_role",
        "new boto3 Session + client per account (botocove)": "boto3 Session per account",
        "one boto3 session, a client per account (static keys)": "boto3 client per account",
        " + shared Limiter": " + Limiter",
        " (StsServer)": " (STS)",
    }
    for old, new in replacements.items():
        name = name.replace(old, new)
    return name


def _calls(n: int) -> str:
    return f"{n:,} source call" + ("" if n == 1 else "s")


def _hbar(ax: Any, labels: Sequence[str], values: Sequence[float], fmt: Any) -> None:
    """One horizontal bar per label, coloured by library, its value written after it."""
    y = list(range(len(labels)))
    bars = ax.barh(y, values, color=[COLOURS[library(label)] for label in labels])
    ax.set_yticks(y, [_short(label) for label in labels], fontsize=8)
    ax.invert_yaxis()
    for bar, value in zip(bars, values):
        middle = bar.get_y() + bar.get_height() / 2
        ax.text(bar.get_width(), middle, " " + fmt(value), va="center", fontsize=8)
    ax.margins(x=0.25)


def _grouped(
    ax: Any, labels: Sequence[str], series: dict[str, Sequence[float]], notes: Sequence[str]
) -> None:
    """Horizontal bars of seconds: one group per label, one shade per series (lighter =
    later); ``notes`` go under each label."""
    height = 0.8 / len(series)
    for s, (key, values) in enumerate(series.items()):
        for k, (label, value) in enumerate(zip(labels, values)):
            y = k - 0.4 + height * (s + 0.5)
            colour = COLOURS[library(label)]
            ax.barh(y, value, height=height * 0.95, color=colour, alpha=1.0 - 0.3 * s)
            ax.text(value, y, f" {key} {fmt_time(value)}", va="center", fontsize=7)
    ticks = [f"{_short(label)}\n{note}" for label, note in zip(labels, notes)]
    ax.set_yticks(list(range(len(labels))), ticks, fontsize=8)
    ax.invert_yaxis()
    ax.margins(x=0.3)


def _title(ax: Any, title: str, xlabel: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=8)


def _plot_hot_path(benches: list[Bench], a_one: Any, a_eight: Any) -> None:
    one = sorted(group(benches, HOT_1), key=lambda b: b["stats"]["median"])
    if one:
        _hbar(a_one, [b["name"] for b in one], [b["stats"]["median"] for b in one], fmt_time)
        a_one.set_xscale("log")
        _title(a_one, "1. Hot path, 1 thread: time per call (log)", "seconds (lower is better)")
    eight = sorted(group(benches, HOT_8), key=lambda b: -b["extra_info"]["calls_per_second"])
    if eight:
        rates = [b["extra_info"]["calls_per_second"] / 1e6 for b in eight]
        _hbar(a_eight, [b["name"] for b in eight], rates, lambda v: f"{v:.2f} M/s")
        a_eight.set_xscale("log")
        _title(
            a_eight,
            "1. Hot path, 8 threads: calls/s, all threads (log)",
            "million calls/s (higher is better)",
        )


def _plot_single_flight(benches: list[Bench], ax: Any) -> None:
    single = group(benches, SINGLE)
    if not single:
        return
    infos = [b["extra_info"] for b in single]
    _grouped(
        ax,
        [b["name"] for b in single],
        {"p50": [i["wait_p50"] for i in infos], "p99": [i["wait_p99"] for i in infos]},
        [_calls(i["source_calls"]) for i in infos],
    )
    _title(
        ax,
        f"2. Single flight: {fmt_int(infos[0]['threads'])} callers,"
        f" {fmt_time(infos[0]['source_delay'])} source: caller wait",
        "seconds (lower is better)",
    )


def _plot_slow_source(benches: list[Bench], ax: Any) -> None:
    slow = group(benches, SLOW)
    if not slow:
        return
    labels = [b["name"].replace(" window", "") for b in slow]
    _hbar(ax, labels, [b["extra_info"]["all_served_after"] for b in slow], fmt_time)
    delay = slow[0]["extra_info"]["source_delay"]
    _title(
        ax,
        f"5. Slow source ({delay:g} s): callers served after",
        f"seconds; a 30 s source scaled to {delay:g} s",
    )


def _plot_fanout(benches: list[Bench], a_time: Any, a_memory: Any) -> None:
    fan = group(benches, FANOUT)
    if not fan:
        return
    labels = [b["name"] for b in fan]
    per_account = [b["extra_info"]["seconds_per_account"] for b in fan]
    _hbar(a_time, labels, per_account, fmt_time)
    _title(a_time, "3. Fan-out: wall time per account", "seconds (lower is better)")
    memory = [b["extra_info"]["held_mb_per_account"] for b in fan]
    _hbar(a_memory, labels, memory, lambda v: f"{v:.2f} MB")
    _title(
        a_memory,
        "3. Fan-out: memory held per ready per-account client",
        "MB per account (lower is better)",
    )


def _plot_storm(benches: list[Bench], a_rate: Any, a_latency: Any) -> None:
    items = group(benches, STORM)
    if not items:
        return
    for b in items:
        i = b["extra_info"]
        step = float(i["timeline_bin"])
        xs = [k * step for k in range(len(i["timeline"]) + 1)]
        ys = [n / step for n in i["timeline"]]
        colour = COLOURS[library(b["name"])]
        a_rate.step(xs, [*ys, ys[-1]], where="post", color=colour, label=_short(b["name"]))
        if "limiter_rate" in i:
            a_rate.axhline(i["limiter_rate"], color=colour, linestyle=":", linewidth=1)
            a_rate.text(0, i["limiter_rate"], " Limiter rate", fontsize=7, va="bottom")
    a_rate.set_ylim(bottom=0)
    a_rate.legend(fontsize=7, loc="lower center")
    roles = fmt_int(items[0]["extra_info"]["roles"])
    _title(
        a_rate,
        f"4. Refresh storm, {roles} roles: source calls per second",
        "seconds since the first refresh",
    )
    infos = [b["extra_info"] for b in items]
    _grouped(
        a_latency,
        [b["name"] for b in items],
        {key: [i[f"get_{key}"] for i in infos] for key in ("p50", "p99", "max")},
        [_calls(i["source_calls"]) for i in infos],
    )
    a_latency.set_xscale("log")
    _title(
        a_latency,
        "4. Refresh storm: get() latency (log)",
        "seconds (lower is better)",
    )


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benches: list[Bench] = data["benchmarks"]
    fig, axes = plt.subplots(2, 4, figsize=(22, 10), layout="constrained")
    (a_hot1, a_hot8, a_single, a_slow), (a_ftime, a_fmem, a_storm, a_stlat) = axes
    _plot_hot_path(benches, a_hot1, a_hot8)
    _plot_single_flight(benches, a_single)
    _plot_slow_source(benches, a_slow)
    _plot_fanout(benches, a_ftime, a_fmem)
    _plot_storm(benches, a_storm, a_stlat)
    for ax in axes.flat:
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(
        f"creds_core benchmarks ({COMMAND}).  Green: creds_core; red: botocore; yellow:"
        " boto3-refresh-session; blue: aws-assume-role-lib; purple: plain boto3 (dark: a"
        " Session per account, light: a client per account).  Tables: docs/benchmarks.md",
        fontsize=11,
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- main --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--json", type=Path, help="read this pytest-benchmark JSON, run nothing")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="output directory")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed on to pytest")
    args = parser.parse_args(argv)
    source: Path = args.json
    if source is None:
        source = DEFAULT_JSON
        run_pytest(source, args.pytest_args)
    data = json.loads(source.read_text())
    if "datetime" in data:
        data["datetime"] = datetime.fromisoformat(str(data["datetime"])).isoformat()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmarks.md").write_text(markdown(data))
    plot(data, args.out / "benchmarks.png")
    shared_tier.report_plot(data["benchmarks"], args.out / "shared_tier.png")
    print(f"wrote {args.out / 'benchmarks.md'} and {args.out / 'benchmarks.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
