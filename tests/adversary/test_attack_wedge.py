"""A malicious proposer holds a membership change open: it proposes its own leave (every honest
member takes part), lets the DKG finish, then names a made-up transaction as the transition. The
change stays open at every honest member and every later change is refused as "in progress", the
attacker's expulsion included, until (1) an honest payout spends the anchor the change started from
and is 6 blocks deep, when each honest member drops the change by itself, or (2) the operators run
`frost-abort-change` at every honest member, after which they expel the attacker. Five member
processes on regtest, t = 3; everything is asserted from the honest members' own records and the
chain."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest

from adversary.harness import AdversaryCluster, nonces_for, wait_for, wait_for_refusals
from adversary.test_attack_membership import MEMBERSHIP, refused_changes, wait_for_change_refusals
from frostfed.bitcoin.regtest import RegtestBitcoind
from frostfed.plugin.localcluster import LocalMember, wait_for_epoch
from frostfed.plugin.rpcclient import RpcCallError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory, regtest: RegtestBitcoind) -> Iterator[AdversaryCluster]:
    cluster = AdversaryCluster(tmp_path_factory.mktemp("advw5"), regtest, 5, 3, attackers=(0,), membership=MEMBERSHIP)
    cluster.start()
    cluster.fund_coin(300_000)
    yield cluster
    cluster.stop()


def changes(member: LocalMember) -> list[dict[str, Any]]:
    """The member's change records, from its own store."""
    with closing(sqlite3.connect(f"file:{member.data_dir / 'frostfed.sqlite'}?mode=ro", uri=True, timeout=10)) as db:
        return [json.loads(r[0]) for r in db.execute("SELECT record FROM changes ORDER BY rowid")]


def in_progress(member: LocalMember) -> dict[str, Any] | None:
    return member.call("frost-epochs")["change"]["in_progress"]


def wedge(fed: AdversaryCluster) -> dict[str, Any]:
    """The attacker's leave, held open with a made-up transition at every honest member."""
    run = fed.attacker.evil("wedge", {"kind": "leave", "subject": fed.attacker.id.hex(), "timeout": 60})
    wait_for(
        lambda: all((in_progress(m) or {}).get("transition_txid") == run["txid"] for m in fed.honest),
        "every honest member to wait for the made-up transition",
    )
    return run


def assert_wedged(fed: AdversaryCluster, run: dict[str, Any]) -> None:
    """A later change is refused at every honest member: the honest operator's expulsion of the
    attacker, and another proposal of the attacker's."""
    with pytest.raises(RpcCallError) as err:
        fed.honest[0].call("frost-expel", [fed.attacker.id.hex()])
    assert "already in progress" in str(err.value)
    other = fed.attacker.evil("propose", {"kind": "leave", "subject": fed.attacker.id.hex(), "to": "all"})
    refused = wait_for_change_refusals(fed.honest, other["proposal"]["nonce"])
    assert all("already in progress" in r["reason"] for r in refused.values())
    for m in fed.honest:
        assert in_progress(m)["transition_txid"] == run["txid"]


def assert_set_aside(fed: AdversaryCluster, run: dict[str, Any]) -> None:
    """Each honest member kept its share of the dropped change's key with that change."""
    for m in fed.honest:
        mine = [c for c in changes(m) if c["proposal"]["nonce"] == run["proposal"]["nonce"] and c["aside"]]
        assert len(mine) == 1 and mine[0]["aside"]["group_key"] == run["group_key"], m.index
        assert mine[0]["aside"]["sealed_share"], m.index


def test_a_payout_spending_the_anchor_ends_a_wedged_change(fed: AdversaryCluster) -> None:
    run = wedge(fed)
    assert_wedged(fed, run)
    fed.honest_payout_succeeds()  # spends the anchor the change started from, paying change back
    fed.btc.mine(4)  # 5 deep: not yet
    for m in fed.honest:
        assert in_progress(m) is not None, m.index
    fed.btc.mine(1)  # 6 deep
    wait_for(lambda: all(in_progress(m) is None for m in fed.honest), "every honest member to drop the change", 60)
    for m in fed.honest:
        dropped = [r for r in refused_changes(m) if r["nonce"] == run["proposal"]["nonce"] and r["stage"] == "dropped"]
        assert [r["code"] for r in dropped] == ["transition_impossible"], m.index
        assert "was spent by the payout" in dropped[0]["reason"]
        assert m.call("frost-status")["epoch"] == 0
    assert_set_aside(fed, run)
    fed.honest_payout_succeeds(via=1)


def test_operators_abort_a_wedged_change_then_expel_the_attacker(fed: AdversaryCluster) -> None:
    run = wedge(fed)
    assert_wedged(fed, run)
    for m in fed.honest:
        out = m.call("frost-abort-change", ["the proposer's transition never confirms"])
        assert out["aborted"]["nonce"] == run["proposal"]["nonce"]
    with pytest.raises(RpcCallError) as err:
        fed.honest[0].call("frost-abort-change")
    assert "no membership change is in progress" in str(err.value)
    nonce = run["proposal"]["nonce"]
    for m in fed.honest:
        assert in_progress(m) is None
        dropped = [r for r in refused_changes(m) if r["nonce"] == nonce and r["stage"] == "dropped"]
        assert [r["code"] for r in dropped] == ["operator_abort"], m.index
        assert "never confirms" in dropped[0]["reason"]
    assert_set_aside(fed, run)
    # the attacker proposes the same change again and asks for its transition: refused
    fed.attacker.evil("send", {"kind": "change_proposal", "body": run["proposal"], "to": "all"})
    refused = wait_for_change_refusals(fed.honest, nonce)
    assert all("dropped this change" in r["reason"] for r in refused.values())
    out = fed.attacker.evil("transition", {"proposal": run["proposal"], "recovery": run["recovery"], "to": "all"})
    assert out["signed"] is False and out["shares"] == [] and not out["broadcast"]
    assert wait_for_refusals(fed.honest, out["id"]) == {m.index: "change_dropped" for m in fed.honest}
    for m in fed.honest:
        assert nonces_for(m, out["id"]) == []
    # the honest operators expel the attacker
    for m in fed.honest:
        m.call("frost-approve-expel", [fed.attacker.id.hex()])
    r = fed.honest[0].call("frost-expel", [fed.attacker.id.hex()])
    assert r["epoch"] == 1 and fed.attacker.id.hex() not in r["members"] and r["group_key"] != run["group_key"]
    fed.btc.mine(1)
    wait_for_epoch(fed.honest, 60, epoch=1)
    for m in fed.honest:
        status = m.call("frost-status")
        assert status["group_key"] == r["group_key"]
        assert fed.attacker.id.hex() not in [x["id"] for x in status["members"]]
    assert fed.btc.rpc("gettxout", r["txid"], 0)["confirmations"] >= 1  # the transition, confirmed
    fed.honest_payout_succeeds(via=2)
