"""Fee rates and fee bumps, unit by unit: the estimate clamped to the policy (or the floor without
one), lightningd's `feerates`, the replacement rules (only the federation's change may shrink, BIP 125
fees), and how a bump takes over the payout's reservation and fee-budget entry."""

from __future__ import annotations

from typing import Any

import pytest
from bitcoin.core import CTransaction, CTxIn, CTxOut, b2lx
from bitcoin.core.script import CScript
from chain_tracking import index_over
from fake_chain import FakeChain, coinbase, script, spend

from frostfed.bitcoin.chain import ChainError, ChainUnavailable, FeeEstimate
from frostfed.bitcoin.chain_checks import CheckedPayout
from frostfed.bitcoin.cln_chain import feerates_estimate
from frostfed.bitcoin.fee_budget import FeeBudget
from frostfed.bitcoin.fee_estimate import FALLBACK_SAT_PER_VB, choose_feerate
from frostfed.bitcoin.ledger import Ledger
from frostfed.bitcoin.rejection import PolicyRejection
from frostfed.bitcoin.replacement import INCREMENTAL_RELAY_FEE, bump_tx, check_replacement, min_bump_fee
from frostfed.bitcoin.standardness import keypath_vsize
from frostfed.federation.fee_bump import recorded_original
from frostfed.federation.messages import Message, MessageError
from frostfed.federation.signing_request import SigningRequest
from frostfed.federation.store import Store

FED = script("federation")
CHANGE = script("change")
MINER = script("miner")
OTHER = script("other")
ANCHOR = ("aa" * 32, 0)
COIN_SATS = 100_000


def fed_owned(s: bytes) -> bool:
    return s in (FED, CHANGE)


class Estimating(FakeChain):
    def __init__(self, answer: FeeEstimate | Exception) -> None:
        super().__init__()
        self.answer = answer
        self.asked: list[int] = []

    def estimate_fee(self, target_blocks: int = 6) -> FeeEstimate:
        self.asked.append(target_blocks)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


# -- the fee rate a coordinator proposes --------------------------------------------------------------


def test_an_estimate_inside_the_bounds_is_used_as_it_is() -> None:
    chain = Estimating(FeeEstimate(7.25, "estimatesmartfee 6"))
    choice = choose_feerate(chain, 1.0, 50.0)
    assert (choice.sat_per_vb, choice.source, choice.clamped, choice.estimate) == (7.25, "estimate", False, 7.25)
    assert chain.asked == [6] and choice.to_json()["feerate_detail"] == "estimatesmartfee 6"


@pytest.mark.parametrize(("estimate", "rate"), [(400.0, 50.0), (0.5, 1.5)])
def test_an_estimate_outside_the_policy_bounds_is_clamped(estimate: float, rate: float) -> None:
    choice = choose_feerate(Estimating(FeeEstimate(estimate, "estimatesmartfee 6")), 1.5, 50.0)
    assert (choice.sat_per_vb, choice.source, choice.clamped, choice.estimate) == (rate, "estimate", True, estimate)
    assert "clamped to the policy's bounds [1.5, 50.0]" in choice.detail


@pytest.mark.parametrize(
    "answer",
    [
        FeeEstimate(None, "estimatesmartfee 6", "Insufficient data or no feerate found"),
        ChainUnavailable("bitcoind at 127.0.0.1:1 is unreachable"),
    ],
)
def test_without_an_estimate_the_floor_is_used_and_said(answer: Any) -> None:
    choice = choose_feerate(Estimating(answer), 1.0, 50.0)
    assert (choice.sat_per_vb, choice.source, choice.estimate) == (FALLBACK_SAT_PER_VB, "floor", None)
    reason = answer.reason if isinstance(answer, FeeEstimate) else str(answer)
    assert reason in choice.detail and "floor" in choice.detail
    # the floor itself stays inside the policy's bounds
    assert choose_feerate(Estimating(answer), 3.0, 50.0).sat_per_vb == 3.0
    assert choose_feerate(Estimating(answer), 1.0, 1.5).sat_per_vb == 1.5


def test_a_requested_rate_is_not_estimated() -> None:
    chain = Estimating(ChainError("must not be asked"))
    assert choose_feerate(chain, 1.0, 50.0, requested=9.0).source == "requested" and chain.asked == []


