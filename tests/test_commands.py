"""The control commands and the daemon's control socket: bad calls get JSON-RPC errors naming the problem,
and nothing a client sends stops the server from answering the next one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from coincurve import PrivateKey

from frostfed.federation import commands
from frostfed.federation.commands import COMMANDS, RpcError, dispatch
from frostfed.plugin import rpcclient
from frostfed.plugin.rpcserver import MAX_LINE, PARSE_ERROR, RpcServer, SocketInUse

ADDR = "bcrt1p" + "q" * 58
OUTPUTS = [{"address": ADDR, "sats": 50_000}]


class ScriptedService:
    """The Service protocol with canned answers; records every call so tests see what reached it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    async def status(self) -> dict[str, Any]:
        self.calls.append(("status", ()))
        return {"state": "active"}

    async def newaddr(self) -> dict[str, Any]:
        self.calls.append(("newaddr", ()))
        return {"address": ADDR}

    async def descriptor(self) -> dict[str, Any]:
        self.calls.append(("descriptor", ()))
        return {"descriptor": "tr(...)"}

    async def payout(self, outputs: list[dict[str, Any]], feerate: float | None) -> dict[str, Any]:
        self.calls.append(("payout", (outputs, feerate)))
        return {"txid": "00" * 32, "feerate": feerate}

    async def bumpfee(self, id: str, feerate: float | None) -> dict[str, Any]:
        self.calls.append(("bumpfee", (id, feerate)))
        return {"replaces": id}

    async def sign(self, psbt: str) -> dict[str, Any]:
        self.calls.append(("sign", (psbt,)))
        if psbt == "slow":
            await asyncio.sleep(0.5)
        return {"psbt": psbt}

    async def members(self) -> dict[str, Any]:
        self.calls.append(("members", ()))
        return {"members": []}

    async def join(self, id: str, address: str, bond_sats: int | None, lock_blocks: int | None) -> dict[str, Any]:
        self.calls.append(("join", (id, address, bond_sats, lock_blocks)))
        return {"epoch": 1}

    async def leave(self) -> dict[str, Any]:
        self.calls.append(("leave", ()))
        return {"epoch": 1}

    async def expel(self, member: str) -> dict[str, Any]:
        self.calls.append(("expel", (member,)))
        return {"epoch": 1}

    async def admit(self, id: str, min_bond_sats: int | None) -> dict[str, Any]:
        self.calls.append(("admit", (id, min_bond_sats)))
        return {"admitted": id}

    async def approve_expel(self, member: str) -> dict[str, Any]:
        self.calls.append(("approve_expel", (member,)))
        return {"expel_approved": member}

    async def revoke(self, member: str) -> dict[str, Any]:
        self.calls.append(("revoke", (member,)))
        return {"revoked": member}

    async def abort_change(self, reason: str | None) -> dict[str, Any]:
        self.calls.append(("abort_change", (reason,)))
        return {"aborted": {"epoch": 1}}

    async def epochs(self) -> dict[str, Any]:
        self.calls.append(("epochs", ()))
        return {"epochs": []}

    async def bond_claim(self, address: str) -> dict[str, Any]:
        self.calls.append(("bond_claim", (address,)))
        return {"txid": "00" * 32}

    async def ledger_credit(self, address: str, sats: int, key: str) -> dict[str, Any]:
        self.calls.append(("ledger_credit", (address, sats, key)))
        return {"credited": True}

    async def ledger(self, address: str | None) -> dict[str, Any]:
        self.calls.append(("ledger", (address,)))
        return {"debts": []}

    async def ledger_history(self, address: str | None) -> dict[str, Any]:
        self.calls.append(("ledger_history", (address,)))
        return {"credits": [], "payouts": []}

    async def requests(self, request_id: str | None) -> dict[str, Any]:
        self.calls.append(("requests", (request_id,)))
        if request_id == "boom":
            raise KeyError("boom")
        if request_id == "missing":
            raise RpcError(commands.NOT_FOUND, "no request with id missing")
        if request_id == "unjson":
            return {"value": object()}
        return {"requests": [], "id": request_id}


