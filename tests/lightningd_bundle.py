"""Finding `lightningd` for the real-node suite: on PATH, else the relocatable Core Lightning bundle kept in
`../shared/cln/` beside the checkout, unpacked into `.cache/cln/` after its sha256 is checked.

`FROSTFED_CLN_BUNDLE` names another copy of the tarball. Under CI a missing or damaged bundle fails the
real-node tests; elsewhere they are skipped with a message saying how to get lightningd.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSION = "v26.06.6"
TARBALL = f"cln-{VERSION}-x86_64.tar.xz"
SHA256 = "f89654f82c4912d8ebbe9c0c120d42aa92f7baab14da0b0f9a58236fa3d9210b"
CACHE = ROOT / ".cache" / "cln"

HOW_TO_GET = (
    "the real-node tests need Core Lightning's lightningd: put it on PATH, or keep the bundle "
    f"{TARBALL} in ../shared/cln/ beside the checkout (or name it with FROSTFED_CLN_BUNDLE)"
)


def bundle_path() -> Path:
    env = os.environ.get("FROSTFED_CLN_BUNDLE")
    return Path(env) if env else ROOT.parent / "shared" / "cln" / TARBALL


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def provide() -> str | None:
    """Put lightningd on PATH (unpacking the bundle if needed); None on success, else why it is missing."""
    os.environ["RUST"] = "0"  # the bundle has no cln-grpc: pyln-testing must not ask for it
    if shutil.which("lightningd"):
        return None
    bindir = CACHE / f"cln-{VERSION}" / "bin"
    stamp = CACHE / f".{SHA256}"
    if not ((bindir / "lightningd").exists() and stamp.exists()):
        tarball = bundle_path()
        if not tarball.is_file():
            return f"{tarball} is missing; {HOW_TO_GET}"
        digest = _sha256(tarball)
        if digest != SHA256:
            return f"{tarball} has sha256 {digest}, not {SHA256}; {HOW_TO_GET}"
        shutil.rmtree(CACHE, ignore_errors=True)
        CACHE.mkdir(parents=True)
        done = subprocess.run(["tar", "-xJf", str(tarball), "-C", str(CACHE)], capture_output=True, text=True)
        if done.returncode != 0 or not (bindir / "lightningd").exists():
            return f"unpacking {tarball} failed: {done.stderr.strip()}"
        stamp.touch()
    os.environ["PATH"] = f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"
    return None


def require() -> None:
    """Called at the top of each real-node test module: lightningd, bitcoind and the project's python on PATH,
    or the module is skipped (failed under CI) with the reason."""
    import sys

    import pytest

    from frostfed.bitcoin.regtest import BitcoindNotFound, locate_bitcoind

    missing = provide()
    if missing is None:
        try:
            bitcoind_dir = str(Path(locate_bitcoind()).parent)
        except BitcoindNotFound as e:
            missing = f"bitcoind for pyln-testing: {e}"
        else:
            venv_bin = str(Path(sys.executable).parent)  # test plugins' `#!/usr/bin/env python3` finds pyln
            path = os.environ["PATH"].split(os.pathsep)
            os.environ["PATH"] = os.pathsep.join([venv_bin, bitcoind_dir, *(p for p in path if p)])
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(missing, pytrace=False)
        pytest.skip(missing, allow_module_level=True)
