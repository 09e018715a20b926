"""Installing the plugin as the README says, on a real lightningd: with `reckless` (shipped with Core
Lightning) from a local checkout, and with `lightningd --plugin=` on the script of a virtual environment
the project is pip-installed into (Debian 12's system python refuses `pip install`, PEP 668)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import lightningd_bundle

lightningd_bundle.require()

import pytest  # noqa: E402
from pyln.client import RpcError  # noqa: E402
from pyln.testing.fixtures import *  # noqa: E402, F403
from pyln.testing.utils import wait_for  # noqa: E402

from frostfed.federation import commands  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.lightningd]

ROOT = Path(__file__).resolve().parent.parent
KEEP_OUT = (
    ".venv", ".cache", ".git", "build", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", ".hypothesis"
)


def checkout_copy(dest: Path) -> Path:
    """The project as a fresh clone holds it (no virtual environment, no caches)."""
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(*KEEP_OUT, "*.egg-info"), symlinks=True)
    return dest


def system_python() -> str:
    """The interpreter a user has: the base python of this test run, not its virtual environment."""
    return getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable


def answers_not_ready(node) -> None:
    """The plugin is up and talking to lightningd: with no member list it says what is missing."""

    def says_why() -> bool:
        try:
            node.rpc.call("frost-status")
        except RpcError as e:
            return e.error["code"] == commands.NOT_READY and "no members configured" in e.error["message"]
        return False

    wait_for(says_why, timeout=60)


def test_plugin_runs_from_a_virtual_environment(node_factory, tmp_path):
    venv = tmp_path / "frostfed-venv"
    subprocess.run([system_python(), "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(checkout_copy(tmp_path / "frostfed"))],
        capture_output=True,
        text=True,
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    plugin = venv / "bin" / "frostfed-plugin"
    l1 = node_factory.get_node(options={"plugin": str(plugin)})
    answers_not_ready(l1)
    assert str(plugin) in [p["name"] for p in l1.rpc.plugin_list()["plugins"]]


def test_reckless_installs_the_plugin_from_a_local_checkout(node_factory, tmp_path):
    l1 = node_factory.get_node()
    source = checkout_copy(tmp_path / "src" / "frostfed-plugin")  # reckless names a plugin after its directory
    lightning_dir = l1.daemon.lightning_dir
    env = {**os.environ, "HOME": str(tmp_path)}
    run = subprocess.run(
        ["reckless", "-v", "-l", lightning_dir, "--network", "regtest", "install", str(source)],
        input="Y\n" * 4,  # yes, create the network's config file (as a user answers)
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    answers_not_ready(l1)
    installed = [p["name"] for p in l1.rpc.plugin_list()["plugins"] if "frostfed" in p["name"]]
    assert len(installed) == 1 and installed[0].startswith(str(Path(lightning_dir) / "reckless"))
    # reckless also enabled it for the next start
    conf = Path(lightning_dir, "reckless", "regtest-reckless.conf").read_text()
    assert "frostfed-plugin" in conf, conf