# binding


NO_PARAMS = ["frost-status", "frost-newaddr", "frost-descriptor", "frost-members", "frost-leave", "frost-epochs"]
MEMBER = PrivateKey(b"\x07" * 32).public_key.format().hex()


def test_every_command_is_covered_here() -> None:
    with_params = {
        "frost-payout",
        "frost-bumpfee",
        "frost-sign",
        "frost-requests",
        "frost-join",
        "frost-expel",
        "frost-bond-claim",
        "frost-admit",
        "frost-approve-expel",
        "frost-revoke",
        "frost-abort-change",
    }
    with_params |= {"frost-ledger-credit", "frost-ledger", "frost-ledger-history"}
    assert set(COMMANDS) == {*NO_PARAMS, *with_params}


@pytest.mark.parametrize(
    ("name", "params", "call"),
    [
        ("frost-join", [MEMBER, "10.0.0.1:9736"], ("join", (MEMBER, "10.0.0.1:9736", None, None))),
        (
            "frost-join",
            {"id": MEMBER, "address": "h:1", "bond_sats": "70000", "lock_blocks": 144},
            ("join", (MEMBER, "h:1", 70000, 144)),
        ),
        ("frost-expel", [MEMBER], ("expel", (MEMBER,))),
        ("frost-abort-change", [], ("abort_change", (None,))),
        (
            "frost-abort-change",
            ["the named transaction never confirms"],
            ("abort_change", ("the named transaction never confirms",)),
        ),
        ("frost-abort-change", {"reason": "stuck"}, ("abort_change", ("stuck",))),
        ("frost-expel", {"member": MEMBER}, ("expel", (MEMBER,))),
        ("frost-bond-claim", [ADDR], ("bond_claim", (ADDR,))),
        ("frost-expel", [MEMBER.upper()], ("expel", (MEMBER,))),  # ids are compared in lowercase
        ("frost-admit", [MEMBER], ("admit", (MEMBER, None))),
        ("frost-admit", {"id": MEMBER, "min_bond_sats": "250000"}, ("admit", (MEMBER, 250_000))),
        ("frost-approve-expel", [MEMBER.upper()], ("approve_expel", (MEMBER,))),
        ("frost-revoke", {"member": MEMBER}, ("revoke", (MEMBER,))),
        ("frost-ledger-credit", [ADDR, "1000", 42], ("ledger_credit", (ADDR, 1000, "42"))),
        ("frost-ledger-credit", {"address": ADDR, "sats": 5, "key": "w:1"}, ("ledger_credit", (ADDR, 5, "w:1"))),
        ("frost-ledger", [], ("ledger", (None,))),
        ("frost-ledger", [ADDR], ("ledger", (ADDR,))),
        ("frost-ledger-history", {"address": ADDR}, ("ledger_history", (ADDR,))),
        ("frost-bumpfee", ["a1b2"], ("bumpfee", ("a1b2", None))),
        ("frost-bumpfee", ["a1b2", "7.5"], ("bumpfee", ("a1b2", 7.5))),
        ("frost-bumpfee", {"id": "a1b2", "feerate": 12}, ("bumpfee", ("a1b2", 12.0))),
    ],
)
async def test_membership_commands_bind(name: str, params: Any, call: tuple[str, tuple[Any, ...]]) -> None:
    svc = ScriptedService()
    await dispatch(svc, name, params)
    assert svc.calls == [call]


@pytest.mark.parametrize("name", NO_PARAMS)
@pytest.mark.parametrize("params", [None, [], {}])
async def test_commands_without_parameters(name: str, params: Any) -> None:
    svc = ScriptedService()
    result = await dispatch(svc, name, params)
    method = name.removeprefix("frost-")
    assert svc.calls == [(method, ())]
    assert result == await getattr(ScriptedService(), method)()


