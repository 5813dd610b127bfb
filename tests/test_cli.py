"""The ``creds-core`` command line: export, serve, doctor, demo, errors and exit codes.

Every test runs in an isolated AWS environment (``isolated_aws``: a fake HOME and config
files, no AWS_* variables, IMDS disabled, no connection beyond loopback in this process).
botocore's own clients are the clients: its ProcessProvider runs ``creds-core export`` and its
ContainerProvider reads ``creds-core serve``.  Subprocesses inherit the isolated environment.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import botocore.session
import pytest
from botocore.credentials import ContainerProvider

from creds_core import cli
from creds_core._cli import doctor as doctor_module
from creds_core._cli.export import LOOP_VARIABLE
from creds_core._cli.serve import check_host
from helpers import posix_signals, serve_variables
from server_fixtures import ImdsServer, StsServer

pytestmark = pytest.mark.usefixtures("isolated_aws")

SRC = Path(__file__).resolve().parents[1] / "python"
KEY = "AKIACLITESTKEY000001"
SECRET = "cli-SENTINEL-secret 'quoted' $HOME \"x\""
TOKEN = "cli-SENTINEL-token/with+chars="


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "creds_core", *args]


def _cmdline(*args: str) -> str:
    return " ".join(shlex.quote(a) for a in _cmd(*args))


@pytest.fixture(autouse=True)
def _pythonpath(monkeypatch: pytest.MonkeyPatch) -> None:
    """Subprocesses import creds_core from this source tree."""
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", str(SRC) + (os.pathsep + path if path else ""))


@pytest.fixture
def env_creds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)


def _write(path: str | None, text: str) -> None:
    assert path
    Path(path).write_text(textwrap.dedent(text), encoding="utf-8")


def _process_script(tmp_path: Path, document: dict[str, object]) -> str:
    """A credential_process command line printing ``document``."""
    script = tmp_path / f"process_{len(list(tmp_path.glob('process_*')))}.py"
    script.write_text(f"import json\nprint(json.dumps({document!r}))\n", encoding="utf-8")
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"


def _no_secret(*texts: str) -> None:
    for text in texts:
        assert "SENTINEL" not in text
        assert "Traceback" not in text


# --- help and usage -------------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["export"], ["serve"], ["doctor"], ["demo"]])
def test_help_on_every_command(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: creds-core")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == cli.EXIT_USAGE
    assert cli.main(["export", "--format", "xml"]) == cli.EXIT_USAGE
    assert cli.main(["serve", "--port", "70000"]) == cli.EXIT_USAGE
    assert cli.main(["demo", "--roles", "0"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "invalid choice: 'xml'" in err
    assert "Traceback" not in err


def test_python_dash_m_runs_the_cli() -> None:
    done = subprocess.run(_cmd("--version"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stdout.startswith("creds-core ")


# --- export ---------------------------------------------------------------------------------


def test_botocore_resolves_a_credential_process_running_export() -> None:
    _write(
        os.environ["AWS_SHARED_CREDENTIALS_FILE"],
        f"""\
        [source]
        aws_access_key_id = {KEY}
        aws_secret_access_key = {SECRET}
        aws_session_token = {TOKEN}
        """,
    )
    _write(
        os.environ["AWS_CONFIG_FILE"],
        f"""\
        [profile target]
        credential_process = {_cmdline("export", "--profile", "source")}
        """,
    )
    creds = botocore.session.Session(profile="target").get_credentials()
    assert creds is not None
    frozen = creds.get_frozen_credentials()
    assert creds.method == "custom-process"
    assert (frozen.access_key, frozen.secret_key, frozen.token) == (KEY, SECRET, TOKEN)


def test_export_passes_expiry_and_account_to_botocore(tmp_path: Path) -> None:
    expiry = (datetime.now(timezone.utc) + timedelta(hours=2)).replace(microsecond=0)
    source = _process_script(
        tmp_path,
        {
            "Version": 1,
            "AccessKeyId": "ASIAPROCESSSOURCE001",
            "SecretAccessKey": SECRET,
            "SessionToken": TOKEN,
            "Expiration": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "AccountId": "210987654321",
        },
    )
    _write(
        os.environ["AWS_CONFIG_FILE"],
        f"""\
        [profile source]
        credential_process = {source}
        [profile target]
        credential_process = {_cmdline("export", "--profile", "source")}
        """,
    )
    creds = botocore.session.Session(profile="target").get_credentials()
    assert creds is not None
    assert creds.get_frozen_credentials().access_key == "ASIAPROCESSSOURCE001"
    assert creds._expiry_time == expiry  # type: ignore[attr-defined]
    assert creds.account_id == "210987654321"  # type: ignore[attr-defined]


def test_export_env_is_shell_quoted(env_creds: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["export", "--format", "env"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert f"export AWS_ACCESS_KEY_ID={KEY}\n" in captured.out
    assert "unset AWS_CREDENTIAL_EXPIRATION" in captured.out
    shell = shutil.which("sh")
    if shell is None:
        pytest.skip("no POSIX shell")
    script = 'AWS_SECURITY_TOKEN=stale; eval "$1"; printf "%s|%s|%s" '
    script += '"$AWS_SECRET_ACCESS_KEY" "$AWS_SESSION_TOKEN" "${AWS_SECURITY_TOKEN-unset}"'
    done = subprocess.run(
        [shell, "-c", script, "sh", captured.out], capture_output=True, text=True, timeout=30
    )
    assert done.stdout == f"{SECRET}|{TOKEN}|unset"


# PowerShell's single quotes: ' and the typographic ones; two in a row read as the second.
_PS_Q = "'\u2018\u2019\u201a\u201b"
_POWERSHELL_SET = re.compile(rf"^\$Env:(\w+) = [{_PS_Q}]((?:[^{_PS_Q}]|[{_PS_Q}]{{2}})*)[{_PS_Q}]$")
_POWERSHELL_UNSET = re.compile(r"^Remove-Item Env:(\w+) -ErrorAction SilentlyContinue$")


def _powershell_variables(lines: list[str]) -> tuple[dict[str, str], list[str]]:
    """The variables PowerShell lines set, and the ones they remove."""
    values: dict[str, str] = {}
    removed: list[str] = []
    for line in lines:
        set_to, unset = _POWERSHELL_SET.match(line), _POWERSHELL_UNSET.match(line)
        assert set_to or unset, line
        if set_to:
            values[set_to[1]] = re.sub(rf"[{_PS_Q}]([{_PS_Q}])", r"\1", set_to[2])
        elif unset:
            removed.append(unset[1])
    return values, removed


def test_export_powershell_sets_every_value_literally(
    env_creds: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # No PowerShell here: the lines are read as PowerShell reads them. In single quotes
    # nothing is expanded ($HOME, "), and a quote is written twice.
    assert cli.main(["export", "--format", "powershell"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    values, removed = _powershell_variables(captured.out.splitlines())
    assert values == {
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_SESSION_TOKEN": TOKEN,
    }
    assert removed == ["AWS_SECURITY_TOKEN", "AWS_CREDENTIAL_EXPIRATION"]


def _export_with_secret(monkeypatch: pytest.MonkeyPatch, secret: str, shell: str) -> int:
    """``creds-core export --format SHELL`` of environment keys whose secret is ``secret``."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    return cli.main(["export", "--format", shell])


