"""`make wheel-check`, second half: install this machine's abi3 wheel from DIST_DIR into a
fresh virtual environment of the lowest and of the newest CPython (3.9+) found on this machine,
build the sdist from source (pip, compiling with cargo) in another, and run a short smoke test
in each. Only one CPython found: a notice, and the check runs on that one.

A free-threaded wheel (``cp314-cp314t-...``: abi3 does not apply to free-threaded builds, so it
is a wheel of its own) is accepted beside the abi3 one and installed into a free-threaded
CPython of its version, which must then still run with the GIL disabled; with no such
interpreter here it is named and left untested.

Usage: python tests/wheel_check.py DIST_DIR WORK_DIR
(CARGO_TARGET_DIR, when set, is where the sdist's build compiles: point it at target/ to reuse
what `make develop` compiled.)
"""

from __future__ import annotations

import glob
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

#: What the wheel promises (pyproject.toml's requires-python).
LOWEST = (3, 9)

SMOKE = """
import sys
import creds_core, creds_core._core as core
assert 'botocore' not in sys.modules, 'import creds_core imported botocore'
cache = creds_core.CredentialCache(lambda: creds_core.Credentials('AK', 's', 't'))
assert cache.get().access_key_id == 'AK'
assert cache.inspect()['state'] == 'fresh'
assert cache.get().to_botocore().access_key == 'AK'
import creds_core.boto3
fixed = creds_core.Credentials('AKSESSION', 's')
session = creds_core.boto3.session(fixed, region_name='us-east-1')
assert session.get_credentials().get_frozen_credentials().access_key == 'AKSESSION'
print('wheel ok on Python %d.%d:' % sys.version_info[:2], core.__file__)
"""


#: Added to the smoke test of a free-threaded wheel: importing the module keeps the GIL off
#: (a module not declared free-threaded would turn it back on, with a warning).
SMOKE_FREE_THREADED = """
import sys
assert not sys._is_gil_enabled(), 'importing creds_core enabled the GIL'
"""


class Interpreter(NamedTuple):
    version: tuple[int, int]
    free_threaded: bool
    path: str