@pytest.mark.parametrize("name", NO_PARAMS)
async def test_commands_without_parameters_refuse_extra_ones(name: str) -> None:
    svc = ScriptedService()
    with pytest.raises(RpcError) as e:
        await dispatch(svc, name, [1])
    assert e.value.code == commands.INVALID_PARAMS
    with pytest.raises(RpcError) as e:
        await dispatch(svc, name, {"verbose": True})
    assert e.value.code == commands.INVALID_PARAMS and "verbose" in e.value.message
    assert svc.calls == []


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ([OUTPUTS], (OUTPUTS, None)),
        ([OUTPUTS, 5], (OUTPUTS, 5.0)),
        ([json.dumps(OUTPUTS), "2.5"], (OUTPUTS, 2.5)),
        ({"outputs": OUTPUTS}, (OUTPUTS, None)),
        ({"outputs": OUTPUTS, "feerate": 12}, (OUTPUTS, 12.0)),
        ({"feerate": 1, "outputs": json.dumps(OUTPUTS)}, (OUTPUTS, 1.0)),
        ([OUTPUTS, None], (OUTPUTS, None)),
    ],
)
async def test_payout_binds_positional_and_keyword(params: Any, expected: tuple[Any, Any]) -> None:
    svc = ScriptedService()
    await dispatch(svc, "frost-payout", params)
    assert svc.calls == [("payout", expected)]
    assert isinstance(svc.calls[0][1][1], float | None)


@pytest.mark.parametrize("params", [["cHNidP8B"], {"psbt": "cHNidP8B"}])
async def test_sign_binds_positional_and_keyword(params: Any) -> None:
    svc = ScriptedService()
    assert await dispatch(svc, "frost-sign", params) == {"psbt": "cHNidP8B"}
    assert svc.calls == [("sign", ("cHNidP8B",))]


@pytest.mark.parametrize(("params", "rid"), [([], None), (None, None), (["abc"], "abc"), ({"id": "abc"}, "abc")])
async def test_requests_binds_an_optional_id(params: Any, rid: str | None) -> None:
    svc = ScriptedService()
    await dispatch(svc, "frost-requests", params)
    assert svc.calls == [("requests", (rid,))]


