"""The README's main command does what it says: payouts confirm with two members dead, after a join and
after a leave."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_demo_confirms_both_payouts(tmp_path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "frostfed", "demo", "--dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "every payout and membership change confirmed" in run.stdout
    assert "SIGKILL members [3, 4]" in run.stdout
    assert run.stdout.count("1 confirmation(s); every miner received its amount: True") == 4
    assert "new epoch 1: 6 members" in run.stdout and "new epoch 2: 5 members" in run.stdout
    # everything it started is stopped: no member process is left holding its data directory
    left = subprocess.run(["pgrep", "-f", str(tmp_path / "demo")], capture_output=True, text=True)
    assert left.stdout.strip() == ""
