"""The store keeps one row per membership change, and the driver's writes of one machine step (the
record, the epochs) go in one transaction: a write inside it (a refusal's own transaction) joins it,
so a failure leaves neither."""

from __future__ import annotations

from pathlib import Path

import pytest
from membership_script import expel, join

from frostfed.federation.membership.record import ChangeRecord, State
from frostfed.federation.store import EpochRecord, Store


def _save(store: Store, rec: ChangeRecord) -> None:
    p = rec.proposal
    store.save_change(p.proposer.hex(), p.nonce, p.epoch, rec.state.value, rec.to_json())


def test_one_row_per_change_updated_in_place_in_the_order_first_saved(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.sqlite")
    first, second = ChangeRecord(expel(), State.ADOPTED), ChangeRecord(join(), State.COLLECTING)
    _save(store, first)
    _save(store, second)
    first.state = State.ABORTED
    _save(store, first)
    store.close()
    store = Store(tmp_path / "m.sqlite")  # a restart reads them back
    back = [ChangeRecord.from_json(r) for r in store.changes()]
    assert [(r.proposal.nonce, r.state) for r in back] == [
        (first.proposal.nonce, State.ABORTED),
        (second.proposal.nonce, State.COLLECTING),
    ]
    store.close()


def test_a_step_that_fails_leaves_neither_the_record_nor_the_epoch(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.sqlite")
    rec = ChangeRecord(expel(), State.KEY_READY, share_made=True)
    share = EpochRecord(1, "pending", rec.proposal.members, 3, b"\x02" * 33, b"\x03" * 32, [], b"", None)
    with pytest.raises(RuntimeError), store.transaction():
        store.save_epoch(share)
        with store.transaction():  # a write that opens its own transaction joins this one
            store.record_refusal("proposal", rec.proposal.to_body(), "x", "y")
        _save(store, rec)
        raise RuntimeError("the step fails")
    assert store.changes() == [] and store.epoch(1) is None and store.refusals() == []
    with store.transaction():
        store.save_epoch(share)
        _save(store, rec)
    assert store.epoch(1) is not None and len(store.changes()) == 1
    store.close()