BAD_ARGS = [
    ("frost-payout", {}, "outputs"),
    ("frost-payout", [None], "outputs"),
    ("frost-payout", [5], "outputs"),
    ("frost-payout", ["not json"], "outputs"),
    ("frost-payout", ["[" * 100_000], "outputs"),
    ("frost-payout", [[]], "outputs"),
    ("frost-payout", [{}], "outputs"),
    ("frost-payout", [[ADDR]], "outputs[0]"),
    ("frost-payout", [[{"address": ADDR}]], "outputs[0]"),
    ("frost-payout", [[{"address": ADDR, "sats": 1, "memo": "x"}]], "outputs[0]"),
    ("frost-payout", [[{"address": "short", "sats": 1}]], "outputs[0].address"),
    ("frost-payout", [[{"address": 5, "sats": 1}]], "outputs[0].address"),
    ("frost-payout", [[*OUTPUTS, {"address": ADDR, "sats": 0}]], "outputs[1].sats"),
    ("frost-payout", [[{"address": ADDR, "sats": -5}]], "outputs[0].sats"),
    ("frost-payout", [[{"address": ADDR, "sats": 1.5}]], "outputs[0].sats"),
    ("frost-payout", [[{"address": ADDR, "sats": True}]], "outputs[0].sats"),
    ("frost-payout", [[{"address": ADDR, "sats": "100"}]], "outputs[0].sats"),
    ("frost-payout", [[{"address": ADDR, "sats": 21_000_000 * 10**8 + 1}]], "outputs[0].sats"),
    ("frost-payout", [OUTPUTS * 1001], "outputs"),
    ("frost-payout", [OUTPUTS, "fast"], "feerate"),
    ("frost-payout", [OUTPUTS, 0.5], "feerate"),
    ("frost-payout", [OUTPUTS, 10_001], "feerate"),
    ("frost-payout", [OUTPUTS, True], "feerate"),
    ("frost-payout", [OUTPUTS, [5]], "feerate"),
    ("frost-payout", [OUTPUTS, "nan"], "feerate"),
    ("frost-payout", [OUTPUTS, "inf"], "feerate"),
    ("frost-payout", [OUTPUTS, float("nan")], "feerate"),
    ("frost-payout", [OUTPUTS, 5, 6], "at most 2"),
    ("frost-payout", {"outputs": OUTPUTS, "fee": 5}, "fee"),
    ("frost-ledger-credit", [ADDR, 1000], "key"),
    ("frost-ledger-credit", [ADDR, 0, "k"], "sats"),
    ("frost-ledger-credit", [ADDR, 1.5, "k"], "sats"),
    ("frost-ledger-credit", [ADDR, 5, "k" * 129], "key"),
    ("frost-ledger-credit", [ADDR, 5, "a b"], "key"),
    ("frost-ledger-credit", ["short", 5, "k"], "address"),
    ("frost-ledger", [5], "address"),
    ("frost-sign", [], "psbt"),
    ("frost-sign", [""], "psbt"),
    ("frost-sign", [5], "psbt"),
    ("frost-sign", [["cHNidP8B"]], "psbt"),
    ("frost-sign", {"pbst": "x"}, "pbst"),
    ("frost-requests", [""], "id"),
    ("frost-requests", [5], "id"),
    ("frost-requests", ["x" * 201], "id"),
    ("frost-requests", [{"id": "a"}], "id"),
    ("frost-requests", "abc", "params"),
    ("frost-status", 5, "params"),
    ("frost-admit", [], "id"),
    ("frost-admit", ["04" + "11" * 32], "id"),
    ("frost-admit", [MEMBER, 0], "min_bond_sats"),
    ("frost-admit", [MEMBER, "lots"], "min_bond_sats"),
    ("frost-approve-expel", [], "member"),
    ("frost-approve-expel", ["abc"], "member"),
    ("frost-revoke", [MEMBER, 5], "at most 1"),
    ("frost-join", [MEMBER], "address"),
    ("frost-join", ["04" + "11" * 32, "h:1"], "id"),
    ("frost-join", ["02" + "zz" * 32, "h:1"], "id"),
    ("frost-join", [MEMBER, "nohostport"], "address"),
    ("frost-join", [MEMBER, "h:70000"], "address"),
    ("frost-join", [MEMBER, "h:1", 0], "bond_sats"),
    ("frost-join", [MEMBER, "h:1", 1000, -1], "lock_blocks"),
    ("frost-join", ["02" + "11" * 32, "h:1"], "id"),  # x not on the curve
    ("frost-join", [MEMBER[:-2] + " 1", "h:1"], "id"),
    ("frost-join", [MEMBER, "h:٨٠"], "address"),
    ("frost-join", [MEMBER, "a b:80"], "address"),
    ("frost-join", [MEMBER, "h: 80"], "address"),
    ("frost-join", [MEMBER, "h:1", "²"], "bond_sats"),
    ("frost-join", [MEMBER, "h:1", "9" * 5000], "bond_sats"),
    ("frost-join", [MEMBER, "h:1", 1.5], "bond_sats"),
    ("frost-join", [MEMBER, "h:1", 1000, True], "lock_blocks"),
    ("frost-join", {"id": MEMBER, "address": "h:1", "bond": 5}, "bond"),
    ("frost-bond-claim", [], "address"),
    ("frost-bond-claim", ["short"], "address"),
    ("frost-bond-claim", [5], "address"),
    ("frost-expel", [], "member"),
    ("frost-expel", ["abc"], "member"),
    ("frost-bond-claim", [], "address"),
    ("frost-bond-claim", ["x"], "address"),
    ("frost-leave", [1], "at most 0"),
    ("frost-abort-change", [""], "reason"),
    ("frost-abort-change", [5], "reason"),
    ("frost-abort-change", ["x" * 201], "reason"),
    ("frost-abort-change", ["why", "more"], "at most 1"),
    ("frost-abort-change", {"epoch": 1}, "epoch"),
]


