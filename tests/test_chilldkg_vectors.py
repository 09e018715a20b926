"""Every valid and every error case of the published ChillDKG vector files (../shared/vectors/chilldkg/)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from vectorfiles import load_json

from frostfed.frost import chilldkg
from frostfed.frost.chilldkg import SessionParams

DIR = "chilldkg/"


def b(h: str | None) -> bytes | None:
    return None if h is None else bytes.fromhex(h)


def params_of(p: dict[str, Any]) -> SessionParams:
    return SessionParams([bytes.fromhex(h) for h in p["hostpubkeys"]], p["t"])


def cases(filename: str) -> list[Any]:
    """(group, case, is_error) for every case, grouped files and flat files alike."""
    data = load_json(DIR + filename)
    groups = data.get("testGroups", [data])
    out = []
    for gi, group in enumerate(groups):
        for case in group.get("validTestCases", []):
            out.append(pytest.param(group, case, False, id=f"g{gi}-valid-{case['tcId']}"))
        for case in group.get("errorTestCases", []):
            out.append(pytest.param(group, case, True, id=f"g{gi}-error-{case['tcId']}"))
    assert out, f"{filename} holds no test cases"
    return out


def assert_raises_expected(expected: dict[str, Any], call: Callable[[], Any]) -> BaseException:
    with pytest.raises(Exception) as excinfo:
        call()
    err = excinfo.value
    if expected["type"] == "ValueError":
        assert isinstance(err, ValueError), repr(err)
    else:
        assert type(err).__name__ == expected["type"], repr(err)
    if "participantId" in expected:
        assert err.participant_id == expected["participantId"]
    if "participantId1" in expected:
        assert (err.participant_id1, err.participant_id2) == (
            expected["participantId1"],
            expected["participantId2"],
        )
    if "message" in expected:
        assert expected["message"] in str(err)
    return err


def assert_output(out: chilldkg.DKGOutput, expected: dict[str, Any]) -> None:
    assert out.secshare == b(expected["secshare"])
    assert out.thresh_pk == bytes.fromhex(expected["threshPk"])
    assert out.pubshares == [bytes.fromhex(h) for h in expected["pubshares"]]


@pytest.mark.parametrize(("group", "case", "is_error"), cases("hostpubkey_gen_vectors.json"))
def test_hostpubkey_gen(group: Any, case: Any, is_error: bool) -> None:
    call = lambda: chilldkg.hostpubkey_gen(bytes.fromhex(case["hostseckey"]))  # noqa: E731
    if is_error:
        assert_raises_expected(case["expectedError"], call)
    else:
        assert call() == bytes.fromhex(case["expectedHostpubkey"])


@pytest.mark.parametrize(("group", "case", "is_error"), cases("params_hash_vectors.json"))
def test_params_hash(group: Any, case: Any, is_error: bool) -> None:
    call = lambda: chilldkg.params_hash(params_of(case["params"]))  # noqa: E731
    if is_error:
        assert_raises_expected(case["expectedError"], call)
    else:
        assert call() == bytes.fromhex(case["expectedParamsHash"])


@pytest.mark.parametrize(("group", "case", "is_error"), cases("participant_step1_vectors.json"))
def test_participant_step1(group: Any, case: Any, is_error: bool) -> None:
    def call() -> bytes:
        _, pmsg1 = chilldkg.participant_step1(
            bytes.fromhex(case["hostseckey"]), params_of(case["params"]), bytes.fromhex(case["random"])
        )
        return pmsg1

    if is_error:
        assert_raises_expected(case["expectedError"], call)
    else:
        assert call() == bytes.fromhex(case["expectedPmsg1"])


def step1_of(group: Any) -> chilldkg.ParticipantState1:
    state1, pmsg1 = chilldkg.participant_step1(
        bytes.fromhex(group["hostseckey"]), params_of(group["params"]), bytes.fromhex(group["random"])
    )
    assert pmsg1 == bytes.fromhex(group["pmsg1"])
    return state1


@pytest.mark.parametrize(("group", "case", "is_error"), cases("participant_step2_vectors.json"))
def test_participant_step2(group: Any, case: Any, is_error: bool) -> None:
    state1 = step1_of(group)
    hostseckey = bytes.fromhex(case.get("hostseckey", group["hostseckey"]))
    aux_rand = bytes.fromhex(case.get("auxRand", group["auxRand"]))

    def call() -> bytes:
        _, pmsg2 = chilldkg.participant_step2(hostseckey, state1, bytes.fromhex(case["cmsg1"]), aux_rand)
        return pmsg2

    if is_error:
        assert_raises_expected(case["expectedError"], call)
    else:
        assert call() == bytes.fromhex(case["expectedPmsg2"])


@pytest.mark.parametrize(("group", "case", "is_error"), cases("participant_finalize_vectors.json"))
def test_participant_finalize(group: Any, case: Any, is_error: bool) -> None:
    state1 = step1_of(group)
    state2, pmsg2 = chilldkg.participant_step2(
        bytes.fromhex(group["hostseckey"]),
        state1,
        bytes.fromhex(group["cmsg1"]),
        bytes.fromhex(group["auxRand"]),
    )
    assert pmsg2 == bytes.fromhex(group["pmsg2"])
    call = lambda: chilldkg.participant_finalize(state2, bytes.fromhex(case["cmsg2"]))  # noqa: E731
    if is_error:
        assert_raises_expected(case["expectedError"], call)
    else:
        out, recovery_data = call()
        assert_output(out, case["expectedOutput"]["dkgOutput"])
        assert recovery_data == bytes.fromhex(case["expectedOutput"]["recoveryData"])


@pytest.mark.parametrize(("group", "case", "is_error"), cases("participant_investigate_vectors.json"))
def test_participant_investigate(group: Any, case: Any, is_error: bool) -> None:
    assert is_error, "participant_investigate never returns"
    state1 = step1_of(group)
    cmsg1 = bytes.fromhex(group["cmsg1Pool"][case["cmsg1Index"]])
    with pytest.raises(chilldkg.UnknownFaultyParticipantOrCoordinatorError) as excinfo:
        chilldkg.participant_step2(bytes.fromhex(group["hostseckey"]), state1, cmsg1, bytes.fromhex(group["auxRand"]))
    error = excinfo.value
    assert_raises_expected(
        case["expectedError"], lambda: chilldkg.participant_investigate(error, bytes.fromhex(case["cinvMsg"]))
    )


@pytest.mark.parametrize(("group", "case", "is_error"), cases("coordinator_step1_vectors.json"))
def test_coordinator_step1(group: Any, case: Any, is_error: bool) -> None:
    pmsgs1 = [bytes.fromhex(group["pmsg1Pool"][i]) for i in case["pmsg1Indices"]]

    def call() -> bytes:
        _, cmsg1 = chilldkg.coordinator_step1(pmsgs1, params_of(case["params"]))
        return cmsg1

    if is_error:
        assert_raises_expected(case["expectedError"], call)
    else:
        assert call() == bytes.fromhex(case["expectedCmsg1"])


@pytest.mark.parametrize(("group", "case", "is_error"), cases("coordinator_finalize_vectors.json"))
def test_coordinator_finalize(group: Any, case: Any, is_error: bool) -> None:
    params = params_of(group["params"])
    cstate, cmsg1 = chilldkg.coordinator_step1([bytes.fromhex(h) for h in group["pmsgs1"]], params)
    assert cmsg1 == bytes.fromhex(group["cmsg1"])
    pmsgs2 = [bytes.fromhex(group["pmsg2Pool"][i]) for i in case["pmsg2Indices"]]
    call = lambda: chilldkg.coordinator_finalize(cstate, pmsgs2)  # noqa: E731
    if is_error:
        assert_raises_expected(case["expectedError"], call)
    else:
        cmsg2, out, recovery_data = call()
        expected = case["expectedOutput"]
        assert cmsg2 == bytes.fromhex(expected["cmsg2"])
        assert_output(out, expected["dkgOutput"])
        assert recovery_data == bytes.fromhex(expected["recoveryData"])


@pytest.mark.parametrize(("group", "case", "is_error"), cases("coordinator_investigate_vectors.json"))
def test_coordinator_investigate(group: Any, case: Any, is_error: bool) -> None:
    assert not is_error
    cinvs = chilldkg.coordinator_investigate([bytes.fromhex(h) for h in group["pmsgs1"]], params_of(group["params"]))
    assert cinvs == [bytes.fromhex(h) for h in case["expectedCinvMsgs"]]


@pytest.mark.parametrize(("group", "case", "is_error"), cases("recover_vectors.json"))
def test_recover(group: Any, case: Any, is_error: bool) -> None:
    recovery_data = bytes.fromhex(case["recoveryData"])
    hostseckey = b(case["hostseckey"])

    def call() -> tuple[chilldkg.DKGOutput, SessionParams]:
        if hostseckey is None:
            return chilldkg.coordinator_recover(recovery_data)
        return chilldkg.participant_recover(hostseckey, recovery_data)

    if is_error:
        assert_raises_expected(case["expectedError"], call)
    else:
        out, params = call()
        assert_output(out, case["expectedOutput"]["dkgOutput"])
        assert params == params_of(case["expectedOutput"]["params"])