def test_lightningd_feerates_take_the_estimate_within_the_target() -> None:
    got = {
        "perkb": {
            "floor": 1000,
            "estimates": [
                {"blockcount": 2, "feerate": 20_000, "smoothed_feerate": 19_000},
                {"blockcount": 6, "feerate": 12_000, "smoothed_feerate": 11_000},
                {"blockcount": 12, "feerate": 8_000, "smoothed_feerate": 8_000},
            ],
        }
    }
    assert feerates_estimate(got, 6) == FeeEstimate(12.0, "lightningd feerates (6 blocks)")
    assert feerates_estimate(got, 10).sat_per_vb == 12.0
    assert feerates_estimate(got, 1).sat_per_vb == 20.0  # none within one block: the nearest
    missing = feerates_estimate(
        {"perkb": {"floor": 253}, "warning_missing_feerates": "Some fee estimates unavailable"}, 6
    )
    assert missing.sat_per_vb is None and missing.reason == "Some fee estimates unavailable"
    assert feerates_estimate("garbage", 6).sat_per_vb is None


# -- the replacement rules ----------------------------------------------------------------------------


def payout_tx(change_sats: int, miner_sats: int = 30_000, extra: list[CTxOut] | None = None) -> CTransaction:
    vin = [CTxIn(spend([ANCHOR], []).vin[0].prevout, nSequence=0xFFFFFFFD)]
    vout = [CTxOut(miner_sats, CScript(MINER)), *(extra or []), CTxOut(change_sats, CScript(CHANGE))]
    return CTransaction(vin, vout, 0, 2)


ORIGINAL = payout_tx(COIN_SATS - 30_000 - 200)  # pays 200 sats of fee


def test_a_bump_lowers_only_the_change_and_passes_the_check() -> None:
    vsize = keypath_vsize(ORIGINAL)
    bump = bump_tx(ORIGINAL, COIN_SATS, 1, 10.0)
    assert bump.original_fee_sats == 200 and bump.fee_sats == 10 * vsize
    assert bump.tx.vin[0].prevout == ORIGINAL.vin[0].prevout and bump.tx.vout[0] == ORIGINAL.vout[0]
    assert bump.tx.vout[1].nValue == ORIGINAL.vout[1].nValue - (bump.fee_sats - 200)
    checked = check_replacement(ORIGINAL, bump.tx, COIN_SATS, fed_owned)
    assert checked.fee_sats == bump.fee_sats
    # asked for less than BIP 125 allows, the bump pays the least increment anyway
    least = bump_tx(ORIGINAL, COIN_SATS, 1, 0.1)
    assert least.fee_sats == min_bump_fee(200, vsize) == 200 + int(INCREMENTAL_RELAY_FEE * vsize)


def test_a_bump_that_would_leave_dust_change_is_refused() -> None:
    small = payout_tx(400)
    with pytest.raises(PolicyRejection) as e:
        bump_tx(small, 30_000 + 400 + 200, 1, 20.0)
    assert e.value.code == "bump_change_too_small"


def forged(**kw: Any) -> CTransaction:
    base = bump_tx(ORIGINAL, COIN_SATS, 1, 10.0).tx
    vin = kw.get("vin", base.vin)
    vout = kw.get("vout", base.vout)
    return CTransaction(vin, vout, kw.get("locktime", base.nLockTime), kw.get("version", base.nVersion))


