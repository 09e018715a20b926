"""Whether the pinned set (constraints.txt) installs from binary wheels on a given Python version.

For the versions this machine has no interpreter of: `pip download --only-binary=:all: --python-version X`
resolves the project's requirements (pyproject.toml, with the test extras) under constraints.txt for that
version and fails if any package lacks a wheel there (coincurve 20 has none for 3.13, for example). pip
judges environment markers by the interpreter it runs on, not by --python-version, so the markers are
evaluated here for the target version first.
Usage: python tools/check_wheels.py 3.12 3.13
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PLATFORMS = ["manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64"]


def for_version(lines: list[str], version: str) -> list[str]:
    """The requirement lines that apply on Python `version`, without their markers."""
    env = {"python_version": version, "python_full_version": f"{version}.0"}
    out = []
    for line in lines:
        line = line.split("#")[0].strip()
        if not line:
            continue
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(env):
            req.marker = None
            out.append(str(req))
    return out


def requirements(version: str) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return for_version([*project["dependencies"], *project["optional-dependencies"]["test"]], version)


def check(version: str) -> bool:
    with tempfile.TemporaryDirectory() as d:
        constraints = Path(d) / "constraints.txt"
        constraints.write_text("\n".join(for_version((ROOT / "constraints.txt").read_text().splitlines(), version)))
        wheels_dir = Path(d) / "wheels"
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--python-version", version,
               "--implementation", "cp", *[a for p in PLATFORMS for a in ("--platform", p)],
               "-c", str(constraints), "-d", str(wheels_dir), *requirements(version)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(p.name for p in wheels_dir.iterdir()) if wheels_dir.exists() else []
    lines = [line for line in r.stderr.splitlines() if "WARNING" not in line]
    if r.returncode != 0:
        print(f"Python {version}: does not install from wheels: {' '.join(lines)[-600:]}")
        return False
    coincurve = [w for w in wheels if w.startswith("coincurve")]
    print(f"Python {version}: {len(wheels)} wheels, all binary; {', '.join(coincurve)}")
    return True


if __name__ == "__main__":
    sys.exit(0 if all([check(v) for v in sys.argv[1:] or ["3.11", "3.12", "3.13"]]) else 1)
