"""The daemon and the plugin build their member from one MemberConfig, by one set of checks: a member id,
an address, a threshold or a `[policy]` value one front end refuses is refused by the other too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from coincurve import PrivateKey

from frostfed.federation import commands
from frostfed.federation.config import ConfigError, PolicySettings, load_plugin_settings, parse_config
from frostfed.federation.member_config import MemberConfig, check_store_network
from frostfed.federation.messages import Message, MessageError
from frostfed.federation.store import Store
from frostfed.federation.transition import Proposal
from frostfed.net.addresses import PeerAddress, ValidationError, member_id, peer_address
from frostfed.net.cln_channel import parse_member
from frostfed.plugin.daemon import member_config, peer_host_port

IDS = [PrivateKey().public_key.format() for _ in range(4)]
OFF_CURVE = "02" + "11" * 32


def daemon_doc(**federation: Any) -> dict[str, Any]:
    return {
        "member": {"identity_key_file": "k", "listen": "127.0.0.1:9735"},
        "federation": {"members": [{"id": i.hex(), "address": f"127.0.0.1:{9735 + n}"} for n, i in enumerate(IDS)],
                       **federation},
    }


# --- one rule per value, at every entry point ----------------------------------------------------------

BAD_IDS = [OFF_CURVE, "04" + "ab" * 32, "02ab", "zz" * 33, "02" + "ab" * 33, "02" + "AB" * 31 + "ag", ""]
BAD_HOSTPORTS = ["127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "h:99999", ":9735", "a b:1", "h:1x", "h/x:1", "x" * 400]


def entry_points_for_id(value: str) -> list[tuple[str, Any]]:
    """Every place a member id arrives, as a callable that raises on a bad one."""

    def config() -> Any:
        doc = daemon_doc()
        doc["federation"]["members"][0]["id"] = value
        return parse_config(doc, Path("/"))

    def command() -> Any:
        return commands.COMMANDS["frost-expel"].bind([value])

    def cln_option() -> Any:
        return parse_member(f"{value}@127.0.0.1:9735")

    def proposal() -> Any:
        return Proposal.from_message(Message("change_proposal", {**PROPOSAL, "addresses": {value: "127.0.0.1:1"}}))

    return [("config", config), ("command", command), ("frost-members", cln_option), ("proposal", proposal)]


def entry_points_for_address(value: str) -> list[tuple[str, Any]]:
    def config() -> Any:
        doc = daemon_doc()
        doc["federation"]["members"][0]["address"] = value
        return parse_config(doc, Path("/"))

    def command() -> Any:
        return commands.COMMANDS["frost-join"].bind([IDS[0].hex(), value])

    def cln_option() -> Any:
        return parse_member(f"{IDS[0].hex()}@{value}")

    def proposal() -> Any:
        return Proposal.from_message(Message("change_proposal", {**PROPOSAL, "addresses": {IDS[0].hex(): value}}))

    return [("config", config), ("command", command), ("frost-members", cln_option), ("proposal", proposal)]


PROPOSAL = {
    "nonce": "ab" * 8,
    "epoch": 1,
    "kind": "join",
    "members": [i.hex() for i in IDS],
    "threshold": 3,
    "addresses": {},
    "proposer": IDS[0].hex(),
    "subject": IDS[3].hex(),
    "bond_sats": 0,
    "bond_locktime": 0,
}


@pytest.mark.parametrize("value", BAD_IDS)
def test_a_bad_member_id_is_refused_everywhere(value: str) -> None:
    for where, call in entry_points_for_id(value):
        with pytest.raises((ConfigError, ValueError, MessageError, commands.RpcError)):
            call()
            pytest.fail(f"{where} accepted the member id {value!r}")


@pytest.mark.parametrize("value", BAD_HOSTPORTS)
def test_a_bad_address_is_refused_everywhere(value: str) -> None:
    for where, call in entry_points_for_address(value):
        with pytest.raises((ConfigError, ValueError, MessageError, commands.RpcError)):
            call()
            pytest.fail(f"{where} accepted the address {value!r}")


@pytest.mark.parametrize("value", ["127.0.0.1:9735", "node.example:1", "[::1]:65535"])
def test_a_good_address_is_accepted_everywhere(value: str) -> None:
    for _, call in entry_points_for_address(value):
        call()
    for _, call in entry_points_for_id(PrivateKey().public_key.format().hex()):
        call()


def test_a_directory_entry_is_written_in_one_form_and_read_in_both() -> None:
    node = IDS[2]
    written = str(PeerAddress(node, "10.0.0.1", 9735))
    assert written == f"{node.hex()}@10.0.0.1:9735"
    assert str(PeerAddress(node, "::1", 9735)) == f"{node.hex()}@[::1]:9735"
    assert peer_address(written) == PeerAddress(node, "10.0.0.1", 9735)
    assert peer_address("10.0.0.1:9735") == PeerAddress(None, "10.0.0.1", 9735)  # an older daemon's entry
    assert peer_address(node.hex(), need_host=False) == PeerAddress(node, "", 0)
    with pytest.raises(ValidationError):
        peer_address(node.hex())
    # the daemon writes its members in that form and dials them from either
    cfg = parse_config(daemon_doc(), Path("/"))
    settings = member_config(cfg, IDS[0])
    assert settings.directory[IDS[1]] == f"{IDS[1].hex()}@127.0.0.1:9736"
    assert peer_host_port(IDS[1], settings.directory[IDS[1]]) == ("127.0.0.1", 9736)
    assert peer_host_port(IDS[1], "127.0.0.1:9736") == ("127.0.0.1", 9736)
    with pytest.raises(ValueError, match="another member"):
        peer_host_port(IDS[1], settings.directory[IDS[2]])
    assert member_id(IDS[3].hex()) == IDS[3]


# --- the shared settings ---------------------------------------------------------------------------------


def create(**kw: Any) -> MemberConfig:
    args: dict[str, Any] = {"me": IDS[0], "network": "regtest", "members": IDS, "threshold": None, **kw}
    return MemberConfig.create(**args)


@pytest.mark.parametrize("t", [5, 9, -1])
def test_a_threshold_out_of_range_is_refused_by_the_plugin_as_by_the_daemon(t: int) -> None:
    with pytest.raises(ConfigError, match=r"federation\.threshold"):
        parse_config(daemon_doc(threshold=t), Path("/"))
    with pytest.raises(ConfigError, match=r"frost-threshold must be a whole number in 1\.\.4"):
        create(threshold=t, where_threshold="frost-threshold", zero_threshold_is_default=True)


def test_the_default_threshold_is_the_same_for_both() -> None:
    daemon = member_config(parse_config(daemon_doc(), Path("/")), IDS[0])
    plugin = create(threshold=0, zero_threshold_is_default=True)
    assert daemon.threshold == plugin.threshold == 3
    assert daemon.members == plugin.members == tuple(IDS)


def test_the_shared_checks() -> None:
    with pytest.raises(ConfigError, match="own id is not in the member list"):
        create(me=PrivateKey().public_key.format())
    with pytest.raises(ConfigError, match="twice"):
        create(members=[*IDS, IDS[1]])
    with pytest.raises(ConfigError, match="unknown network"):
        create(network="mainnet2")
    from frostfed.federation.config import MembershipSettings

    with pytest.raises(ConfigError, match="max_members"):
        create(membership=MembershipSettings(max_members=3))
    with pytest.raises(ConfigError, match="offline_after_seconds"):
        create(heartbeat_seconds=5, offline_after_seconds=5)
    with pytest.raises(ConfigError, match="roast_grace_seconds"):
        create(roast_grace_seconds=-1)
    assert create().roast_grace_seconds == 0.25 and create(roast_grace_seconds=0).roast_grace_seconds == 0
    assert create(network="bitcoin").network == "main"
    joiner = create(members=[], joining=True, threshold=None)
    assert joiner.members == () and joiner.joining


def test_the_network_setting_of_the_daemon() -> None:
    assert parse_config(daemon_doc(), Path("/")).network == "regtest"
    for name, core in [("bitcoin", "main"), ("main", "main"), ("testnet4", "testnet4"), ("signet", "signet"),
                       ("testnet", "test")]:
        assert parse_config(daemon_doc(network=name), Path("/")).network == core
    for bad in ["mainnet2", 1, ""]:
        with pytest.raises(ConfigError, match=r"federation\.network"):
            parse_config(daemon_doc(network=bad), Path("/"))


def test_the_plugin_reads_policy_by_the_daemons_rules_and_nothing_else(tmp_path: Path) -> None:
    f = tmp_path / "frost.toml"
    f.write_text("[policy]\nmax_fee_sats = 5000\n")
    assert load_plugin_settings(f)[0] == PolicySettings(max_fee_sats=5000)
    for text, why in [
        ('[federation]\nnetwork = "signet"\n', r"unknown section \[federation\]"),
        ("[member]\nlisten = 1\n", r"unknown section \[member\]"),
        ("[policy]\nmax_fee_sats = -1\n", "max_fee_sats"),
        ("[policy]\nmin_feerate = 0.01\n", "min_feerate"),
        (b"\xff\xfe", "UTF-8"),
    ]:
        if isinstance(text, bytes):
            f.write_bytes(text)
        else:
            f.write_text(text)
        with pytest.raises(ConfigError, match=why):
            load_plugin_settings(f)
        doc_section = text.split("]")[0].strip("[") if isinstance(text, str) else ""
        if doc_section == "policy":  # the daemon refuses the same [policy] values
            with pytest.raises(ConfigError, match=why):
                import tomllib

                parse_config({**daemon_doc(), **tomllib.loads(text)}, Path("/"))


def test_a_data_directory_keeps_its_network(tmp_path: Path) -> None:
    store = Store(tmp_path / "frostfed.sqlite")
    try:
        check_store_network(store, "signet", "d")
        check_store_network(store, "signet", "d")
        with pytest.raises(ConfigError, match="belongs to network signet, not main"):
            check_store_network(store, "main", "d")
    finally:
        store.close()


def test_offline_ledger_credit_follows_the_data_directorys_network(tmp_path: Path, capsys: Any) -> None:
    from frostfed.bitcoin.taproot import p2tr_address
    from frostfed.federation.member_config import offline_network
    from frostfed.plugin.cli import _ledger_credit

    assert offline_network(tmp_path, None) == "regtest"  # a directory no member has used yet
    store = Store(tmp_path / "frostfed.sqlite")
    check_store_network(store, "signet", str(tmp_path))
    store.close()
    key = bytes(range(32))
    assert _ledger_credit(tmp_path, p2tr_address(key, "signet"), "1000", None) == 0
    assert _ledger_credit(tmp_path, p2tr_address(key, "regtest"), "1000", None) == 1
    assert "another network" in capsys.readouterr().err
    assert _ledger_credit(tmp_path, p2tr_address(key, "bitcoin"), "1000", "bitcoin") == 1
    assert "belongs to network signet, not main" in capsys.readouterr().err
    from frostfed.bitcoin.ledger import Ledger

    ledger = Ledger(tmp_path / "ledger.sqlite")
    try:  # only the signet credit went in
        assert ledger.scripts() == [b"\x51\x20" + key]
        assert ledger.status(b"\x51\x20" + key).credited == 1000
    finally:
        ledger.close()
