"""The release checks' own logic (tests/wheel_check.py, tests/dist_check.py) on file names and
bytes made here: no wheel is built. A free-threaded (cp314t) wheel cannot be built on this
machine, so its path through `make wheel-check` is proven with a fake one."""

from __future__ import annotations

import struct
from pathlib import Path

import dist_check
import pytest
import wheel_check
from wheel_check import Interpreter

ABI3_X86 = "creds_core-0.1.0-cp39-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"
ABI3_ARM = "creds_core-0.1.0-cp39-abi3-manylinux2014_aarch64.manylinux_2_17_aarch64.whl"
FT_X86 = "creds_core-0.1.0-cp314-cp314t-manylinux_2_17_x86_64.whl"
SDIST = "creds_core-0.1.0.tar.gz"


def test_select_wheels_takes_this_machines_abi3_wheel_and_its_free_threaded_wheel() -> None:
    names = [ABI3_ARM, ABI3_X86, FT_X86, SDIST]
    assert wheel_check.select_wheels(names, "x86_64") == (ABI3_X86, {(3, 14): FT_X86})
    assert wheel_check.select_wheels(names, "aarch64") == (ABI3_ARM, {})


@pytest.mark.parametrize(
    ("names", "machine"),
    [
        ([ABI3_ARM], "x86_64"),  # no wheel for this machine
        ([ABI3_X86, ABI3_X86.replace("manylinux2014", "linux")], "x86_64"),  # two
        ([ABI3_X86, "creds_core-0.1.0-cp313-cp313-manylinux_2_17_x86_64.whl"], "x86_64"),
    ],
)
def test_select_wheels_refuses_a_missing_extra_or_version_specific_gil_wheel(
    names: list[str], machine: str
) -> None:
    with pytest.raises(SystemExit):
        wheel_check.select_wheels(names, machine)


def test_the_abi3_wheel_goes_to_the_lowest_and_newest_cpython_with_a_gil() -> None:
    found = [
        Interpreter((3, 9), False, "/py39"),
        Interpreter((3, 11), False, "/py311"),
        Interpreter((3, 13), False, "/py313"),
        Interpreter((3, 14), True, "/py314t"),
    ]
    assert [i.path for i in wheel_check.lowest_and_newest(found)] == ["/py39", "/py313"]


def _fake_dist(tmp_path: Path, *names: str) -> Path:
    dist = tmp_path / "dist"
    dist.mkdir()
    for name in names:
        (dist / name).write_bytes(b"")
    return dist


@pytest.mark.parametrize("free_threaded_python", [True, False])
def test_a_free_threaded_wheel_is_smoke_tested_with_the_gil_off_where_its_python_is_found(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    free_threaded_python: bool,
) -> None:
    found = [Interpreter((3, 9), False, "/py39"), Interpreter((3, 13), False, "/py313")]
    if free_threaded_python:
        found.append(Interpreter((3, 14), True, "/py314t"))
    installs: list[tuple[str, str, str]] = []

    def install_and_smoke(
        python: str, venv: Path, requirement: str, smoke: str = wheel_check.SMOKE, *_: object
    ) -> float:
        installs.append((python, Path(requirement).name, smoke))
        return 0.0

    monkeypatch.setattr(wheel_check, "found_interpreters", lambda: found)
    monkeypatch.setattr(wheel_check, "install_and_smoke", install_and_smoke)
    monkeypatch.setattr(wheel_check.platform, "machine", lambda: "x86_64")
    dist = _fake_dist(tmp_path, ABI3_X86, ABI3_ARM, FT_X86, SDIST)
    wheel_check.main(str(dist), str(tmp_path))

    smoke = wheel_check.SMOKE
    expected = [("/py39", ABI3_X86, smoke), ("/py313", ABI3_X86, smoke)]
    if free_threaded_python:
        expected.append(("/py314t", FT_X86, smoke + wheel_check.SMOKE_FREE_THREADED))
    else:
        assert f"{FT_X86} is not tested" in capsys.readouterr().out
    assert installs[:-1] == expected
    assert installs[-1][1] == SDIST


def _elf(*section_names: str) -> bytes:
    """A minimal 64-bit little-endian ELF file with the given sections (and .shstrtab)."""
    names = [b"", *(n.encode() for n in section_names), b".shstrtab"]
    strtab = b"\0".join(names) + b"\0"
    offsets = [sum(len(n) + 1 for n in names[:i]) for i in range(len(names))]
    shoff = 64 + len(strtab)
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x28, shoff)
    struct.pack_into("<HHH", header, 0x3A, 64, len(names), len(names) - 1)
    sections = bytearray(64 * len(names))
    for index, offset in enumerate(offsets):
        struct.pack_into("<I", sections, index * 64, offset)
    struct.pack_into("<Q", sections, (len(names) - 1) * 64 + 0x18, 64)  # .shstrtab's offset
    return bytes(header) + strtab + bytes(sections)


def test_the_stripped_check_finds_a_symbol_table_only_where_there_is_one() -> None:
    assert dist_check.elf_has_symbol_table(_elf(".text", ".symtab", ".strtab"))
    assert not dist_check.elf_has_symbol_table(_elf(".text", ".dynsym", ".dynstr"))


def test_highest_glibc_compares_versions_as_numbers() -> None:
    shown = "libc.so.6 with versions {'GLIBC_2.3', 'GLIBC_2.17', 'GLIBC_2.2.5', 'GLIBC_2.14'}"
    assert dist_check.highest_glibc(shown) == (2, 17)


_METADATA = """\
Metadata-Version: 2.4
Name: creds_core
Version: 0.1.0
Classifier: Programming Language :: Python :: 3.9
License-File: LICENSE
Summary: AWS credentials
Author: The creds_core developers
License: Apache-2.0
Requires-Python: >=3.9
Description-Content-Type: text/markdown
Project-URL: Homepage, https://github.com/creds-core/creds_core
Project-URL: Issues, https://github.com/creds-core/creds_core/issues
Project-URL: Source, https://github.com/creds-core/creds_core

# creds_core
"""


def test_metadata_check_takes_complete_metadata_and_names_what_is_missing_or_wrong() -> None:
    fields = dist_check.shown_metadata(_METADATA, "wheel")
    assert fields["Requires-Python"] == [">=3.9"] and len(fields["Project-URL"]) == 3
    with pytest.raises(SystemExit, match="lacks \\['License-File'\\]"):
        dist_check.shown_metadata(_METADATA.replace("License-File: LICENSE\n", ""), "wheel")
    with pytest.raises(SystemExit, match="no Issues URL"):
        dist_check.shown_metadata(_METADATA.replace("Project-URL: Issues", "Project-URL: Bugs"), "")
