"""`make wheel-check`, first half: what `make dist` built is what an index accepts and what
users can install. For each wheel: `auditwheel show` finds it manylinux_2_17 (glibc 2.17), the
extension is stripped, LICENSE is in its .dist-info; abi3 wheels pass `abi3audit --strict`;
`twine check --strict` and `check-wheel-contents` pass; the sdist holds LICENSE and the
sources that `pip install` compiles; both carry the metadata an index page shows, alike. The
tools come from requirements-dist.txt (on PATH).

Usage: python tests/dist_check.py DIST_DIR ARCH...   (ARCH: x86_64, aarch64, ...: one
manylinux abi3 wheel is expected for each)
"""

from __future__ import annotations

import email.parser
import glob
import os
import re
import struct
import subprocess
import sys
import tarfile
import zipfile

#: The manylinux floor of the wheels (manylinux2014).
GLIBC = (2, 17)
#: The lowest CPython the wheels promise and tests/wheel_check.py installs them on.
LOWEST_PYTHON = "3.9"
#: Metadata fields an index page shows (each once, or every value of a repeated one).
SHOWN = (
    "Name",
    "Version",
    "Summary",
    "Author",
    "License",
    "License-File",
    "Requires-Python",
    "Description-Content-Type",
    "Project-URL",
    "Classifier",
)


def _run(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"dist-check: {' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def elf_has_symbol_table(data: bytes) -> bool:
    """Whether a 64-bit little-endian ELF file still has its `.symtab` (is not stripped)."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    names_at = struct.unpack_from("<Q", data, shoff + shstrndx * shentsize + 0x18)[0]
    for index in range(shnum):
        name = struct.unpack_from("<I", data, shoff + index * shentsize)[0]
        end = data.index(b"\0", names_at + name)
        if data[names_at + name : end] == b".symtab":
            return True
    return False


def highest_glibc(auditwheel_show: str) -> tuple[int, int]:
    """The newest GLIBC_x.y symbol version `auditwheel show` reports."""
    found = [tuple(map(int, v)) for v in re.findall(r"GLIBC_(\d+)\.(\d+)", auditwheel_show)]
    return max((v[0], v[1]) for v in found) if found else (0, 0)


def shown_metadata(text: str, what: str) -> dict[str, list[str]]:
    """The :data:`SHOWN` fields of a METADATA / PKG-INFO text; SystemExit when one is missing
    or says something other than what pyproject.toml promises."""
    headers = email.parser.Parser().parsestr(text, headersonly=True)
    fields = {name: headers.get_all(name) or [] for name in SHOWN}
    missing = [name for name, values in fields.items() if not values]
    if missing:
        raise SystemExit(f"dist-check: {what} lacks {missing}")
    urls = {url.split(",", 1)[0] for url in fields["Project-URL"]}
    wrong = [f"no {n} URL" for n in ("Homepage", "Source", "Issues") if n not in urls]
    if fields["Requires-Python"] != [f">={LOWEST_PYTHON}"]:
        wrong.append(f"Requires-Python {fields['Requires-Python']}")
    if "LICENSE" not in fields["License-File"]:
        wrong.append("no License-File: LICENSE")
    if f"Programming Language :: Python :: {LOWEST_PYTHON}" not in fields["Classifier"]:
        wrong.append(f"no classifier for Python {LOWEST_PYTHON}")
    if wrong:
        raise SystemExit(f"dist-check: {what}: {', '.join(wrong)}")
    return fields


def check_wheel(path: str) -> dict[str, list[str]]:
    name = os.path.basename(path)
    platform = name.removesuffix(".whl").split("-")[-1].split(".")[-1]  # manylinux_2_17_x86_64
    arch = platform.split("_", 3)[-1]
    shown = " ".join(_run("auditwheel", "show", path).split())
    tag = f"manylinux_{GLIBC[0]}_{GLIBC[1]}_{arch}"
    if f'consistent with the following platform tag: "{tag}"' not in shown:
        raise SystemExit(f"dist-check: auditwheel does not find {name} {tag}:\n{shown}")
    glibc = highest_glibc(shown)
    if glibc > GLIBC:
        raise SystemExit(f"dist-check: {name} needs GLIBC {glibc}")
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        if not any(n.endswith(".dist-info/licenses/LICENSE") for n in names):
            raise SystemExit(f"dist-check: no LICENSE in the .dist-info of {name}")
        extensions = [n for n in names if n.endswith(".so")]
        for extension in extensions:
            if elf_has_symbol_table(wheel.read(extension)):
                raise SystemExit(f"dist-check: {extension} in {name} is not stripped")
        so_size = sum(wheel.getinfo(n).file_size for n in extensions)
        metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    print(
        f"dist-check: {name}: {tag}, highest symbol GLIBC_{glibc[0]}.{glibc[1]}, "
        f"{os.path.getsize(path) / 1e6:.2f} MB (extension {so_size / 1e6:.2f} MB, stripped)"
    )
    return shown_metadata(metadata.decode("utf-8"), name)


def check_sdist(path: str) -> dict[str, list[str]]:
    with tarfile.open(path) as sdist:
        names = {n.split("/", 1)[-1] for n in sdist.getnames()}
        member = next(
            m for m in sdist.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO")
        )
        pkg_info = sdist.extractfile(member)
        metadata = pkg_info.read().decode("utf-8") if pkg_info else ""
    needed = {"LICENSE", "README.md", "pyproject.toml", "Cargo.toml", "Cargo.lock", "PKG-INFO"}
    missing = sorted(needed - names)
    if missing:
        raise SystemExit(f"dist-check: the sdist lacks {missing}")
    print(f"dist-check: {os.path.basename(path)}: {os.path.getsize(path) / 1e6:.2f} MB, LICENSE")
    return shown_metadata(metadata, os.path.basename(path))


def main(dist: str, arches: list[str]) -> None:
    wheels = sorted(glob.glob(os.path.join(dist, "*.whl")))
    sdists = glob.glob(os.path.join(dist, "*.tar.gz"))
    if len(sdists) != 1:
        raise SystemExit(f"dist-check: expected one sdist in {dist}, found {sdists}")
    abi3 = [w for w in wheels if "-abi3-" in os.path.basename(w)]
    for arch in arches:
        if len([w for w in abi3 if w.endswith(f"_{arch}.whl")]) != 1:
            raise SystemExit(f"dist-check: expected one abi3 {arch} wheel in {dist}: {wheels}")
    shown = {os.path.basename(w): check_wheel(w) for w in wheels}
    sdist_shown = check_sdist(sdists[0])
    for name, fields in shown.items():
        if fields != sdist_shown:
            raise SystemExit(f"dist-check: {name} and the sdist show different metadata")
    print(f"dist-check: metadata ({', '.join(SHOWN)}): present and alike in every artifact")
    _run("abi3audit", "--strict", *abi3)
    _run("twine", "check", "--strict", *wheels, *sdists)
    _run("check-wheel-contents", *wheels)
    print("dist-check: abi3audit --strict, twine check --strict, check-wheel-contents: clean")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
