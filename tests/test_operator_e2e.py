"""What an operator sees of running member processes on a real regtest bitcoind: frost-status's chain,
balance and ledger agreement; an unreachable bitcoind said at start; logs on stderr and in a file that
SIGHUP reopens; owner-only data files; the CLI against a live member; and a join waiting on an
unreachable joiner that says whom it waits for."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from federation_cluster import Cluster

from frostfed.bitcoin.regtest import RegtestBitcoind, free_port
from frostfed.federation.identity import create_identity_file
from frostfed.plugin.localcluster import LocalMember, write_cluster
from frostfed.plugin.rpcclient import RpcCallError

pytestmark = pytest.mark.slow

MEMBERSHIP = {"change_timeout_seconds": 6.0, "min_change_interval_blocks": 0, "transition_confirmations": 1}


def until(what: str, pred: Callable[[], Any], timeout: float = 45) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(what)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory, regtest: RegtestBitcoind) -> Iterator[Cluster]:
    cluster = Cluster(
        tmp_path_factory.mktemp("ops3"), regtest, 3, 2, policy={"min_confirmations": 2}, membership=MEMBERSHIP
    )
    cluster.start()
    yield cluster
    cluster.stop()


def cli(member: LocalMember, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "frostfed", "-d", str(member.data_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_status_shows_the_chain_and_the_federations_coins(fed: Cluster) -> None:
    m = fed.members[0]
    tip = fed.btc.rpc("getblockcount")
    st = until("chain in status", lambda: (s := m.call("frost-status"))["chain"]["tip_height"] == tip and s)
    assert st["chain"]["network"] == "regtest" and st["chain"]["reachable"] is True
    before = st["balance"]

    fed.fund(70_000)  # one block: below min_confirmations = 2
    until("pending coin", lambda: m.call("frost-status")["balance"]["pending_sats"] == before["pending_sats"] + 70_000)
    fed.btc.mine(1)
    until("confirmed", lambda: m.call("frost-status")["balance"]["confirmed_sats"] == before["confirmed_sats"] + 70_000)

    address = m.call("frost-newaddr")["address"]
    [block] = fed.btc.rpc("generatetoaddress", 1, address)  # a block reward to the federation
    coinbase = fed.btc.rpc("getblock", block, 2)["tx"][0]
    reward = sum(int(o["value"] * 100_000_000) for o in coinbase["vout"] if o["scriptPubKey"].get("address") == address)
    assert reward > 0
    st = until("immature", lambda: (s := m.call("frost-status"))["balance"]["immature_sats"] >= reward and s)
    assert st["balance"]["immature_sats"] == before["immature_sats"] + reward
    assert st["balance"]["confirmed_sats"] == before["confirmed_sats"] + 70_000  # the reward is not spendable


def test_status_lists_the_members_whose_ledger_differs(fed: Cluster) -> None:
    a, b, c = fed.members
    miner = fed.miner_address()
    for m in (a, b):
        m.call("frost-ledger-credit", [miner, 12_345, "window-ops-1"])

    def differ() -> list[str] | None:
        agreement = a.call("frost-status")["ledger_agreement"]
        rows = {r["id"]: r for r in agreement["members"]}
        if rows[b.id.hex()].get("credits") == "agree" and rows[c.id.hex()].get("credits") == "differ":
            return agreement["differ"]
        return None

    assert until("c differs", differ) == [c.id.hex()]
    c.call("frost-ledger-credit", [miner, 12_345, "window-ops-1"])

    def agree() -> bool:
        agreement = a.call("frost-status")["ledger_agreement"]
        return agreement["differ"] == [] and all(r.get("credits") == "agree" for r in agreement["members"])

    until("all agree", agree)
    # what the chain paid is compared too, at the same height
    st = a.call("frost-status")["ledger_agreement"]
    assert {r["paid"] for r in st["members"]} <= {"agree", "other height"}


def test_data_files_are_owner_only_and_the_log_goes_to_stderr_too(fed: Cluster) -> None:
    m = fed.members[1]
    for name in ("frostfed.sqlite", "ledger.sqlite", "chain.sqlite", "frostfed.log", "frostfed-rpc"):
        mode = (m.data_dir / name).stat().st_mode & 0o777
        assert mode == 0o600, f"{name} is {oct(mode)}"
    assert "listening on 127.0.0.1" in m.stderr_tail() or "listening on" in (m.data_dir / "stderr.log").read_text()
    assert "listening on" in (m.data_dir / "frostfed.log").read_text()


def test_sighup_reopens_the_log_file(fed: Cluster) -> None:
    m = fed.members[2]
    log = m.data_dir / "frostfed.log"
    rotated = m.data_dir / "frostfed.log.1"
    os.replace(log, rotated)
    assert m.proc is not None
    m.proc.send_signal(signal.SIGHUP)
    until("a new log file", lambda: log.exists() and "log file reopened" in log.read_text())
    assert m.running and (log.stat().st_mode & 0o777) == 0o600
    assert m.call("frost-status")["state"] == "active"
    assert "log file reopened" not in rotated.read_text()  # written to the new file, not the moved one


def test_the_cli_against_a_running_member(fed: Cluster) -> None:
    m = fed.members[0]
    ok = cli(m, "-H", "frost-status")
    assert ok.returncode == 0 and f"id={m.id.hex()}\n" in ok.stdout and "network=regtest\n" in ok.stdout
    missing = cli(m, "frost-requests", "nosuch")
    assert missing.returncode == 1 and '"code": 1405' in missing.stderr and "Traceback" not in missing.stderr
    # a base64 PSBT ending in '=' is a value, not key=value; -k forces keywords
    psbt = "cHNidP8BAAoCAAAAAAAAAAAAAAAA=="
    positional = cli(m, "frost-sign", psbt)
    assert positional.returncode == 1 and "not a valid PSBT" in positional.stderr
    keyword = cli(m, "-k", "frost-sign", f"psbt={psbt}")
    assert keyword.returncode == 1 and "not a valid PSBT" in keyword.stderr
    forced = cli(m, "-k", "frost-sign", psbt)
    assert forced.returncode == 1 and "unknown parameter" in forced.stderr
    usage = cli(m, "-k", "frost-requests", "abc")
    assert usage.returncode == 3 and "Expected key=value" in usage.stderr
    limited = cli(m, "frost-requests", "limit=1")
    assert limited.returncode == 0


@pytest.mark.parametrize("fault", ["wrong password", "no bitcoind"])
def test_a_member_that_cannot_reach_its_bitcoind_says_so_at_start_and_in_status(
    tmp_path: Path, regtest: RegtestBitcoind, fault: str
) -> None:
    cookie = regtest.datadir / "regtest" / ".cookie"
    port, said = regtest.rpc_port, "refused our credentials"
    if fault == "wrong password":
        cookie = tmp_path / "wrong.cookie"
        cookie.write_text("__cookie__:not-the-password\n")
    else:
        port, said = free_port(), "is unreachable"
    deep = tmp_path / ("d" * 60) / ("e" * 40)  # its control socket's path is past the AF_UNIX limit: it serves anyway
    [member, _] = write_cluster(deep, 2, 2, port, cookie)
    assert len(os.fsencode(str(member.socket))) > 107
    proc = subprocess.Popen(
        [sys.executable, "-m", "frostfed", "run", "--config", str(member.config), "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        chain = until("status", lambda: member.socket.exists() and member.call("frost-status")["chain"], timeout=30)
        assert chain["reachable"] is False and said in chain["last_error"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert "THE CHAIN SOURCE CANNOT BE REACHED" in err and said in err
    logged = (member.data_dir / "frostfed.log").read_text()
    assert "THE CHAIN SOURCE CANNOT BE REACHED" in logged
    assert "listening on" not in logged and "listening on" not in err  # info lines, below --log-level warning
    assert "Traceback" not in err


def test_a_join_waiting_for_an_unreachable_joiner_says_whom_it_waits_for(fed: Cluster, tmp_path: Path) -> None:
    proposer, *others = fed.members
    joiner = create_identity_file(tmp_path / "joiner.key").id.hex()
    for m in others:
        m.call("frost-admit", [joiner])
    outcome: dict[str, Any] = {}

    def join() -> None:
        try:
            outcome["result"] = proposer.call("frost-join", {"id": joiner, "address": f"127.0.0.1:{free_port()}"})
        except RpcCallError as e:
            outcome["error"] = e

    thread = threading.Thread(target=join)
    thread.start()
    try:
        waiting = until(
            "the wait in status", lambda: proposer.call("frost-status")["in_progress"]["waiting"], timeout=20
        )
        assert waiting["waiting_for"].startswith("the DKG of epoch 1")
        assert [p["id"] for p in waiting["from"]] == [joiner] and waiting["from"][0]["online"] is False
        assert proposer.call("frost-status")["in_progress"]["change"]["subject"] == joiner
        # a member taking part sees the DKG it runs wait for the same silent joiner
        theirs = until("the DKG at another member", lambda: others[0].call("frost-status")["in_progress"]["waiting"])
        assert theirs["waiting_for"].startswith("the DKG of epoch 1") and [p["id"] for p in theirs["from"]] == [joiner]
    finally:
        thread.join(60)
    error = outcome["error"]
    assert error.code == 1406 and "no answer in time" in error.message and joiner in error.message
    assert "never seen" in error.message
    assert proposer.call("frost-status")["in_progress"]["waiting"] is None