def test_export_powershell_doubles_every_quote_powershell_knows(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # PowerShell also ends a single-quoted string at a typographic quote.
    secret = "a'b\u2019c\u2018d\u201ae\u201bf; Remove-Item x"
    assert _export_with_secret(monkeypatch, secret, "powershell") == 0
    values, _ = _powershell_variables(capsys.readouterr().out.splitlines())
    assert values["AWS_SECRET_ACCESS_KEY"] == secret


def test_export_powershell_refuses_a_line_break_and_prints_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _export_with_secret(monkeypatch, "SENTINEL-first\nsecond", "powershell") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "AWS_SECRET_ACCESS_KEY" in captured.err and "SENTINEL" not in captured.err


def test_export_cmd_prints_set_lines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _export_with_secret(monkeypatch, "wJalr/XUtnFEMI+K7MDENG=", "cmd") == 0
    assert capsys.readouterr().out.splitlines() == [
        f'set "AWS_ACCESS_KEY_ID={KEY}"',
        'set "AWS_SECRET_ACCESS_KEY=wJalr/XUtnFEMI+K7MDENG="',
        'set "AWS_SECURITY_TOKEN="',
        'set "AWS_SESSION_TOKEN="',
        'set "AWS_CREDENTIAL_EXPIRATION="',
    ]


def test_export_cmd_refuses_a_value_cmd_would_expand_and_prints_nothing(
    env_creds: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["export", "--format", "cmd"]) == 2  # SECRET holds a double quote
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "AWS_SECRET_ACCESS_KEY" in captured.err and "--format powershell" in captured.err
    assert "SENTINEL" not in captured.err


def test_export_json_and_process(env_creds: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["export", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document == {
        "AccessKeyId": KEY,
        "SecretAccessKey": SECRET,
        "SessionToken": TOKEN,
        "Expiration": None,
        "AccountId": None,
        "Provider": "env",
    }
    assert cli.main(["export"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document == {
        "Version": 1,
        "AccessKeyId": KEY,
        "SecretAccessKey": SECRET,
        "SessionToken": TOKEN,
    }


def test_export_errors_are_one_line_with_exit_codes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["export"]) == cli.EXIT_NOT_FOUND
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "no credentials found" in err and "creds-core doctor" in err

    assert cli.main(["export", "--profile", "missing"]) == cli.EXIT_NOT_FOUND
    assert 'profile "missing"' in capsys.readouterr().err

    monkeypatch.setenv("AWS_PROFILE", "also-missing")
    assert cli.main(["export"]) == cli.EXIT_NOT_FOUND
    assert 'profile "also-missing" (AWS_PROFILE)' in capsys.readouterr().err
    monkeypatch.delenv("AWS_PROFILE")

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)  # no secret: a configuration error
    assert cli.main(["export"]) == cli.EXIT_CREDENTIALS
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert "AWS_SECRET_ACCESS_KEY is not" in captured.err
    _no_secret(captured.err)


def test_export_refuses_a_credential_process_loop(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(
        os.environ["AWS_CONFIG_FILE"],
        f"""\
        [profile loop]
        credential_process = {_cmdline("export", "--profile", "loop")}
        """,
    )
    # The child export is refused (exit code 4); the parent reports that source's failure.
    assert cli.main(["export", "--profile", "loop"]) == cli.EXIT_CREDENTIALS
    err = capsys.readouterr().err
    assert "exited with status 4" in err and "credential_process loop" in err
    assert LOOP_VARIABLE not in os.environ

    monkeypatch.setenv(LOOP_VARIABLE, json.dumps(["default"]))
    assert cli.main(["export"]) == cli.EXIT_REFUSED
    assert "loop" in capsys.readouterr().err


# --- serve ----------------------------------------------------------------------------------


@pytest.fixture
def serve(env_creds: None) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    """``creds-core serve`` in a subprocess (bounded) and the variables it printed."""
    proc = subprocess.Popen(
        _cmd("serve", "--max-seconds", "60"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        variables = serve_variables(proc)
        yield proc, variables
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def _get(url: str, token: str | None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", token)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@posix_signals  # stopped with SIGTERM, exit code 0
def test_botocore_container_provider_reads_serve(
    serve: tuple[subprocess.Popen[str], dict[str, str]],
) -> None:
    proc, variables = serve
    url = variables["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
    token = variables["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
    assert url.startswith("http://127.0.0.1:")
    assert len(token) >= 32

    creds = ContainerProvider(environ=dict(variables)).load()
    assert creds is not None
    frozen = creds.get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key, frozen.token) == (KEY, SECRET, TOKEN)
    assert creds._expiry_time > datetime.now(timezone.utc)  # type: ignore[attr-defined]

    for bad, status in ((None, 401), ("wrong-token", 403), (token[:-1], 403), ("", 403)):
        code, body = _get(url, bad)
        assert code == status
        assert "SENTINEL" not in body and KEY not in body
    assert _get(url.rsplit("/", 1)[0] + "/other", token)[0] == 404
    assert _get(url, token)[0] == 200

    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "stopped after 7 requests" in err
    _no_secret(out, err)
    assert token not in err


def test_serve_stops_after_max_requests_and_prints_powershell_lines(env_creds: None) -> None:
    with subprocess.Popen(
        _cmd(
            "serve",
            "--max-requests",
            "2",
            "--max-seconds",
            "60",
            "--host",
            "127.0.0.2",
            "--format",
            "powershell",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        env, removed = _powershell_variables([proc.stdout.readline().rstrip() for _ in range(4)])
        assert removed == [
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        ]
        assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"].startswith("http://127.0.0.2:")
        assert ContainerProvider(environ=env).load() is not None
        assert _get(env["AWS_CONTAINER_CREDENTIALS_FULL_URI"], None)[0] == 401
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "stopped after 2 requests (1 x 200, 1 x 401)" in err


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "192.168.0.1", "localhost", "x"])
def test_serve_refuses_non_loopback(
    env_creds: None, host: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["serve", "--host", host, "--max-seconds", "1"]) == cli.EXIT_REFUSED
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "only a loopback address is allowed" in captured.err
    assert captured.err.count("\n") == 1


def test_loopback_hosts_are_accepted() -> None:
    assert str(check_host("127.0.0.1")) == "127.0.0.1"
    assert str(check_host("127.10.0.1")) == "127.10.0.1"
    assert str(check_host("::1")) == "::1"


def test_serve_on_a_busy_port_exits_5(env_creds: None, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = cli.main(["serve", "--port", str(port), "--max-seconds", "1"])
    assert code == cli.EXIT_UNAVAILABLE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"cannot listen on 127.0.0.1 port {port}" in captured.err
    _no_secret(captured.err)


def test_serve_without_credentials_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--max-seconds", "1"]) == cli.EXIT_NOT_FOUND
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no credentials found" in captured.err


# --- doctor ---------------------------------------------------------------------------------


def _doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(["doctor", *args])
    captured = capsys.readouterr()
    _no_secret(captured.out, captured.err)
    assert SECRET not in captured.out and TOKEN not in captured.out
    return code, captured.out


def test_doctor_env_credentials_with_sts(
    env_creds: None,
    monkeypatch: pytest.MonkeyPatch,
    sts_server: StsServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts_server.url)
    code, out = _doctor(capsys)
    assert code == 0
    assert re.search(r"1\. profile +[\d.]+ ms +checked", out)
    assert re.search(r"2\. env +[\d.]+ ms +served", out)
    assert re.search(r"3\. assume-role +- +not tried", out)
    assert "AKIA…0001" in out and KEY not in out
    assert "expiry             none: never refreshed" in out
    assert f"endpoint           {sts_server.url}" in out
    assert "identity           arn:aws:iam::123456789012:user/" in out
    assert re.search(r"clock skew +[+-]\d+\.\d s .*: ok", out)
    assert "No warnings." in out
    assert sts_server.counts["GetCallerIdentity"] == 1


def test_doctor_warns_when_environment_credentials_shadow_aws_profile(
    env_creds: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(os.environ["AWS_CONFIG_FILE"], "[profile work]\nregion = eu-west-1\n")
    monkeypatch.setenv("AWS_PROFILE", "work")
    code, out = _doctor(capsys, "--no-sts")
    assert code == 0
    assert re.search(r"2\. env +[\d.]+ ms +served", out)
    assert 'AWS_PROFILE="work" is ignored' in out


def test_doctor_warns_about_clock_skew(
    env_creds: None,
    monkeypatch: pytest.MonkeyPatch,
    sts_server: StsServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts_server.url)
    monkeypatch.setattr(doctor_module, "wall_clock", lambda: time.time() - 600)
    code, out = _doctor(capsys)
    assert code == 0
    assert "TOO FAR" in out
    assert "the local clock is 10 min behind STS's" in out


def test_doctor_warns_about_credential_process_without_expiry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command = _process_script(
        tmp_path, {"Version": 1, "AccessKeyId": "AKIAPROCESSNOEXPIRY1", "SecretAccessKey": SECRET}
    )
    _write(os.environ["AWS_CONFIG_FILE"], f"[default]\ncredential_process = {command}\n")
    code, out = _doctor(capsys, "--no-sts")
    assert code == 0
    assert re.search(r"8\. custom-process +[\d.]+ ms +served", out)
    assert "AKIA…IRY1" in out
    assert 'credential_process of profile "default" printed no Expiration' in out
    assert "STS:\n  check              skipped" in out


def test_doctor_shows_windows_of_expiring_credentials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expiry = datetime.now(timezone.utc) + timedelta(hours=1)
    command = _process_script(
        tmp_path,
        {
            "Version": 1,
            "AccessKeyId": "ASIAPROCESSEXPIRING1",
            "SecretAccessKey": SECRET,
            "SessionToken": TOKEN,
            "Expiration": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    )
    _write(os.environ["AWS_CONFIG_FILE"], f"[default]\ncredential_process = {command}\n")
    code, out = _doctor(capsys, "--no-sts")
    assert code == 0
    assert "advisory window    15 min: a background refresh starts at 20" in out
    assert "mandatory window   60 s: callers wait for a refresh from 20" in out
    assert "No warnings." in out


@pytest.mark.parametrize("mode", ["hang", "slow"])
def test_doctor_warns_about_imds_timing_out(
    mode: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with ImdsServer(mode=mode, latency=3.0, hang_seconds=3.0) as imds:  # type: ignore[arg-type]
        monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
        monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url)
        monkeypatch.setenv("AWS_METADATA_SERVICE_TIMEOUT", "1")  # botocore: whole seconds
        monkeypatch.setenv("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "1")
        code, out = _doctor(capsys, "--no-sts")
        assert imds.requests >= 1
    assert code == cli.EXIT_NOT_FOUND
    assert re.search(r"13\. iam-role +[\d.]+ ms +not loaded: no instance metadata service", out)
    assert "IMDS (iam-role) did not answer in time" in out
    assert "AWS_EC2_METADATA_DISABLED=true" in out


def test_doctor_missing_profile(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _doctor(capsys, "--profile", "nowhere")
    assert code == cli.EXIT_NOT_FOUND
    assert 'the profile "nowhere" (--profile) is not in the config' in out
    assert "check              skipped" in out


# --- demo -----------------------------------------------------------------------------------


def _row(out: str, label: str) -> list[int]:
    line = next(ln for ln in out.splitlines() if ln.startswith(label))
    return [int(x.replace(",", "")) for x in line[len(label) :].split()]


def test_demo_small(capsys: pytest.CaptureFixture[str]) -> None:
    before = dict(os.environ)
    roles, accounts, pages = 30, 3, 6
    argv = ["demo", "--roles", str(roles), "--accounts", str(accounts), "--pages", str(pages)]
    assert cli.main(argv) == 0
    assert dict(os.environ) == before
    captured = capsys.readouterr()
    out, err = captured.out, captured.err
    assert "creds_core" in out and "plain boto3" in out
    assert _row(out, "roles ") == [roles, roles]
    (cc_calls, boto_calls) = _row(out, "STS calls")
    (cc_throttled, boto_throttled) = _row(out, "throttled responses")
    (cc_failed, boto_failed) = _row(out, "failures")
    assert cc_failed == 0
    assert cc_calls == 2 * roles + cc_throttled  # one AssumeRole and one signed call per role
    assert boto_calls >= 2 * (roles - boto_failed) + boto_throttled
    # Not a terminal: one line per phase on stderr, no progress bar.
    assert re.search(rf"^creds_core: {roles} roles in [\d.]+ s", err, re.M)
    assert re.search(rf"^plain boto3: {roles} roles in [\d.]+ s", err, re.M)
    assert "\r" not in err
    # The discovery phase: its own table, after the roles' one.
    discovery = out[out.index("\ndiscovery ") :]
    assert _row(discovery, "accounts") == [accounts, accounts]
    (cc_made, boto_made) = _row(discovery, "API calls made")
    (cc_requests, boto_requests) = _row(discovery, "EC2 requests")
    (cc_throttled, boto_throttled) = _row(discovery, "throttled responses")
    (cc_failed, boto_failed) = _row(discovery, "calls failed")
    # Per account: a DescribeInstances and a DescribeSecurityGroups call per page of 5
    # instances and a DescribeVolumes call per instance, every one of them made.
    assert cc_failed == 0
    assert cc_made == accounts * pages * 7
    assert cc_requests == cc_made + cc_throttled
    assert boto_requests >= boto_made + boto_throttled
    assert "quota floor: 2.5 s" in discovery  # (30 calls - 20 tokens) / 4 a second
    assert re.search(r"^creds_core discovery: \d+ calls in [\d.]+ s", err, re.M)
