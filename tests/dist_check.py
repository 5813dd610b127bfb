"""`make wheel-check`, first half: what `make dist` built is what an index accepts and what
users can install. For each wheel: `auditwheel show` finds it manylinux_2_17 (glibc 2.17), the
extension is stripped, LICENSE is in its .dist-info; abi3 wheels pass `abi3audit --strict`;
`twine check --strict` and `check-wheel-contents` pass; the sdist holds LICENSE and the
sources that `pip install` compiles. The tools come from requirements-dist.txt (on PATH).

Usage: python tests/dist_check.py DIST_DIR ARCH...   (ARCH: x86_64, aarch64, ...: one
manylinux abi3 wheel is expected for each)
"""

from __future__ import annotations

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


def check_wheel(path: str) -> None:
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
    print(
        f"dist-check: {name}: {tag}, highest symbol GLIBC_{glibc[0]}.{glibc[1]}, "
        f"{os.path.getsize(path) / 1e6:.2f} MB (extension {so_size / 1e6:.2f} MB, stripped)"
    )


def check_sdist(path: str) -> None:
    with tarfile.open(path) as sdist:
        names = {n.split("/", 1)[-1] for n in sdist.getnames()}
    needed = {"LICENSE", "README.md", "pyproject.toml", "Cargo.toml", "Cargo.lock", "PKG-INFO"}
    missing = sorted(needed - names)
    if missing:
        raise SystemExit(f"dist-check: the sdist lacks {missing}")
    print(f"dist-check: {os.path.basename(path)}: {os.path.getsize(path) / 1e6:.2f} MB, LICENSE")


def main(dist: str, arches: list[str]) -> None:
    wheels = sorted(glob.glob(os.path.join(dist, "*.whl")))
    sdists = glob.glob(os.path.join(dist, "*.tar.gz"))
    if len(sdists) != 1:
        raise SystemExit(f"dist-check: expected one sdist in {dist}, found {sdists}")
    abi3 = [w for w in wheels if "-abi3-" in os.path.basename(w)]
    for arch in arches:
        if len([w for w in abi3 if w.endswith(f"_{arch}.whl")]) != 1:
            raise SystemExit(f"dist-check: expected one abi3 {arch} wheel in {dist}: {wheels}")
    for wheel in wheels:
        check_wheel(wheel)
    check_sdist(sdists[0])
    _run("abi3audit", "--strict", *abi3)
    _run("twine", "check", "--strict", *wheels, *sdists)
    _run("check-wheel-contents", *wheels)
    print("dist-check: abi3audit --strict, twine check --strict, check-wheel-contents: clean")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
