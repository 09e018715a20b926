"""ROAST signing between members, every transition of a request, in milliseconds: real ROAST cores,
real nonce journals in SQLite, an in-memory chain and a scripted network (`signing_net`).

The coordinator's side runs whole federations of signing parts; the signer's side puts one member in
front of the test, which plays its coordinator with a real `RoastCoordinator`. Assertions read the
members' own records: the nonce journal and the request table."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from bitcoin.core import b2lx
from signing_net import Net, Sent, message, nonce_rows

from frostfed.federation.messages import Kind, SignDone, SignReady, SignSession, SignShare
from frostfed.federation.nonce_journal import NonceReuseError
from frostfed.federation.roast_signer import CLOCK_SKEW
from frostfed.federation.roast_signing import SigningError
from frostfed.federation.store import Store
from frostfed.frost.roast import Presignature, RoastCoordinator, SessionRequest, SignerReply
from frostfed.frost.secp import schnorr_verify


@contextlib.asynccontextmanager
async def pumping(net: Net) -> AsyncIterator[Net]:
    pump = asyncio.create_task(net.pump())
    try:
        yield net
    finally:
        pump.cancel()
        await net.close()


async def until(cond: Callable[[], bool], what: str, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.002)


def verifies(net: Net, outcome: dict, coin: int = 0) -> bool:
    (task,) = net[0].judge.coordinate(net.request(coin=coin))
    return schnorr_verify(task.msg, net.keys.output_key((0, coin)), bytes.fromhex(outcome["signatures"][0]))


# -- the coordinator -------------------------------------------------------------------------------


async def test_the_first_t_ready_sign_and_the_coordinator_broadcasts(tmp_path: Path) -> None:
    net = Net(tmp_path)
    async with pumping(net):
        out = await net[0].signing.request_signatures(net.request())
        assert out["status"] == "broadcast" and verifies(net, out)
        assert [b2lx(tx.GetTxid()) for tx in net.chain.broadcasts] == [out["txid"]]
        assert out["signers"] == [net.ids[0].hex(), net.ids[1].hex()] and out["malicious"] == []
        await until(lambda: all("issued" not in nonce_rows(n.store, "r1") for n in net.nodes.values()), "sign_done")
        for node in net.nodes.values():  # every nonce used once at most; the last presignature discarded
            assert nonce_rows(node.store, "r1")[-1] == "discarded"
        for i in (0, 1):
            assert "used" in nonce_rows(net[i].store, "r1")
        assert [r["status"] for r in net[0].store.requests("r1")] == ["broadcast"]
        assert [r["status"] for r in net[1].store.requests("r1")] == ["broadcast"]  # its coordinator's word
        sessions = {(s.body["sid"], tuple(s.body["signers"])) for s in net.to(Kind.SIGN_SESSION)}
        assert len(sessions) == out["sessions"] and (0, (0, 1)) in sessions  # ROAST may run more at once
        for s in net.to(Kind.SIGN_SESSION):
            assert net.ids.index(s.to) in s.body["signers"]


async def test_refusals_beyond_n_minus_t_end_the_request_at_once(tmp_path: Path) -> None:
    net = Net(tmp_path, request_timeout=30)
    net[1].judge.refuse = "pays an unknown address"
    net[2].judge.refuse = "over the fee budget"
    async with pumping(net):
        started = time.monotonic()
        with pytest.raises(SigningError) as e:
            await net[0].signing.request_signatures(net.request())
        assert time.monotonic() - started < 5  # not the 30 s timeout
        assert e.value.outcome["status"] == "rejected"
        assert e.value.outcome["rejections"] == {
            net.ids[1].hex(): "scripted: pays an unknown address",
            net.ids[2].hex(): "scripted: over the fee budget",
        }
        assert net.to(Kind.SIGN_SESSION) == [] and net.chain.broadcasts == []
        for i in (1, 2):
            assert [r["status"] for r in net[i].store.requests("r1")] == ["refused"]
            assert nonce_rows(net[i].store, "r1") == []
        assert nonce_rows(net[0].store, "r1") == ["discarded"]
        assert net[0].store.requests("r1")[0]["status"] == "rejected"


async def test_an_invalid_share_names_its_signer_and_a_new_session_signs_without_it(tmp_path: Path) -> None:
    net = Net(tmp_path)
    cheat = net.ids[1]

    def forge(m: Sent) -> list[Sent]:
        if m.kind == Kind.SIGN_SHARE and m.sender == cheat:
            return [Sent(m.sender, m.to, m.kind, {**m.body, "psigs": [os.urandom(32).hex() for _ in m.body["psigs"]]})]
        return [m]

    net.rules.append(forge)
    async with pumping(net):
        out = await net[0].signing.request_signatures(net.request())
    assert out["status"] == "broadcast" and verifies(net, out)
    assert out["malicious"] == [cheat.hex()] and cheat.hex() not in out["signers"]
    assert out["sessions"] == 2


async def test_a_share_that_never_comes_holds_the_next_session_back_by_the_grace_only(tmp_path: Path) -> None:
    net = Net(tmp_path)
    silent = net.ids[1]  # in the first session (0, 1); its share is lost
    net.rules.append(lambda m: [] if m.kind == Kind.SIGN_SHARE and m.sender == silent else [m])
    grace = net[0].ctx.timing.roast_grace
    assert grace > 0
    async with pumping(net):
        started = time.monotonic()
        out = await net[0].signing.request_signatures(net.request())
        took = time.monotonic() - started
    assert out["status"] == "broadcast" and verifies(net, out)
    assert set(out["signers"]) == {net.ids[0].hex(), net.ids[2].hex()} and out["malicious"] == []
    assert out["sessions"] == 2  # 2 and 0 were ready at once; the timer at the grace's end started them
    assert grace <= took < net.request_timeout


async def test_a_coordinator_that_hears_too_few_gives_up_at_its_timeout(tmp_path: Path) -> None:
    net = Net(tmp_path, request_timeout=0.3)
    net.rules.append(lambda m: [] if m.sender != net.ids[0] else [m])  # the others are cut off
    async with pumping(net):
        with pytest.raises(SigningError, match="timed out") as e:
            await net[0].signing.request_signatures(net.request())
        assert e.value.outcome["status"] == "failed" and e.value.outcome["malicious"] == []
        assert nonce_rows(net[0].store, "r1") == ["discarded"]
        sessions = len(net.to(Kind.SIGN_SESSION))
        # a presignature arriving after the end starts nothing
        net[0].signing.handlers[Kind.SIGN_READY](net.ids[1], message(Kind.SIGN_READY, {"id": "r1", "pubnonces": []}))
        await asyncio.sleep(0.01)
        assert len(net.to(Kind.SIGN_SESSION)) == sessions
        assert net[0].store.requests("r1")[0]["status"] == "failed"


async def test_a_request_kind_without_a_judge_is_refused_by_coordinator_and_signers(tmp_path: Path) -> None:
    net = Net(tmp_path)
    async with pumping(net):
        with pytest.raises(SigningError, match="judges no transition request"):
            await net[0].signing.request_signatures(net.request(kind="transition"))
    assert net.to(Kind.SIGN_REQUEST) == []


# -- the signer ------------------------------------------------------------------------------------


async def ask(net: Net, signer: int, rid: str = "r1", coordinator: int = 0, deadline: int | None = None) -> None:
    body = net.request(rid, deadline=deadline).to_body()
    await net[signer].signing.handlers[Kind.SIGN_REQUEST](net.ids[coordinator], message(Kind.SIGN_REQUEST, body))


def readies(net: Net, signer: int) -> list[SignReady]:
    return [SignReady.decode(message(s.kind, s.body)) for s in net.to(Kind.SIGN_READY) if s.sender == net.ids[signer]]


def shares(net: Net, signer: int) -> list[SignShare]:
    return [SignShare.decode(message(s.kind, s.body)) for s in net.to(Kind.SIGN_SHARE) if s.sender == net.ids[signer]]


async def test_a_signer_that_accepts_journals_its_presignature_before_it_answers(tmp_path: Path) -> None:
    net = Net(tmp_path)
    await ask(net, 1)
    (ready,) = readies(net, 1)
    assert len(ready.pubnonces) == 1 and net.to(Kind.SIGN_READY)[0].to == net.ids[0]
    assert nonce_rows(net[1].store, "r1") == ["issued"]
    assert [r["status"] for r in net[1].store.requests("r1")] == ["accepted"]
    await ask(net, 1)  # the same request again: answered once only
    assert len(readies(net, 1)) == 1 and nonce_rows(net[1].store, "r1") == ["issued"]
    await net.close()


async def test_a_signer_that_refuses_says_why_and_issues_no_nonce(tmp_path: Path) -> None:
    net = Net(tmp_path)
    net[1].judge.refuse = "no debt to this address"
    await ask(net, 1)
    (reject,) = net.to(Kind.SIGN_REJECT)
    assert reject.body == {"id": "r1", "reason": "scripted: no debt to this address"}
    assert nonce_rows(net[1].store, "r1") == [] and readies(net, 1) == []
    assert net[1].store.requests("r1")[0]["outcome"] == {"reason": "scripted: no debt to this address"}
    await net.close()


async def test_late_requests_and_strangers_get_no_answer_and_no_record(tmp_path: Path) -> None:
    net = Net(tmp_path)
    await ask(net, 1, deadline=int(time.time() - CLOCK_SKEW - 5))
    stranger = bytes([3]) + b"\x55" * 32  # not a member of the epoch
    req = net.request("r2")
    await net[1].signing.handlers[Kind.SIGN_REQUEST](stranger, message(Kind.SIGN_REQUEST, req.to_body()))
    assert net.sent == [] and net[1].store.requests() == [] and net[1].judge.approved == []
    await net.close()


async def sign_session(net: Net) -> tuple[RoastCoordinator, SignSession]:
    """Members 0 and 1 accept; the test, as coordinator, starts ROAST's first session and sends it."""
    await ask(net, 0)
    await ask(net, 1)
    roast = RoastCoordinator(net.keys.roast_key, net[0].judge.coordinate(net.request()))
    roast.receive_presignature(Presignature(0, readies(net, 0)[0].pubnonces))
    (send, *_) = roast.receive_presignature(Presignature(1, readies(net, 1)[0].pubnonces))
    r = send.request
    session = SignSession("r1", r.sid, tuple(r.signer_ids), r.signer_session().aggnonces)
    for i in r.signer_ids:
        await net[i].signing.handlers[Kind.SIGN_SESSION](net.ids[0], message(session.KIND, session.body()))
    return roast, session


