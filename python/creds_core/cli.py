"""The ``creds-core`` command line (also ``python -m creds_core``).

Subcommands (``creds-core SUBCOMMAND --help`` for each)::

    creds-core export [--profile P] [--format process|env|powershell|cmd|json]
        Print credentials from creds_core's default chain: a credential_process document
        (``credential_process = creds-core export --profile P`` in a profile), shell
        lines (POSIX ``export``, PowerShell ``$Env:``, cmd ``set``), or a JSON object.  The
        only subcommand that prints secrets, on stdout only.
    creds-core serve [--profile P] [--port 0] [--host 127.0.0.1]
        Serve one cache to every process on this host over the container credentials
        protocol (AWS_CONTAINER_CREDENTIALS_FULL_URI + AWS_CONTAINER_AUTHORIZATION_TOKEN),
        on a loopback address only, with a random token.
    creds-core doctor [--profile P] [--no-sts]
        Which providers were tried, how long each took, which one served, expiry and refresh
        windows, identity and clock skew, and warnings to act on.  Never prints a secret.
    creds-core demo [--roles N] [--rate R] [--latency S] [--accounts N] [--pages N]
        Assume N roles through creds_core and through plain boto3 against an embedded local
        STS, then discover the instances of many accounts against an embedded EC2 that
        throttles, and compare.  Needs no AWS account.

Errors are one line on stderr saying what to do: never a traceback (``--debug`` shows one for
unexpected errors), never a secret.

Exit codes:

    0    success (doctor: credentials were found; its warnings do not change the code)
    1    credentials error: a source failed or refused (access denied, timeout, throttling,
         invalid configuration, a credential_process that failed...), or creds_core failures
         in the demo
    2    usage error: invalid command line
    3    no credentials found: no source of the chain had any, or the profile does not exist
    4    refused for safety: ``serve`` on an address that is not loopback; ``export`` started
         by its own profile's credential_process (a loop)
    5    system error: e.g. the port cannot be bound
    130  interrupted (Ctrl-C) before finishing; ``serve`` stops on SIGINT/SIGTERM (and
         Ctrl-Break on Windows) with 0
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from creds_core._cli.common import (
    EXIT_CREDENTIALS,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CliError,
    cli_logging,
    describe_error,
)
from creds_core._cli.shells import DEFAULT_SHELL, SHELLS

__all__ = [
    "EXIT_CREDENTIALS",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "build_parser",
    "main",
]

PROG = "creds-core"

T = TypeVar("T")


def _checked(
    convert: Callable[[str], T], accept: Callable[[T], bool], kind: str, must: str
) -> Callable[[str], T]:
    """An argparse ``type``: ``convert`` the text, which must then satisfy ``accept``."""

    def parse(text: str) -> T:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"{text!r} {must}")
        return value

    return parse


_positive_float = _checked(
    float, lambda v: 0 < v < float("inf"), "a number", "must be a positive number"
)
_non_negative_float = _checked(
    float, lambda v: 0 <= v < float("inf"), "a number", "must be zero or a positive number"
)
_positive_int = _checked(int, lambda v: v > 0, "a whole number", "must be a positive whole number")
_port = _checked(int, lambda v: 0 <= v <= 65535, "a port number", "is not a port number (0-65535)")


def _common(
    parser: argparse.ArgumentParser,
    *,
    profile: bool,
    timeout: float | None,
    timeout_help: str = "seconds to wait for the credential sources",
) -> None:
    if profile:
        parser.add_argument(
            "--profile",
            metavar="P",
            help="the AWS profile (default: AWS_PROFILE, else 'default'); environment "
            "credentials are ignored when a profile is given, as in botocore",
        )
    if timeout is not None:
        parser.add_argument(
            "--timeout",
            type=_positive_float,
            default=timeout,
            metavar="S",
            help=f"{timeout_help} (default: {timeout:g})",
        )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="show creds_core's log on stderr (-v: info, -vv: debug); never secrets",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show a traceback for unexpected errors",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``creds-core``."""
    from creds_core import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="AWS credentials that never deadlock, never stampede STS and keep "
        "serving when a source is down: export them, serve them to every process on this "
        "host, diagnose their resolution, or see the demo.",
        epilog="Exit codes: 0 ok, 1 credentials error, 2 usage, 3 no credentials found, "
        "4 refused for safety, 5 system error, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    export = commands.add_parser(
        "export",
        help="print credentials (credential_process JSON, shell exports or JSON)",
        description="Resolve credentials through creds_core's default chain (botocore's "
        "order) and print them on stdout. In a profile of ~/.aws/config: "
        "'credential_process = creds-core export --profile SOURCE'. In a shell: "
        'eval "$(creds-core export --format env)". The only command that prints secrets.',
    )
    _common(export, profile=True, timeout=30.0)
    export.add_argument(
        "--format",
        choices=("process", *SHELLS, "json"),
        default="process",
        help="process: credential_process version 1 JSON (default); env: POSIX shell export "
        "lines; powershell: $Env: lines (pipe to Invoke-Expression); cmd: set lines; json: a "
        "plain object",
    )

    serve = commands.add_parser(
        "serve",
        help="serve one cache to every process on this host (container credentials protocol)",
        description="Serve credentials on a loopback address over the container credentials "
        "protocol. Prints the variables a process exports to use it "
        "(AWS_CONTAINER_CREDENTIALS_FULL_URI, AWS_CONTAINER_AUTHORIZATION_TOKEN) on stdout, "
        "e.g. 'creds-core serve > ~/.aws-serve.env &' then '. ~/.aws-serve.env' (PowerShell: "
        "run it in its own window, then paste the $Env: lines). Every request needs the random "
        "token printed at start. Stops on SIGINT/SIGTERM (Windows: Ctrl-C or Ctrl-Break).",
    )
    # botocore gives up on the endpoint after 2 s: answer (fallback included) before that.
    _common(
        serve,
        profile=True,
        timeout=1.5,
        timeout_help="seconds a request waits for a refresh before the last good credentials "
        "are served (the first fetch may take up to 60 s)",
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="loopback address to listen on: 127.0.0.0/8 or ::1 (default: 127.0.0.1); "
        "anything else is refused",
    )
    serve.add_argument(
        "--port", type=_port, default=0, help="TCP port (default: 0, a free port is picked)"
    )
    serve.add_argument(
        "--format",
        choices=SHELLS,
        default=DEFAULT_SHELL,
        help="the shell whose lines set the variables: env (POSIX export lines), powershell, "
        f"cmd (default here: {DEFAULT_SHELL})",
    )
    serve.add_argument(
        "--max-requests",
        type=_positive_int,
        metavar="N",
        help="stop after N requests (default: no limit)",
    )
    serve.add_argument(
        "--max-seconds",
        type=_positive_float,
        metavar="S",
        help="stop after S seconds (default: no limit)",
    )

    doctor = commands.add_parser(
        "doctor",
        help="explain how credentials resolve here and what to fix",
        description="Resolve credentials once and report: the providers tried in order and "
        "how long each took, the one that served, expiry and refresh windows, the identity "
        "and clock skew seen by STS, and warnings to act on. Never prints a secret.",
    )
    _common(doctor, profile=True, timeout=60.0)
    doctor.add_argument(
        "--no-sts",
        action="store_true",
        help="do not call STS (no identity, no clock skew check)",
    )
    doctor.add_argument(
        "--sts-timeout",
        type=_positive_float,
        default=5.0,
        metavar="S",
        help="connect and read timeout of the STS call (default: 5)",
    )

    from creds_core._cli.demo import (
        DEFAULT_ACCOUNTS,
        DEFAULT_LATENCY,
        DEFAULT_PAGES,
        DEFAULT_RATE,
        DEFAULT_ROLES,
    )

    demo = commands.add_parser(
        "demo",
        help="assume many roles, then discover many accounts, through creds_core and plain "
        "boto3 on a local STS and EC2",
        description="Start a local STS (token bucket, latency), assume N roles through "
        "creds_core and then through plain boto3 (a Session and client per role), each role "
        "making one signed call, and compare wall time, STS calls, throttling and failures; "
        "then discover the instances, volumes and security groups of many accounts on a "
        "local EC2 with scaled-down EC2 quotas, both ways. "
        "No AWS account or configuration is used.",
    )
    _common(demo, profile=False, timeout=None)
    demo.add_argument(
        "--roles",
        type=_positive_int,
        default=DEFAULT_ROLES,
        metavar="N",
        help=f"roles to assume (default: {DEFAULT_ROLES})",
    )
    demo.add_argument(
        "--rate",
        type=_positive_float,
        default=DEFAULT_RATE,
        metavar="R",
        help=f"STS token bucket, requests per second (default: {DEFAULT_RATE:g})",
    )
    demo.add_argument(
        "--latency",
        type=_non_negative_float,
        default=DEFAULT_LATENCY,
        metavar="S",
        help=f"seconds added to every STS answer (default: {DEFAULT_LATENCY:g})",
    )
    demo.add_argument(
        "--accounts",
        type=_positive_int,
        default=DEFAULT_ACCOUNTS,
        metavar="N",
        help=f"accounts of the discovery phase (default: {DEFAULT_ACCOUNTS})",
    )
    demo.add_argument(
        "--pages",
        type=_positive_int,
        default=DEFAULT_PAGES,
        metavar="N",
        help="DescribeInstances pages of 5 instances per account in the discovery phase "
        f"(default: {DEFAULT_PAGES})",
    )
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command == "export":
        from creds_core._cli import export

        return export.run(args.profile, args.format, args.timeout)
    if command == "serve":
        from creds_core._cli import serve

        return serve.run(
            profile=args.profile,
            host=args.host,
            port=args.port,
            timeout=args.timeout,
            max_requests=args.max_requests,
            max_seconds=args.max_seconds,
            shell=args.format,
        )
    if command == "doctor":
        from creds_core._cli import doctor

        return doctor.run(
            args.profile,
            timeout=args.timeout,
            sts=not args.no_sts,
            sts_timeout=args.sts_timeout,
            out=sys.stdout,
        )
    if command == "demo":
        from creds_core._cli import demo

        return demo.run(
            args.roles, args.rate, args.latency, accounts=args.accounts, pages=args.pages
        )
    raise CliError(f"unknown command {command!r}; see {PROG} --help", EXIT_USAGE)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``creds-core`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) or a usage error (2, already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    # serve logs refresh failures while it runs; the others report errors themselves.
    default_level = logging.WARNING if args.command == "serve" else logging.ERROR
    with cli_logging(args.verbose, default_level):
        try:
            return _dispatch(args)
        except (Exception, KeyboardInterrupt) as exc:
            if args.debug and not isinstance(exc, (CliError, KeyboardInterrupt)):
                raise
            code, message = describe_error(exc, getattr(args, "profile", None))
            print(f"{PROG} {args.command}: {message}", file=sys.stderr, flush=True)
            return code


if __name__ == "__main__":
    sys.exit(main())
