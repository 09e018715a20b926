"""The `frostfed` command line as a lightning-cli user expects it: parameters positional or key=value
(forced with -k/-o), -H, help from the command table, exit codes 1/2/3, and a one-line error, never a
traceback, for any input."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from coincurve import PrivateKey
from test_commands import MEMBER, ScriptedService

from frostfed.bitcoin.taproot import p2tr_address
from frostfed.federation import commands
from frostfed.federation.health import LedgerDigest, ledger_digest
from frostfed.plugin import cli, rpcclient
from frostfed.plugin.rpcserver import RpcServer
from frostfed.plugin.socketpath import SUN_PATH_MAX

PSBT = "cHNidP8BAFICAAAAAZ38ZijCbFiZ/hvT3DOGZb/VXXraEPYiCXPfLTht7BJ2AQAAAAD/////AfA9zR0AAAAAFgAUezoAv9wU0neVwrdJAdCdpu8TNXkAAAAATwEENYfPAto/0AiAAAAAlwSLGtBEWx7IJ1UXcnyHtOTrwYogP/oPlMAVZr046QADUbdDiH7h1A3DKmBDck8tZFmztaTXPa7I+64EcvO8Q+IM2QxqT64AAIAAAACATwEENYfPAto/0AiAAAABuQRSQnE5zXjCz/JES+NTzVhgXj5RMoXlKLQH+uP2FzUD0wpel8itvFV9rCrZp+OcFyLrrGnmaLbyZnzB1nHIPKsM2QxqT64AAIABAACAAAEBKwBlzR0AAAAAIgAgLFSGEmxJeAeagU4TcV1l82RZ5NbMre0mbQUIZFuvpjIBBUdSIQKdoSzbWyNWkrkVNq/v5ckcOrlHPY5DtTODarRWKZyIcSEDNys0I07Xz5wf6l0F1EFVeSe+lUKxYusC4ass6AIkwAtSriIGAp2hLNtbI1aSuRU2r+/lyRw6uUc9jkO1M4NqtFYpnIhxENkMak+uAACAAAAAgAAAAAAiBgM3KzQjTtfPnB/qXQXUQVV5J76VQrFi6wLhqyzoAiTACxDZDGpPrgAAgAEAAIAAAAAAACICA57/H1R6HV+S36K6evaslxpL0DukpzSwMVaiVritOh75EO3kXMUAAACAAAAAgAEAAIAA"  # noqa: E501
ADDRESS = p2tr_address(PrivateKey(b"\x05" * 32).public_key.format()[1:], "regtest")


# -- parameters ------------------------------------------------------------------------------------


def test_a_base64_psbt_ending_in_equals_is_a_positional_value() -> None:
    psbt = PSBT + "=="
    assert cli.parse_params("frost-sign", [psbt]) == [psbt]
    assert cli.parse_params("frost-sign", [f"psbt={psbt}"]) == {"psbt": psbt}


def test_keywords_are_detected_by_the_commands_own_parameter_names() -> None:
    assert cli.parse_params("frost-payout", ['outputs=[{"address":"a","sats":5}]', "feerate=3"]) == {
        "outputs": [{"address": "a", "sats": 5}],
        "feerate": "3",
    }
    assert cli.parse_params("frost-requests", ["abc", "5"]) == ["abc", "5"]
    assert cli.parse_params("frost-requests", ["id=abc", "tx=true"]) == {"id": "abc", "tx": True}
    # a command the table does not know (a newer daemon's): any identifier-like key counts
    assert cli.parse_params("frost-future", ["depth=3"]) == {"depth": "3"}


async def test_numbers_stay_strings_and_every_numeric_parameter_takes_them() -> None:
    # a request id of digits, or one that reads as a float, reaches the command as the id it is
    assert cli.parse_params("frost-requests", ["1234567890123456", "12e45"]) == ["1234567890123456", "12e45"]
    svc = Records()
    out = await commands.dispatch(svc, "frost-requests", cli.parse_params("frost-requests", ["limit=3", "tx=false"]))
    assert len(out["requests"]) == 3
    svc2 = ScriptedService()
    outputs = f'[{{"address":"{ADDRESS}","sats":5}}]'
    await commands.dispatch(svc2, "frost-payout", cli.parse_params("frost-payout", [outputs, "2.5"]))
    assert svc2.calls[-1][1][1] == 2.5
    join = cli.parse_params("frost-join", [MEMBER, "127.0.0.1:9735", "60000", "20"])
    await commands.dispatch(svc2, "frost-join", join)
    assert svc2.calls[-1][1][2:] == (60000, 20)


def test_k_and_o_force_the_form() -> None:
    assert cli.parse_params("frost-sign", ["psbt=x"], "ordered") == ["psbt=x"]
    assert "=" not in PSBT and cli.parse_params("frost-sign", [PSBT + "=="], "keywords") == {PSBT: "="}
    with pytest.raises(cli.UsageError, match="Expected key=value in 'abc'"):
        cli.parse_params("frost-requests", ["id=x", "abc"], "keywords")
    with pytest.raises(cli.UsageError, match="twice"):
        cli.parse_params("frost-requests", ["id=x", "id=y"])


def test_human_readable_output_follows_lightning_cli() -> None:
    value = {"id": "02ab", "members": [{"id": "03cd", "online": True}, {"id": "03ef", "online": False}], "n": 2}
    assert cli.render(value, True) == "id=02ab\nmembers=id=03cd\nonline=true\nid=03ef\nonline=false\nn=2\n"
    assert cli.render({"address": "bcrt1p"}, True) == "bcrt1p\n"  # a single field is shown bare
    assert cli.render({"a": 1}, False) == '{\n  "a": 1\n}\n'


# -- help ------------------------------------------------------------------------------------------


def test_help_lists_every_command_of_the_table_with_its_usage_and_summary(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["help"])
    out = capsys.readouterr().out
    for c in commands.COMMANDS.values():
        assert f"{c.name} {c.usage}".rstrip() + "\n    " + c.summary in out
    for local in cli.LOCAL_COMMANDS:
        assert f"\n{local} " in out


def test_help_of_one_command_shows_its_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["help", "frost-payout"])
    out = capsys.readouterr().out
    cmd = commands.COMMANDS["frost-payout"]
    assert out.startswith("usage: frostfed frost-payout outputs [feerate]\n")
    assert all(f"{p.name}" in out and p.doc in out for p in cmd.params)


def exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    return int(e.value.code or 0)


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_usage_errors_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["help", "frost-nothing"]) == 3
    assert "unknown command 'frost-nothing'" in one_line_error(capsys)
    assert exit_code(["--no-such-option", "frost-status"]) == 3
    assert "unrecognized arguments" in one_line_error(capsys)
    assert exit_code(["nonsense"]) == 3
    assert "unknown command 'nonsense'" in one_line_error(capsys)
    assert exit_code(["-k", "-o", "frost-status"]) == 3
    one_line_error(capsys)
    assert exit_code(["-k", "frost-requests", "abc"]) == 3
    assert "Expected key=value in 'abc'" in one_line_error(capsys)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["--version"]) == 0
    from frostfed import __version__

    assert capsys.readouterr().out == f"frostfed {__version__}\n"


# -- no traceback for any input --------------------------------------------------------------------


def test_a_missing_data_directory_is_a_connection_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["-d", str(tmp_path / "nowhere"), "frost-status"]) == 2
    assert "no data directory" in one_line_error(capsys)
    assert exit_code(["-d", str(tmp_path), "frost-status"]) == 2  # no daemon there
    assert "cannot reach the member" in one_line_error(capsys)


@pytest.mark.parametrize("sats", ["9" * 30, "9" * 5000, "21000000000000001", "0", "-5", "1.5", "lots"])
def test_ledger_credit_refuses_an_impossible_amount(tmp_path: Path, capsys: pytest.CaptureFixture[str], sats) -> None:
    assert exit_code(["-d", str(tmp_path), "ledger-credit", ADDRESS, sats]) == 3
    assert "SATS must be a whole number" in one_line_error(capsys)
    assert not (tmp_path / "ledger.sqlite").exists()


def test_ledger_credit_into_a_missing_data_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["-d", str(tmp_path / "nowhere"), "ledger-credit", ADDRESS, "1000"]) == 1
    assert "no data directory" in one_line_error(capsys)
    assert exit_code(["-d", str(tmp_path), "ledger-credit", "bc1qnotours", "1000"]) == 1
    assert "cannot credit" in one_line_error(capsys)
    assert exit_code(["-d", str(tmp_path), "ledger-credit", ADDRESS, "1000"]) == 0
    assert '"credited": 1000' in capsys.readouterr().out


@pytest.mark.parametrize("where", ["/dev/null/identity.key", "/proc/no/such/dir/identity.key"])
def test_keygen_into_a_path_that_cannot_exist(where: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["keygen", where]) == 2
    assert f"cannot write an identity key file at {where}" in one_line_error(capsys)


def test_member_id_of_an_existing_key_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "identity.key"
    cli.main(["keygen", str(key)])
    made = capsys.readouterr().out.strip()
    cli.main(["member-id", str(key)])
    assert capsys.readouterr().out.strip() == made and len(made) == 66
    assert exit_code(["keygen", str(key)]) == 2  # never overwritten
    assert "exists" in one_line_error(capsys)
    assert exit_code(["member-id", str(tmp_path / "missing.key")]) == 2
    assert "cannot read identity key file" in one_line_error(capsys)


async def test_a_data_directory_too_deep_for_a_unix_socket_path_still_serves(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    path = deep / "frostfed-rpc"
    assert len(os.fsencode(str(path))) > SUN_PATH_MAX
    server = RpcServer(ScriptedService(), path)
    await server.start()
    try:
        assert path.exists() and (path.stat().st_mode & 0o777) == 0o600
        assert await asyncio.to_thread(rpcclient.call, path, "frost-status") == {"state": "active"}
        with pytest.raises(rpcclient.RpcCallError) as e:
            await asyncio.to_thread(rpcclient.call, path, "frost-requests", ["missing"])
        assert e.value.code == commands.NOT_FOUND
    finally:
        await server.close()
    assert not path.exists()


# -- frost-requests --------------------------------------------------------------------------------


class Records(ScriptedService):
    async def requests(self, request_id: str | None) -> dict[str, Any]:
        rows = [
            {"id": f"r{i}", "status": "confirmed", "request": {"tx": "00" * 200, "psbt": "70"}, "outcome": {"tx": "ab"}}
            for i in range(120)
        ]
        return {"requests": rows, "refused_changes": []}


async def test_requests_are_limited_and_without_transactions_unless_asked() -> None:
    out = await commands.dispatch(Records(), "frost-requests", {})
    assert [r["id"] for r in out["requests"]] == [f"r{i}" for i in range(70, 120)] and out["omitted"] == 70
    assert all(r["request"] == {} and r["outcome"] == {} for r in out["requests"])
    out = await commands.dispatch(Records(), "frost-requests", [None, 2, "true"])
    assert [r["id"] for r in out["requests"]] == ["r118", "r119"]
    assert out["requests"][0]["request"]["tx"] == "00" * 200
    with pytest.raises(commands.RpcError):
        await commands.dispatch(Records(), "frost-requests", {"limit": 0})


# -- ledger digests --------------------------------------------------------------------------------


def test_the_ledger_digest_is_independent_of_order_and_sensitive_to_every_amount() -> None:
    rows = [(b"\x51\x20" + bytes([i]) * 32, 1000 * i, 10 * i) for i in range(1, 5)]
    d = ledger_digest(rows, 100)
    assert ledger_digest(list(reversed(rows)), 100) == d
    more = ledger_digest([*rows[:-1], (rows[-1][0], rows[-1][1] + 1, rows[-1][2])], 100)
    assert more.credited != d.credited and more.paid == d.paid
    paid = ledger_digest([*rows[:-1], (rows[-1][0], rows[-1][1], rows[-1][2] + 1)], 100)
    assert paid.credited == d.credited and paid.paid != d.paid
    assert LedgerDigest.from_body(d.to_body()) == d


@pytest.mark.parametrize(
    "body",
    [
        None,
        "x",
        {"h": 1, "n": 1, "c": "00" * 32},
        {"h": 1, "n": 1, "c": "00" * 32, "p": "00" * 32, "extra": 1},
        {"h": True, "n": 1, "c": "00" * 32, "p": "00" * 32},
        {"h": 10**12, "n": 1, "c": "00" * 32, "p": "00" * 32},
        {"h": 1, "n": 1, "c": "00" * 33, "p": "00" * 32},
        {"h": 1, "n": 1, "c": "AB" * 32, "p": "00" * 32},
        {"h": 1, "n": 1, "c": "00" * 32, "p": ["00"]},
    ],
)
def test_a_malformed_peer_digest_is_refused(body: Any) -> None:
    with pytest.raises(ValueError):
        LedgerDigest.from_body(body)


# -- a peer's ledger digest is information only ----------------------------------------------------


class _View:
    def __init__(self) -> None:
        from frostfed.bitcoin.chain_index import ChainIndex

        self.index = ChainIndex(":memory:")


class _Member:
    """The few fields of a member that its health record reads, over a real ledger and chain index."""

    def __init__(self, me: bytes, members: list[bytes]) -> None:
        from frostfed.bitcoin.ledger import Ledger

        self.me, self.members = me, members
        self.ledger = Ledger(":memory:")
        self.chain_view = _View()


def test_a_peers_digest_only_shows_in_status_and_bad_ones_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    from frostfed.federation import health

    ids = [PrivateKey(bytes([i]) * 32).public_key.format() for i in (1, 2, 3)]
    me, honest, liar = ids
    member = _Member(me, ids)
    member.ledger.credit(b"\x51\x20" + b"\x09" * 32, 5_000)
    mine = health.heartbeat_field(member)
    assert mine is not None and mine["n"] == 1
    health.on_heartbeat(member, honest, {"t": 1, "ledger": mine})
    forged = {**mine, "c": "ff" * 32}
    health.on_heartbeat(member, liar, {"t": 1, "ledger": forged})
    view = health.of(member).agreement()
    assert view["differ"] == [liar.hex()]
    assert {r["id"]: r["credits"] for r in view["members"]} == {honest.hex(): "agree", liar.hex(): "differ"}
    assert member.ledger.status(b"\x51\x20" + b"\x09" * 32).credited == 5_000  # nothing else moved

    with caplog.at_level("WARNING", logger="frostfed.federation.health"):
        for _ in range(50):
            health.on_heartbeat(member, liar, {"t": 1, "ledger": {"h": "x" * 100_000}})
    assert len([r for r in caplog.records if "ledger digest from" in r.getMessage()]) == 1
    assert health.of(member).peers[liar].digest.credited == "ff" * 32  # the malformed ones were dropped


@pytest.mark.parametrize(
    "argv",
    [
        ["member-id", "a\x00b"],
        ["keygen", "a\x00b"],
        ["-d", "a\x00b", "frost-status"],
        ["-d", "a\x00b", "ledger-credit", ADDRESS, "5"],
        ["run", "--config", "/dev/null"],
        ["run", "--config", "/"],
        ["keygen", "/", "--passphrase-file", "/nonexistent"],
    ],
)
def test_odd_paths_get_one_line_and_a_non_zero_exit(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(argv) != 0
    one_line_error(capsys)


def test_the_daemons_files_an_older_version_left_readable_become_owner_only(tmp_path: Path) -> None:
    from frostfed.plugin import logfiles

    mask = os.umask(0o022)
    try:
        for name in ("frostfed.sqlite", "ledger.sqlite-wal", "frostfed.log", "notes.txt"):
            (tmp_path / name).write_text("x")
            os.chmod(tmp_path / name, 0o644)
        logfiles.private_files(tmp_path)
        (tmp_path / "new.sqlite").write_text("x")
        modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    finally:
        os.umask(mask)
    assert modes == {
        "frostfed.sqlite": 0o600,
        "ledger.sqlite-wal": 0o600,
        "frostfed.log": 0o600,
        "notes.txt": 0o644,  # not the daemon's: left as it was
        "new.sqlite": 0o600,  # created after: owner-only by the umask
    }