@pytest.mark.parametrize(("name", "params", "named"), BAD_ARGS)
async def test_bad_arguments_are_invalid_params_naming_the_parameter(name: str, params: Any, named: str) -> None:
    svc = ScriptedService()
    with pytest.raises(RpcError) as e:
        await dispatch(svc, name, params)
    assert e.value.code == commands.INVALID_PARAMS
    assert named in e.value.message
    assert svc.calls == []


async def test_unknown_command() -> None:
    with pytest.raises(RpcError) as e:
        await dispatch(ScriptedService(), "frost-steal", [])
    assert e.value.code == commands.METHOD_NOT_FOUND and "frost-steal" in e.value.message


async def test_an_unexpected_exception_becomes_an_internal_error_with_a_plain_message() -> None:
    with pytest.raises(RpcError) as e:
        await dispatch(ScriptedService(), "frost-requests", ["boom"])
    assert e.value.code == commands.INTERNAL_ERROR
    assert e.value.message == "frost-requests failed: KeyError: 'boom'"
    assert e.value.to_json() == {"code": commands.INTERNAL_ERROR, "message": e.value.message}


async def test_an_rpc_error_from_the_service_passes_unchanged() -> None:
    with pytest.raises(RpcError) as e:
        await dispatch(ScriptedService(), "frost-requests", ["missing"])
    assert (e.value.code, e.value.message) == (commands.NOT_FOUND, "no request with id missing")


def test_usage_lists_optional_parameters_in_brackets() -> None:
    assert COMMANDS["frost-payout"].usage == "outputs [feerate]"
    assert COMMANDS["frost-sign"].usage == "psbt"
    assert COMMANDS["frost-requests"].usage == "[id] [limit] [tx]"
    assert COMMANDS["frost-status"].usage == ""


# the control socket


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="ff", dir="/tmp"))  # unix socket paths are limited to ~100 bytes
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
async def server(sock_dir: Path) -> AsyncIterator[tuple[RpcServer, ScriptedService]]:
    svc = ScriptedService()
    srv = RpcServer(svc, sock_dir / "rpc")
    await srv.start()
    yield srv, svc
    await srv.close()


async def exchange(path: Path, data: bytes, replies: int = 1) -> list[dict[str, Any]]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(data)
        await writer.drain()
        return [json.loads(await asyncio.wait_for(reader.readline(), 10)) for _ in range(replies)]
    finally:
        writer.close()


def request(method: str, params: Any = None, rid: Any = 1) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).encode() + b"\n"


async def still_answers(srv: RpcServer) -> None:
    result = await asyncio.to_thread(rpcclient.call, srv.path, "frost-status", [], 10)
    assert result == {"state": "active"}


async def test_the_socket_is_owner_only_and_leaves_no_staging_directory(
    server: tuple[RpcServer, ScriptedService],
) -> None:
    srv, _ = server
    assert stat.S_ISSOCK(srv.path.stat().st_mode)
    assert srv.path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in srv.path.parent.iterdir()) == ["rpc"]


async def test_closing_hangs_up_on_connected_clients(sock_dir: Path) -> None:
    srv = RpcServer(ScriptedService(), sock_dir / "rpc")
    await srv.start()
    reader, writer = await asyncio.open_unix_connection(str(srv.path))
    writer.write(request("frost-status", [], 1))
    assert json.loads(await reader.readline())["result"] == {"state": "active"}
    await asyncio.wait_for(srv.close(), 30)  # an idle client does not keep the daemon from stopping
    assert await asyncio.wait_for(reader.read(), 30) == b""
    writer.close()
    assert not srv.path.exists()