async def test_a_session_is_signed_with_the_journalled_nonce_used_first(tmp_path: Path) -> None:
    net = Net(tmp_path)
    roast, _ = await sign_session(net)
    for i in (0, 1):
        assert nonce_rows(net[i].store, "r1") == ["used", "issued"]  # used; the next presignature issued
        (share,) = shares(net, i)
        roast.receive_reply(SignerReply(share.sid, i, share.psigs, share.next))
    assert roast.result is not None and roast.result.ok and roast.result.malicious == frozenset()
    (task,) = roast.tasks
    assert schnorr_verify(task.msg, net.keys.output_key((0, 0)), roast.result.signatures[0])
    await net.close()


async def test_a_session_is_signed_once_whatever_is_replayed(tmp_path: Path) -> None:
    net = Net(tmp_path)
    _, session = await sign_session(net)
    for sender in (0, 0, 2):  # the coordinator again, twice; another member
        await net[1].signing.handlers[Kind.SIGN_SESSION](net.ids[sender], message(session.KIND, session.body()))
    assert len(shares(net, 1)) == 1 and nonce_rows(net[1].store, "r1") == ["used", "issued"]
    await net.close()


@pytest.mark.parametrize(
    "change",
    [
        lambda s: {**s, "signers": s["signers"][:1]},  # fewer signers than presignatures
        lambda s: {**s, "aggnonces": s["aggnonces"] * 2},  # two aggregate nonces for its one task
        lambda s: {**s, "signers": [0, 2]},  # it is not in the session
        lambda s: {**s, "aggnonces": "02" + "00" * 65},  # not a point
        lambda s: {**s, "sid": -1},
    ],
)
async def test_a_bad_session_leaves_the_journal_untouched(tmp_path: Path, change: Callable[[dict], dict]) -> None:
    net = Net(tmp_path)
    await ask(net, 0)
    await ask(net, 1)
    pubnonces = [readies(net, 0)[0].pubnonces, readies(net, 1)[0].pubnonces]
    aggnonces = SessionRequest(0, (0, 1), tuple(pubnonces)).signer_session().aggnonces
    good = SignSession("r1", 0, (0, 1), aggnonces).body()
    await net[1].signing.handlers[Kind.SIGN_SESSION](net.ids[0], message(Kind.SIGN_SESSION, change(good)))
    assert shares(net, 1) == [] and nonce_rows(net[1].store, "r1") == ["issued"]
    await net.close()


