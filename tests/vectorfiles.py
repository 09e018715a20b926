"""Locating the published test vectors, which live outside the repository in `../shared/vectors/`.

`FROSTFED_VECTORS` overrides the location. Under CI a missing or unreadable file fails the suite;
elsewhere the tests that need it are skipped with a message saying where the vectors come from.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def vectors_root() -> Path:
    env = os.environ.get("FROSTFED_VECTORS")
    return Path(env) if env else ROOT.parent / "shared" / "vectors"


def _unavailable(path: Path, err: Exception) -> None:
    msg = (
        f"test vector file {path} is unavailable ({err}). The vectors are the published BIP 340/341, "
        "BIP 445 and ChillDKG files kept in ../shared/vectors/ beside the checkout; "
        "set FROSTFED_VECTORS to another copy."
    )
    if os.environ.get("CI"):
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg, allow_module_level=True)


def load_text(relpath: str) -> str:
    path = vectors_root() / relpath
    try:
        return path.read_text()
    except OSError as e:
        _unavailable(path, e)
        raise  # unreachable: _unavailable always raises


def load_json(relpath: str) -> Any:
    path = vectors_root() / relpath
    try:
        return json.loads(load_text(relpath))
    except ValueError as e:
        _unavailable(path, e)
        raise