@pytest.mark.parametrize(
    ("tx", "code"),
    [
        # a payee added, the money taken from the change
        (
            forged(
                vout=[CTxOut(30_000, CScript(MINER)), CTxOut(5_000, CScript(OTHER)), CTxOut(60_000, CScript(CHANGE))]
            ),
            "bump_outputs_changed",
        ),
        # the payee swapped for another
        (forged(vout=[CTxOut(30_000, CScript(OTHER)), CTxOut(68_000, CScript(CHANGE))]), "bump_outputs_changed"),
        # the payee paid more (or less), the change paying for it
        (forged(vout=[CTxOut(35_000, CScript(MINER)), CTxOut(63_000, CScript(CHANGE))]), "bump_amount_changed"),
        (forged(vout=[CTxOut(20_000, CScript(MINER)), CTxOut(69_800, CScript(CHANGE))]), "bump_amount_changed"),
        # the change grows
        (forged(vout=[CTxOut(30_000, CScript(MINER)), CTxOut(69_900, CScript(CHANGE))]), "bump_amount_changed"),
        # another coin spent, or the anchor dropped
        (forged(vin=[CTxIn(spend([("bb" * 32, 1)], []).vin[0].prevout, nSequence=0xFFFFFFFD)]), "bump_inputs_changed"),
        (
            forged(vin=[*ORIGINAL.vin, CTxIn(spend([("bb" * 32, 1)], []).vin[0].prevout, nSequence=0xFFFFFFFD)]),
            "bump_inputs_changed",
        ),
        (forged(vin=[CTxIn(ORIGINAL.vin[0].prevout, nSequence=0xFFFFFFFF)]), "bump_inputs_changed"),
        (forged(locktime=7), "bump_changed"),
        # the same fee, or not enough more (BIP 125 rule 4)
        (ORIGINAL, "bump_fee_too_low"),
        (
            forged(vout=[CTxOut(30_000, CScript(MINER)), CTxOut(ORIGINAL.vout[1].nValue - 3, CScript(CHANGE))]),
            "bump_fee_too_low",
        ),
    ],
)
def test_anything_but_a_lower_change_is_refused(tx: CTransaction, code: str) -> None:
    with pytest.raises(PolicyRejection) as e:
        check_replacement(ORIGINAL, tx, COIN_SATS, fed_owned)
    assert e.value.code == code


def test_a_payout_that_does_not_signal_replaceability_is_not_bumped() -> None:
    final = CTransaction([CTxIn(ORIGINAL.vin[0].prevout, nSequence=0xFFFFFFFF)], ORIGINAL.vout, 0, 2)
    bump = CTransaction(final.vin, bump_tx(ORIGINAL, COIN_SATS, 1, 10.0).tx.vout, 0, 2)
    with pytest.raises(PolicyRejection) as e:
        check_replacement(final, bump, COIN_SATS, fed_owned)
    assert e.value.code == "bump_not_replaceable"


# -- the bump takes over the payout's budget entry and reservation -----------------------------------


def checked(tx: CTransaction, fee: int, tip: int = 100) -> CheckedPayout:
    return CheckedPayout(
        tx=tx, txid=b2lx(tx.GetTxid()), inputs=(), change_outputs=(1,), fee_sats=fee, vsize=150, tip_height=tip
    )


def test_the_budget_counts_only_the_extra_fee_of_a_bump() -> None:
    budget = FeeBudget(":memory:", budget_sats=5_000, window_blocks=144)
    original = checked(ORIGINAL, 2_000)
    budget.approved(original)
    bump = checked(bump_tx(ORIGINAL, COIN_SATS, 1, 20.0).tx, 4_500)
    with pytest.raises(PolicyRejection) as e:  # as a new payout, 2,000 + 4,500 is over the budget
        budget.check(bump)
    assert e.value.code == "fee_budget_exceeded"
    budget.check(bump, replacing=original.txid)  # as its replacement, only one of them can confirm
    budget.approved(bump)
    budget.replaced(original.txid, bump.txid)
    assert budget.spent(100) == 4_500 and budget.approval(original.txid) == (100, 2_000)
    # a third fee on top is over the budget again: 4,500 + 1,000
    with pytest.raises(PolicyRejection):
        budget.check(checked(payout_tx(1_000), 1_000))
    # the chain shows the original confirmed (not the bump): it is not counted twice
    budget.chain_fees = lambda since: {original.txid: 2_000}
    assert budget.spent(101) == 4_500
    assert budget.approval("cd" * 32) is None