async def test_done_from_the_coordinator_discards_the_outstanding_nonce(tmp_path: Path) -> None:
    net = Net(tmp_path)
    await sign_session(net)
    done = SignDone("r1", "broadcast", "ab" * 32)
    net[1].signing.handlers[Kind.SIGN_DONE](net.ids[2], message(done.KIND, done.body()))  # not its coordinator
    assert nonce_rows(net[1].store, "r1") == ["used", "issued"]
    net[1].signing.handlers[Kind.SIGN_DONE](net.ids[0], message(done.KIND, done.body()))
    assert nonce_rows(net[1].store, "r1") == ["used", "discarded"]
    record = net[1].store.requests("r1")[0]
    assert record["status"] == "broadcast" and record["outcome"] == {"txid": "ab" * 32}
    await net.close()


async def test_after_a_restart_no_journalled_nonce_signs_again(tmp_path: Path) -> None:
    net = Net(tmp_path)
    _, first = await sign_session(net)  # member 1 used one nonce and holds its next presignature
    path = net[1].store.path
    net[1].store.close()
    store = Store(path)  # the member restarts: what `Member.start` does first
    assert store.discard_issued_nonces() == 1
    net.nodes[net.ids[1]] = net.node(net.ids[1], store)
    before = len(net.sent)
    await net[1].signing.handlers[Kind.SIGN_SESSION](net.ids[0], message(first.KIND, first.body()))
    await ask(net, 1)  # the same request, delivered again after the restart
    assert net.sent[before:] == [] and nonce_rows(store, "r1") == ["used", "discarded"]
    (share,) = shares(net, 1)
    for pubnonces in (readies(net, 1)[0].pubnonces, share.next):  # neither the used nor the discarded one can sign
        with pytest.raises(NonceReuseError):
            store.use_nonce(b"".join(pubnonces))
    await net.close()