def _candidates() -> list[str]:
    found = [sys.executable]
    for minor in range(LOWEST[1], 20):
        for suffix in ("", "t"):
            path = shutil.which(f"python3.{minor}{suffix}")
            if path:
                found.append(path)
    roots = [os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv")]
    for root in filter(None, roots):
        found += sorted(glob.glob(os.path.join(root, "versions", "*", "bin", "python3")))
        found += sorted(glob.glob(os.path.join(root, "versions", "*", "bin", "python3.*t")))
    return found


_DESCRIBE = (
    "import sys, sysconfig; print(sys.implementation.name, *sys.version_info[:2], "
    "int(bool(sysconfig.get_config_var('Py_GIL_DISABLED'))))"
)


def _describe(python: str) -> Interpreter | None:
    try:
        out = subprocess.run(
            [python, "-c", _DESCRIBE], capture_output=True, text=True, timeout=60, check=True
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    if len(out) != 4 or out[0] != "cpython":
        return None
    version = (int(out[1]), int(out[2]))
    return Interpreter(version, out[3] == "1", python) if version >= LOWEST else None


def found_interpreters() -> list[Interpreter]:
    """Every CPython 3.9+ found, one per (version, free-threaded)."""
    by_kind: dict[tuple[tuple[int, int], bool], Interpreter] = {}
    for python in _candidates():
        found = _describe(python)
        if found is not None:
            by_kind.setdefault((found.version, found.free_threaded), found)
    return [by_kind[kind] for kind in sorted(by_kind)]


def lowest_and_newest(found: list[Interpreter]) -> list[Interpreter]:
    """The lowest and the newest CPython with the GIL (one entry when they are the same): the
    ones an abi3 wheel installs on."""
    ordered = sorted((i for i in found if not i.free_threaded), key=lambda i: i.version)
    if not ordered:
        raise SystemExit("wheel-check: no CPython 3.9+ found")
    return ordered[:1] if len(ordered) == 1 else [ordered[0], ordered[-1]]


def _platform_matches(platform_tags: str, machine: str) -> bool:
    return any(tag.endswith(f"_{machine}") for tag in platform_tags.split("."))


def select_wheels(names: list[str], machine: str) -> tuple[str, dict[tuple[int, int], str]]:
    """This machine's abi3 wheel and its free-threaded wheels by CPython version (e.g.
    ``cp314-cp314t-manylinux_2_17_x86_64``), from wheel file names; other files, and wheels
    of other machines, are ignored."""
    abi3: list[str] = []
    free_threaded: dict[tuple[int, int], str] = {}
    for name in names:
        base = os.path.basename(name)
        if not base.endswith(".whl"):
            continue
        _, _, python_tag, abi_tag, platform_tags = base[: -len(".whl")].rsplit("-", 4)
        if not _platform_matches(platform_tags, machine):
            continue
        if abi_tag == "abi3":
            abi3.append(name)
        elif abi_tag.startswith("cp3") and abi_tag.endswith("t") and abi_tag[3:-1].isdigit():
            version = (3, int(abi_tag[3:-1]))
            if version in free_threaded or python_tag != abi_tag[:-1]:
                raise SystemExit(f"wheel-check: unexpected free-threaded wheel {base}")
            free_threaded[version] = name
        else:
            raise SystemExit(f"wheel-check: neither abi3 nor free-threaded: {base}")
    if len(abi3) != 1:
        raise SystemExit(f"wheel-check: expected one abi3 wheel for {machine}, found {abi3}")
    return abi3[0], free_threaded


def install_and_smoke(
    python: str, venv: Path, requirement: str, smoke: str = SMOKE, pip_options: tuple[str, ...] = ()
) -> float:
    """Install ``requirement`` into a fresh venv of ``python`` and run ``smoke`` there, outside
    the source tree (so that the installed package is what gets imported); the seconds that
    pip took."""
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    started = time.monotonic()
    subprocess.run([*pip, "--disable-pip-version-check", *pip_options, requirement], check=True)
    took = time.monotonic() - started
    subprocess.run([str(venv / "bin" / "python"), "-c", smoke], check=True, cwd="/", timeout=300)
    return took


def main(dist: str, work: str) -> None:
    names = sorted(glob.glob(os.path.join(dist, "*")))
    wheel, free_threaded_wheels = select_wheels(names, platform.machine())
    found = found_interpreters()
    chosen = lowest_and_newest(found)
    if len(chosen) == 1:
        major, minor = chosen[0].version
        print(
            f"wheel-check: only one CPython found ({major}.{minor}); "
            "the lowest/newest check runs on it alone"
        )
    root = Path(work).resolve()
    for interpreter in chosen:
        major, minor = interpreter.version
        venv = root / f"wheel-venv-{major}.{minor}"
        install_and_smoke(interpreter.path, venv, os.path.abspath(wheel))
    for version, ft_wheel in sorted(free_threaded_wheels.items()):
        pythons = [i for i in found if i.free_threaded and i.version == version]
        if not pythons:
            print(
                f"wheel-check: no free-threaded CPython {version[0]}.{version[1]} here: "
                f"{os.path.basename(ft_wheel)} is not tested"
            )
            continue
        venv = root / f"wheel-venv-{version[0]}.{version[1]}t"
        install_and_smoke(
            pythons[0].path, venv, os.path.abspath(ft_wheel), SMOKE + SMOKE_FREE_THREADED
        )
    sdists = glob.glob(os.path.join(dist, "*.tar.gz"))
    if len(sdists) != 1:
        raise SystemExit(f"wheel-check: expected one sdist in {dist}, found {sdists}")
    # No cache: pip would otherwise reuse the wheel it built from an earlier sdist of the same
    # file name, whatever the new one holds.
    sdist = os.path.abspath(sdists[0])
    took = install_and_smoke(
        sys.executable, root / "wheel-venv-sdist", sdist, SMOKE, ("--no-cache-dir",)
    )
    print(f"wheel-check: the sdist built and installed from source in {took:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