async def test_client_calls_through_the_socket(server: tuple[RpcServer, ScriptedService]) -> None:
    srv, svc = server
    assert await asyncio.to_thread(rpcclient.call, srv.path, "frost-payout", {"outputs": OUTPUTS}, 10) == {
        "txid": "00" * 32,
        "feerate": None,
    }
    with pytest.raises(rpcclient.RpcCallError) as e:
        await asyncio.to_thread(rpcclient.call, srv.path, "frost-sign", [5], 10)
    assert e.value.code == commands.INVALID_PARAMS and "psbt" in e.value.message
    assert svc.calls == [("payout", (OUTPUTS, None))]


@pytest.mark.parametrize(
    ("line", "code", "rid"),
    [
        (b"\x00\xff\xfe garbage\n", PARSE_ERROR, None),
        (b"{not json\n", PARSE_ERROR, None),
        (b"[" * 200_000 + b"\n", PARSE_ERROR, None),
        (b"NaN-ish\n", PARSE_ERROR, None),
        (b'[{"jsonrpc":"2.0","id":1,"method":"frost-status"}]\n', commands.INVALID_REQUEST, None),
        (b"42\n", commands.INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","id":7}\n', commands.INVALID_REQUEST, 7),
        (b'{"jsonrpc":"2.0","id":7,"method":5}\n', commands.INVALID_REQUEST, 7),
        (request("frost-status", "x", 8), commands.INVALID_PARAMS, 8),
        (request("frost-status", 3, 8), commands.INVALID_PARAMS, 8),
        (request("frost-sign", [7], "s"), commands.INVALID_PARAMS, "s"),
        (request("frost-payout", {"outputs": "[[[["}, 9), commands.INVALID_PARAMS, 9),
        (request("no-such-command", [], 10), commands.METHOD_NOT_FOUND, 10),
        (request("frost-requests", ["boom"], 11), commands.INTERNAL_ERROR, 11),
        (request("frost-requests", ["unjson"], 12), commands.INTERNAL_ERROR, 12),
    ],
)
async def test_bad_requests_get_json_rpc_errors_and_the_connection_stays_usable(
    server: tuple[RpcServer, ScriptedService], line: bytes, code: int, rid: Any
) -> None:
    srv, _ = server
    bad, good = await exchange(srv.path, line + request("frost-status", [], 99), replies=2)
    assert bad["jsonrpc"] == "2.0" and bad["id"] == rid
    assert bad["error"]["code"] == code
    assert isinstance(bad["error"]["message"], str) and "Traceback" not in bad["error"]["message"]
    assert good == {"jsonrpc": "2.0", "id": 99, "result": {"state": "active"}}


async def test_wrong_param_types_name_the_parameter(server: tuple[RpcServer, ScriptedService]) -> None:
    srv, svc = server
    (reply,) = await exchange(srv.path, request("frost-payout", [OUTPUTS, "fast"], 3))
    assert reply["error"]["code"] == commands.INVALID_PARAMS
    assert "feerate" in reply["error"]["message"]
    assert svc.calls == []


async def test_many_requests_on_one_connection_are_answered_in_order(
    server: tuple[RpcServer, ScriptedService],
) -> None:
    srv, svc = server
    lines = b"".join(request("frost-requests", [f"r{i}"], i) for i in range(200))
    replies = await exchange(srv.path, lines + b"\n\n", replies=200)
    assert [r["id"] for r in replies] == list(range(200))
    assert [r["result"]["id"] for r in replies] == [f"r{i}" for i in range(200)]
    assert len(svc.calls) == 200


async def test_an_oversized_line_closes_that_connection_only(server: tuple[RpcServer, ScriptedService]) -> None:
    srv, svc = server
    reader, writer = await asyncio.open_unix_connection(str(srv.path))

    async def flood() -> None:
        with contextlib.suppress(ConnectionError):
            writer.write(b"x" * (MAX_LINE + 1024))
            await writer.drain()

    sender = asyncio.create_task(flood())
    answer = await asyncio.wait_for(reader.read(), 30)  # read to EOF: the server hangs up
    await sender
    writer.close()
    assert json.loads(answer)["error"]["code"] == PARSE_ERROR  # the server says why before it hangs up
    assert svc.calls == []
    await still_answers(srv)


async def test_a_client_that_disconnects_mid_line_runs_nothing(server: tuple[RpcServer, ScriptedService]) -> None:
    srv, svc = server
    for _ in range(5):
        _, writer = await asyncio.open_unix_connection(str(srv.path))
        writer.write(b'{"jsonrpc":"2.0","id":1,"method":"frost-payout","params":{"outputs":')
        await writer.drain()
        writer.close()
        await writer.wait_closed()
    await still_answers(srv)
    assert svc.calls == [("status", ())]


async def test_a_slow_command_does_not_block_other_clients(server: tuple[RpcServer, ScriptedService]) -> None:
    srv, svc = server
    reader, writer = await asyncio.open_unix_connection(str(srv.path))
    writer.write(request("frost-sign", ["slow"], 1))
    await writer.drain()
    await still_answers(srv)  # answered while frost-sign is still sleeping
    assert ("sign", ("slow",)) in svc.calls
    reply = json.loads(await asyncio.wait_for(reader.readline(), 10))
    assert reply["result"] == {"psbt": "slow"}
    writer.close()


async def test_a_second_server_on_a_live_socket_is_refused(server: tuple[RpcServer, ScriptedService]) -> None:
    srv, _ = server
    with pytest.raises(SocketInUse):
        await RpcServer(ScriptedService(), srv.path).start()
    await still_answers(srv)


async def test_a_stale_socket_file_is_taken_over(sock_dir: Path) -> None:
    path = sock_dir / "rpc"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # bound, never listening: what a killed daemon leaves behind
    stale.close()
    srv = RpcServer(ScriptedService(), path)
    await srv.start()
    try:
        await still_answers(srv)
    finally:
        await srv.close()
    assert not path.exists()


# the client's view of a broken daemon


def one_shot_daemon(path: Path, reply: bytes) -> socket.socket:
    """A socket that answers one connection with `reply`, then hangs up."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(1)
    return s


def serve_once(s: socket.socket, reply: bytes) -> None:
    conn, _ = s.accept()
    with conn:
        conn.recv(1 << 16)
        conn.sendall(reply)


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (b"not json\n", PARSE_ERROR),
        (b"[1]\n", rpcclient.INVALID_REPLY),
        (b'{"jsonrpc":"2.0","id":1}\n', rpcclient.INVALID_REPLY),
        (b'{"jsonrpc":"2.0","id":1,"error":"bad"}\n', rpcclient.INVALID_REPLY),
        (b'{"jsonrpc":"2.0","id":1,"error":{"code":"x","message":"m"}}\n', rpcclient.INVALID_REPLY),
        (b'{"jsonrpc":"2.0","id":1,"error":{"code":1405,"message":"m"}}\n', 1405),
    ],
)
async def test_the_client_turns_malformed_replies_into_rpc_call_errors(sock_dir: Path, reply: bytes, code: int) -> None:
    path = sock_dir / "rpc"
    s = one_shot_daemon(path, reply)
    try:
        server = asyncio.create_task(asyncio.to_thread(serve_once, s, reply))
        with pytest.raises(rpcclient.RpcCallError) as e:
            await asyncio.to_thread(rpcclient.call, path, "frost-status", None, 10)
        assert e.value.code == code
        await server
    finally:
        s.close()


async def test_the_client_reports_a_daemon_that_hangs_up(sock_dir: Path) -> None:
    path = sock_dir / "rpc"
    s = one_shot_daemon(path, b"")
    try:
        server = asyncio.create_task(asyncio.to_thread(serve_once, s, b'{"partial'))
        with pytest.raises(ConnectionError):
            await asyncio.to_thread(rpcclient.call, path, "frost-status", None, 10)
        await server
    finally:
        s.close()