def test_a_bump_carries_the_reservation_and_whichever_confirms_settles_both() -> None:
    chain = FakeChain()
    chain.add([coinbase(0, [(FED, COIN_SATS)])])
    coin = (b2lx(chain.blocks[0].txs[0].GetTxid()), 0)
    ledger = Ledger(":memory:")
    ledger.credit(MINER, 30_000)
    original = spend([coin], [(MINER, 30_000), (FED, 69_800)])
    bump = spend([coin], [(MINER, 30_000), (FED, 69_000)])
    a, b = b2lx(original.GetTxid()), b2lx(bump.GetTxid())
    ledger.reserve(a, [coin], {MINER: 30_000}, 0)
    ledger.reserve(b, [coin], {MINER: 30_000}, 0)
    assert ledger.status(MINER).reserved == 60_000  # before: the debt looks reserved twice
    ledger.replace(a, b)
    ledger.replace(a, "ef" * 32)  # an unreserved "bump" takes nothing over
    st = ledger.status(MINER)
    assert (st.reserved, st.available) == (30_000, 0)
    index = index_over(chain, [FED], 0)
    chain.add([bump])
    index.sync(chain)
    assert ledger.reconcile(index) == [b]
    st = ledger.status(MINER)
    assert (st.paid, st.reserved, st.available) == (30_000, 0, 0)
    assert [p[0] for p in ledger.payouts()] == [b]  # the replaced payout never counts as paid
    # a reorganisation that swaps in the original instead: paid once, by the original
    chain.fork(1)
    chain.add([original])
    index.sync(chain)
    ledger.reconcile(index)
    st = ledger.status(MINER)
    assert (st.paid, st.reserved) == (30_000, 0) and [p[0] for p in ledger.payouts()] == [a]
    chain.fork(1)  # both gone: the bump's reservation is back, once
    chain.add([])
    index.sync(chain)
    ledger.reconcile(index)
    st = ledger.status(MINER)
    assert (st.paid, st.reserved) == (0, 30_000)


# -- the payout a bump replaces must be in this member's own records -----------------------------------


def records(tmp_path: Any) -> tuple[Store, FeeBudget]:
    store = Store(tmp_path / "member.sqlite")
    return store, FeeBudget(store.path, budget_sats=100_000, window_blocks=144)


def body(tx: CTransaction, epoch: int = 0) -> dict[str, Any]:
    return {"id": "p1", "epoch": epoch, "kind": "payout", "tx": tx.serialize().hex(), "input_paths": [[1, 0]]}


def bump_request(replaces: str, epoch: int = 0) -> SigningRequest:
    tx = bump_tx(ORIGINAL, COIN_SATS, 1, 10.0).tx
    return SigningRequest("b1", epoch, "bump", tx, ((1, 0),), {1: (1, 1)}, replaces=replaces)


def test_a_bump_replaces_only_a_payout_this_member_approved_itself(tmp_path: Any) -> None:
    store, budget = records(tmp_path)
    peer = b"\x02" * 33

    def refused(req: SigningRequest) -> str:
        with pytest.raises(PolicyRejection) as e:
            recorded_original(store, budget, req)
        return e.value.code

    assert refused(bump_request("p1")) == "unknown_original"
    assert refused(bump_request("b1")) == "malformed"  # itself
    store.save_request("t1", "transition", peer, "accepted", {**body(ORIGINAL), "kind": "transition"})
    assert refused(bump_request("t1")) == "original_not_payout"
    # recorded as accepted, but this member's journal holds no approval of that transaction
    store.save_request("p1", "payout", peer, "accepted", body(ORIGINAL))
    assert refused(bump_request("p1")) == "original_not_approved"
    # refused for what it pays: never approved
    store.save_request("p2", "payout", peer, "refused", body(ORIGINAL), {"reason": "unknown_output: ..."})
    assert refused(bump_request("p2")) == "original_not_approved"
    # refused only because its coins were spent when it arrived (it came after the broadcast)
    store.save_request("p3", "payout", peer, "refused", body(ORIGINAL), {"reason": "input_spent: input 0 ..."})
    assert recorded_original(store, budget, bump_request("p3")).txid == b2lx(ORIGINAL.GetTxid())
    budget.approved(checked(ORIGINAL, 200))
    found = recorded_original(store, budget, bump_request("p1"))
    assert found.tx.serialize() == ORIGINAL.serialize() and found.outpoints == [ANCHOR]
    assert refused(bump_request("p1", epoch=1)) == "original_other_epoch"


def test_a_bump_request_names_what_it_replaces_and_only_a_bump_does() -> None:
    req = bump_request("p1")
    again = SigningRequest.from_message(Message("sign_request", req.to_body()))
    assert (again.kind, again.replaces) == ("bump", "p1")
    with pytest.raises(MessageError):
        SigningRequest.from_message(Message("sign_request", {**req.to_body(), "kind": "payout"}))
    no_target = req.to_body()
    del no_target["replaces"]
    with pytest.raises(MessageError):
        SigningRequest.from_message(Message("sign_request", no_target))
