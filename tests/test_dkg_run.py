"""The coordinator-free DKG run: members exchange only broadcasts and all end with the same key."""

import os
import random

import pytest
from coincurve import PrivateKey

from frostfed.federation.dkg_run import DkgFailed, DkgRun


def _run_all(runs: dict[bytes, DkgRun], tamper=None) -> None:
    """Deliver every broadcast to every member, in a shuffled order, as the echo broadcast would."""
    queue = [(me, s, p) for me, r in runs.items() for s, p in r.start()]
    rng = random.Random(7)
    while queue:
        rng.shuffle(queue)
        sender, session, payload = queue.pop()
        for me, run in runs.items():
            data = tamper(sender, session, payload) if tamper else payload
            for s, p in run.on_delivered(session, sender, data):
                queue.append((me, s, p))


def _members(n: int) -> tuple[list[bytes], dict[bytes, bytes]]:
    keys = [PrivateKey() for _ in range(n)]
    ids = [k.public_key.format() for k in keys]
    return ids, {i: os.urandom(32) for i in ids}


@pytest.mark.parametrize(("t", "n"), [(2, 3), (3, 5)])
def test_members_agree_on_the_epoch_key(t: int, n: int) -> None:
    ids, seeds = _members(n)
    runs = {m: DkgRun(0, 1, ids, t, m, seeds[m]) for m in ids}
    _run_all(runs)
    results = [r.result for r in runs.values()]
    assert all(r is not None for r in results)
    assert len({r.group_key for r in results}) == 1
    assert len({r.chain_code for r in results}) == 1
    assert len({tuple(r.pubshares) for r in results}) == 1
    assert len({r.secshare for r in results}) == n


def test_a_corrupted_first_round_message_fails_the_run() -> None:
    ids, seeds = _members(3)
    runs = {m: DkgRun(0, 1, ids, 2, m, seeds[m]) for m in ids}
    bad = ids[1]

    def tamper(sender: bytes, session: str, payload: bytes) -> bytes:
        if sender == bad and session.endswith("/r1"):
            return payload[:-1] + bytes([payload[-1] ^ 1])
        return payload

    with pytest.raises(DkgFailed):
        _run_all(runs, tamper)
    assert all(r.result is None for r in runs.values())
