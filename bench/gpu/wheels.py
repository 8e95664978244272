"""`make gpu-wheels`: the wheels the GPU machine lacks, for its Python (CPython 3.12, manylinux x86_64),
into `.whl/` (git-ignored), then their size with the repository's against the 64 MiB that travels.

    python bench/gpu/wheels.py [--dest .whl]

Each `NAME==VERSION` line of bench/gpu/wheels.txt is fetched with `pip download --no-deps
--only-binary=:all:` for that interpreter and platform; a `build: NAME==VERSION` line is built here
with `pip wheel --no-deps` (pure-Python packages that PyPI ships only as source). Wheels in the folder
that the list does not name (another version, a package dropped from the list) are removed: the
install on the GPU machine takes every wheel in the folder, and two versions of one package stop it.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LIST = Path(__file__).with_name("wheels.txt")
TRAVEL_LIMIT = 64 * 2**20
"""What the device tool carries: the working tree (tracked and untracked files git does not ignore)
plus the carried paths, 64 MiB in all."""
TARGET = [
    "--python-version",
    "3.12",
    "--implementation",
    "cp",
    "--platform",
    "manylinux_2_28_x86_64",
    "--platform",
    "manylinux_2_24_x86_64",
    "--platform",
    "manylinux_2_17_x86_64",
    "--platform",
    "manylinux2014_x86_64",
]


def read_list(path: Path = LIST) -> tuple[list[str], list[str]]:
    """(pins to download, pins to build) from wheels.txt."""
    download, build = [], []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("build:"):
            build.append(line.removeprefix("build:").strip())
        else:
            download.append(line)
    return download, build


def wheel_key(name: str) -> str:
    """A distribution's name as wheel files spell it (PEP 427: runs of -_. become _), lower case."""
    return re.sub(r"[-_.]+", "_", name).lower()


def expected_prefixes(pins: list[str]) -> set[str]:
    return {f"{wheel_key(pin.split('==')[0])}-{pin.split('==')[1]}-" for pin in pins}


def remove_unlisted(dest: Path, pins: list[str]) -> list[str]:
    prefixes = expected_prefixes(pins)
    removed = []
    for wheel in sorted(dest.glob("*.whl")):
        if not any(wheel.name.lower().startswith(prefix) for prefix in prefixes):
            wheel.unlink()
            removed.append(wheel.name)
    return removed


def pip(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True, env=env)


def fetch(dest: Path, download: list[str], build: list[str]) -> None:
    for pin in download:
        pip("download", "--quiet", "--no-deps", "--only-binary=:all:", *TARGET, "-d", str(dest), pin)
    for pin in build:
        prefix = f"{wheel_key(pin.split('==')[0])}-{pin.split('==')[1]}-"
        if any(w.name.lower().startswith(prefix) for w in dest.glob("*.whl")):
            continue
        # DS_BUILD_OPS=0: deepspeed's ops are compiled just in time where they run, not here.
        pip("wheel", "--quiet", "--no-deps", "-w", str(dest), pin, env={**os.environ, "DS_BUILD_OPS": "0"})


def travelling_bytes(repo: Path = REPO) -> int:
    """Bytes of the files the device tool sends: tracked plus untracked files git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    return sum(
        (repo / os.fsdecode(name)).stat().st_size
        for name in listed
        if name and (repo / os.fsdecode(name)).is_file()
    )


def report(dest: Path) -> int:
    wheels = sorted(dest.glob("*.whl"), key=lambda w: -w.stat().st_size)
    for wheel in wheels:
        print(f"  {wheel.stat().st_size / 2**20:7.2f} MiB  {wheel.name}")
    total = sum(w.stat().st_size for w in wheels)
    repo = travelling_bytes()
    print(
        f"wheels {total / 2**20:.2f} MiB + repository {repo / 2**20:.2f} MiB = {(total + repo) / 2**20:.2f} MiB"
    )
    print(f"limit {TRAVEL_LIMIT / 2**20:.0f} MiB: {'fits' if total + repo <= TRAVEL_LIMIT else 'TOO LARGE'}")
    return 0 if total + repo <= TRAVEL_LIMIT else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dest", type=Path, default=REPO / ".whl")
    args = parser.parse_args()
    download, build = read_list()
    args.dest.mkdir(exist_ok=True)
    for name in remove_unlisted(args.dest, download + build):
        print(f"removed {name} (not in {LIST.name})")
    fetch(args.dest, download, build)
    return report(args.dest)


if __name__ == "__main__":
    sys.exit(main())
