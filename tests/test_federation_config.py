"""The member configuration: every unusable setting is refused at start with a message naming it."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from coincurve import PrivateKey

from frostfed.federation.config import ConfigError, default_threshold, load_config, parse_config

IDS = [PrivateKey().public_key.format().hex() for _ in range(4)]


def valid_doc(n: int = 4) -> dict[str, Any]:
    return {
        "member": {"identity_key_file": "identity.key", "listen": "127.0.0.1:9735", "data_dir": "data"},
        "federation": {"members": [{"id": IDS[i], "address": f"127.0.0.1:{9735 + i}"} for i in range(n)]},
        "bitcoind": {"rpc_url": "http://127.0.0.1:18443", "cookie_file": "/tmp/.cookie"},
        "policy": {"min_feerate": 1.0, "max_feerate": 50.0},
    }


def refused(doc: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as e:
        parse_config(doc, Path("/base"))
    return str(e.value)


def test_a_valid_configuration_parses_with_relative_paths_under_its_directory() -> None:
    cfg = parse_config(valid_doc(), Path("/base"))
    assert cfg.identity_key_file == Path("/base/identity.key")
    assert cfg.data_dir == Path("/base/data")
    assert (cfg.listen_host, cfg.listen_port) == ("127.0.0.1", 9735)
    assert [m.id.hex() for m in cfg.members] == IDS
    assert [m.port for m in cfg.members] == [9735, 9736, 9737, 9738]
    assert cfg.threshold == 3
    assert cfg.bitcoind is not None and cfg.bitcoind.cookie_file == "/tmp/.cookie"
    assert cfg.bitcoind.wallet == "frostfed"
    assert cfg.policy.max_feerate == 50.0
    assert cfg.passphrase_file is None


@pytest.mark.parametrize(("n", "t"), [(2, 2), (3, 3), (4, 3), (5, 4), (6, 5), (7, 5), (10, 7), (100, 67)])
def test_default_threshold_is_two_thirds_plus_one(n: int, t: int) -> None:
    assert default_threshold(n) == t == (2 * n) // 3 + 1


@pytest.mark.parametrize("n", [2, 3, 4])
def test_threshold_defaults_to_two_thirds_plus_one_of_the_listed_members(n: int) -> None:
    assert parse_config(valid_doc(n), Path("/")).threshold == (2 * n) // 3 + 1


@pytest.mark.parametrize("t", [1, 2, 4])
def test_an_explicit_threshold_in_range_is_kept(t: int) -> None:
    doc = valid_doc()
    doc["federation"]["threshold"] = t
    assert parse_config(doc, Path("/")).threshold == t


@pytest.mark.parametrize("t", [0, -1, 5, 2.5, "3", True, None, [3]])
def test_threshold_out_of_range_or_not_a_whole_number(t: Any) -> None:
    doc = valid_doc()
    doc["federation"]["threshold"] = t
    assert "federation.threshold" in refused(doc)


@pytest.mark.parametrize("section", ["member", "federation"])
def test_missing_required_section(section: str) -> None:
    doc = valid_doc()
    del doc[section]
    assert f"[{section}]" in refused(doc)


@pytest.mark.parametrize("section", ["member", "federation", "bitcoind", "policy"])
def test_a_section_that_is_not_a_table(section: str) -> None:
    doc = valid_doc()
    doc[section] = "x"
    assert f"[{section}]" in refused(doc)


@pytest.mark.parametrize(
    "listen", [None, "", "127.0.0.1", ":9735", "127.0.0.1:", "127.0.0.1:port", "h:0", "h:65536", "h:-1", 9735]
)
def test_bad_listen_address(listen: Any) -> None:
    doc = valid_doc()
    doc["member"]["listen"] = listen
    assert "member.listen" in refused(doc)


@pytest.mark.parametrize(
    "address",
    [None, "host", "host:99999", "host:x", ":1", "host: 80", "host:+80", "host:8_0", "host:٨٠", "a b:1", "[]:1"],
)
def test_bad_member_address_names_the_entry(address: Any) -> None:
    doc = valid_doc()
    doc["federation"]["members"][2]["address"] = address
    assert "federation.members[2].address" in refused(doc)


@pytest.mark.parametrize(
    "key",
    [
        None,
        "",
        "zz" * 33,
        "02" + "00" * 32,  # x = 0 is not on the curve
        "04" + IDS[0][2:] + "00" * 32,  # uncompressed encoding
        IDS[0][:-2],  # 32 bytes
        IDS[0] + "00",  # 34 bytes
        33,
        ["02"],
    ],
)
def test_bad_member_public_key_names_the_entry(key: Any) -> None:
    doc = valid_doc()
    doc["federation"]["members"][1]["id"] = key
    assert "federation.members[1].id" in refused(doc)


def test_duplicate_member_ids_name_both_entries() -> None:
    doc = valid_doc()
    doc["federation"]["members"][3]["id"] = IDS[1]
    msg = refused(doc)
    assert "federation.members[3].id" in msg and "federation.members[1].id" in msg


@pytest.mark.parametrize("members", [None, [], "a", {"id": IDS[0]}])
def test_member_list_missing_or_too_short(members: Any) -> None:
    doc = valid_doc()
    doc["federation"]["members"] = members
    assert "federation.members" in refused(doc)


def test_a_single_member_is_not_a_federation() -> None:
    assert "federation.members" in refused(valid_doc(1))


def test_a_member_entry_that_is_not_a_table() -> None:
    doc = valid_doc()
    doc["federation"]["members"][0] = "127.0.0.1:1"
    assert "federation.members[0]" in refused(doc)


@pytest.mark.parametrize("key", ["identity_key_file", "data_dir", "passphrase_file"])
@pytest.mark.parametrize("value", ["", 5, ["a"]])
def test_paths_must_be_non_empty_strings(key: str, value: Any) -> None:
    doc = valid_doc()
    doc["member"][key] = value
    assert f"member.{key}" in refused(doc)


def test_identity_key_file_is_required() -> None:
    doc = valid_doc()
    del doc["member"]["identity_key_file"]
    assert "member.identity_key_file" in refused(doc)


def test_absolute_paths_stay_absolute_and_passphrase_file_is_resolved() -> None:
    doc = valid_doc()
    doc["member"]["identity_key_file"] = "/keys/id.key"
    doc["member"]["passphrase_file"] = "pass"
    cfg = parse_config(doc, Path("/base"))
    assert cfg.identity_key_file == Path("/keys/id.key")
    assert cfg.passphrase_file == Path("/base/pass")


# bitcoind


def with_bitcoind(**settings: Any) -> dict[str, Any]:
    doc = valid_doc()
    doc["bitcoind"] = settings
    return doc


def test_bitcoind_section_is_optional() -> None:
    doc = valid_doc()
    del doc["bitcoind"]
    assert parse_config(doc, Path("/")).bitcoind is None


def test_bitcoind_with_user_and_password_and_wallet() -> None:
    cfg = parse_config(with_bitcoind(rpc_url="https://node:8332/", user="u", password="p", wallet="w"), Path("/"))
    assert cfg.bitcoind is not None
    assert (cfg.bitcoind.user, cfg.bitcoind.password, cfg.bitcoind.wallet, cfg.bitcoind.cookie_file) == (
        "u",
        "p",
        "w",
        None,
    )


def test_relative_cookie_file_is_resolved_under_the_configuration() -> None:
    cfg = parse_config(with_bitcoind(rpc_url="http://h:1", cookie_file="regtest/.cookie"), Path("/base"))
    assert cfg.bitcoind is not None and cfg.bitcoind.cookie_file == "/base/regtest/.cookie"


@pytest.mark.parametrize(
    "url", [None, "", "127.0.0.1:18443", "ftp://h:1", "http://", "http://h:99999", "http://h:port", "httpx://h", 5]
)
def test_bitcoind_rpc_url_must_be_a_usable_http_url(url: Any) -> None:
    assert "bitcoind.rpc_url" in refused(with_bitcoind(rpc_url=url, cookie_file="c"))


def test_an_empty_bitcoind_section_is_refused_not_ignored() -> None:
    assert "bitcoind.rpc_url" in refused(with_bitcoind())


@pytest.mark.parametrize(
    ("auth", "named"),
    [
        ({}, "[bitcoind]"),
        ({"user": "u"}, "bitcoind.password"),
        ({"password": "p"}, "bitcoind.user"),
        ({"user": "", "password": "p"}, "bitcoind.user"),
        ({"user": "u", "password": 5}, "bitcoind.password"),
        ({"cookie_file": ""}, "bitcoind.cookie_file"),
        ({"cookie_file": 5}, "bitcoind.cookie_file"),
        ({"cookie_file": "c", "wallet": 7}, "bitcoind.wallet"),
        ({"cookie_file": "c", "wallet": ""}, "bitcoind.wallet"),
    ],
)
def test_bitcoind_auth_rules(auth: dict[str, Any], named: str) -> None:
    assert named in refused(with_bitcoind(rpc_url="http://127.0.0.1:18443", **auth))


# policy and timing


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("min_feerate", 0),
        ("min_feerate", 0.05),
        ("min_feerate", "1"),
        ("min_feerate", True),
        ("max_feerate", 10_001),
        ("max_fee_sats", -1),
        ("max_fee_sats", 10**8 + 1),
        ("max_fee_sats", 1000.5),
        ("min_confirmations", 0),
        ("min_confirmations", 1.5),
        ("min_confirmations", 1001),
        ("payout_check_command", ""),
        ("payout_check_command", "   "),
        ("payout_check_command", ["check"]),
        ("fee_budget_sats", -1),
        ("fee_budget_sats", 1.5),
        ("fee_budget_blocks", 0),
        ("fee_budget_blocks", "144"),
        ("allow_version_3", 1),
        ("allow_op_return", "yes"),
        ("allow_consolidation", 0),
    ],
)
def test_policy_values_out_of_range(key: str, value: Any) -> None:
    doc = valid_doc()
    doc["policy"] = {key: value}
    assert f"policy.{key}" in refused(doc)


def test_min_feerate_above_max_feerate() -> None:
    doc = valid_doc()
    doc["policy"] = {"min_feerate": 20, "max_feerate": 10}
    msg = refused(doc)
    assert "policy.min_feerate" in msg and "policy.max_feerate" in msg


def test_policy_defaults_and_whole_numbers() -> None:
    doc = valid_doc()
    doc["policy"] = {"max_fee_sats": 5000, "min_confirmations": 3, "payout_check_command": "true"}
    pol = parse_config(doc, Path("/")).policy
    assert (pol.min_feerate, pol.max_feerate, pol.max_fee_sats, pol.min_confirmations) == (1.0, 200.0, 5000, 3)
    assert isinstance(pol.max_fee_sats, int) and pol.payout_check_command == "true"
    assert (pol.fee_budget_sats, pol.fee_budget_blocks) == (1_000_000, 144)
    assert not (pol.allow_version_3 or pol.allow_op_return or pol.allow_consolidation)
    doc["policy"] = {
        "fee_budget_sats": 0,
        "fee_budget_blocks": 1008,
        "allow_op_return": True,
        "allow_consolidation": True,
    }
    pol = parse_config(doc, Path("/")).policy
    assert (pol.fee_budget_sats, pol.fee_budget_blocks, pol.allow_op_return, pol.allow_consolidation) == (
        0,
        1008,
        True,
        True,
    )


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"heartbeat_seconds": 0}, "member.heartbeat_seconds"),
        ({"heartbeat_seconds": "2"}, "member.heartbeat_seconds"),
        ({"offline_after_seconds": 0.01}, "member.offline_after_seconds"),
        ({"heartbeat_seconds": 5, "offline_after_seconds": 5}, "member.offline_after_seconds"),
        ({"heartbeat_seconds": 20}, "member.offline_after_seconds"),  # default 10 s is shorter
        ({"roast_grace_seconds": -0.1}, "member.roast_grace_seconds"),
        ({"roast_grace_seconds": "0.25"}, "member.roast_grace_seconds"),
        ({"roast_grace_seconds": 61}, "member.roast_grace_seconds"),
    ],
)
def test_heartbeat_and_offline_timing(settings: dict[str, Any], named: str) -> None:
    doc = valid_doc()
    doc["member"].update(settings)
    assert named in refused(doc)


def test_the_roast_grace_period_is_read_and_zero_turns_it_off() -> None:
    assert parse_config(valid_doc(), Path("/")).roast_grace_seconds == 0.25
    doc = valid_doc()
    doc["member"]["roast_grace_seconds"] = 0
    assert parse_config(doc, Path("/")).roast_grace_seconds == 0


def test_valid_documents_are_not_modified_by_parsing() -> None:
    doc = valid_doc()
    before = copy.deepcopy(doc)
    parse_config(doc, Path("/"))
    assert doc == before


# files


def toml_of(doc: dict[str, Any]) -> str:
    m, f, b = doc["member"], doc["federation"], doc["bitcoind"]
    lines = ["[member]"] + [f'{k} = "{v}"' for k, v in m.items()] + ["", "[federation]"]
    lines += [f"threshold = {f['threshold']}"] if "threshold" in f else []
    for e in f["members"]:
        lines += ["", "[[federation.members]]", f'id = "{e["id"]}"', f'address = "{e["address"]}"']
    lines += ["", "[bitcoind]"] + [f'{k} = "{v}"' for k, v in b.items()]
    return "\n".join(lines) + "\n"


def test_load_config_reads_toml_relative_to_its_directory(tmp_path: Path) -> None:
    p = tmp_path / "member.toml"
    p.write_text(toml_of(valid_doc()))
    cfg = load_config(p)
    assert cfg.identity_key_file == tmp_path / "identity.key"
    assert cfg.threshold == 3 and len(cfg.members) == 4


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(tmp_path / "absent.toml")


def test_a_directory_is_not_a_configuration(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(tmp_path)


@pytest.mark.parametrize("text", ["[member\n", "a = \n", "x = 1\nx = 2\n", '[member]\nlisten = "a:1" junk\n'])
def test_invalid_toml(tmp_path: Path, text: str) -> None:
    p = tmp_path / "member.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(p)


def test_binary_file_is_refused_as_not_text(tmp_path: Path) -> None:
    p = tmp_path / "member.toml"
    p.write_bytes(b"\xff\xfe\x00garbage\x80")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(p)


# the command line


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "frostfed", *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("mutate", "named"),
    [
        (lambda d: d["federation"].__setitem__("threshold", 9), "federation.threshold"),
        (lambda d: d["member"].__setitem__("listen", "nohost"), "member.listen"),
        (lambda d: d["federation"]["members"][1].__setitem__("id", "abcd"), "federation.members[1].id"),
        (lambda d: d["bitcoind"].__setitem__("rpc_url", "http://h:99999"), "bitcoind.rpc_url"),
    ],
)
def test_cli_run_with_a_bad_configuration_exits_2_naming_the_setting(tmp_path: Path, mutate: Any, named: str) -> None:
    doc = valid_doc()
    mutate(doc)
    p = tmp_path / "member.toml"
    p.write_text(toml_of(doc))
    r = run_cli("run", "--config", str(p))
    assert r.returncode == 2
    assert named in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("content", [None, "[member\n", b"\x80\x81"])
def test_cli_run_with_an_unreadable_or_invalid_file_exits_2(tmp_path: Path, content: Any) -> None:
    p = tmp_path / "member.toml"
    if isinstance(content, str):
        p.write_text(content)
    elif isinstance(content, bytes):
        p.write_bytes(content)
    r = run_cli("run", "--config", str(p))
    assert r.returncode == 2
    assert str(p) in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    ("where", "key", "named"),
    [
        ("member", "listen_port", "member.listen_port"),
        ("federation", "threshhold", "federation.threshhold"),
        ("bitcoind", "rpcuser", "bitcoind.rpcuser"),
        ("policy", "max_fee", "policy.max_fee"),
    ],
)
def test_a_misspelt_setting_is_refused_not_ignored(where: str, key: str, named: str) -> None:
    doc = valid_doc()
    doc[where][key] = 3
    assert named in refused(doc)


def test_a_misspelt_member_entry_setting_is_refused() -> None:
    doc = valid_doc()
    doc["federation"]["members"][1]["adress"] = "h:1"
    assert "federation.members[1].adress" in refused(doc)


def test_an_unknown_section_is_refused() -> None:
    doc = valid_doc()
    doc["polcy"] = {"max_fee_sats": 1}
    assert "[polcy]" in refused(doc)


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [("node.example:9735", "node.example", 9735), ("[::1]:9735", "::1", 9735), ("::1:9735", "::1", 9735)],
)
def test_listen_addresses_with_names_and_ipv6(listen: str, host: str, port: int) -> None:
    doc = valid_doc()
    doc["member"]["listen"] = listen
    cfg = parse_config(doc, Path("/"))
    assert (cfg.listen_host, cfg.listen_port) == (host, port)


def test_two_members_at_the_same_address_name_both_entries() -> None:
    doc = valid_doc()
    doc["federation"]["members"][2]["address"] = doc["federation"]["members"][0]["address"]
    msg = refused(doc)
    assert "federation.members[2].address" in msg and "federation.members[0].address" in msg


@pytest.mark.parametrize("mode", [0o644, 0o640])
def test_cli_run_with_an_identity_readable_by_others_exits_2(tmp_path: Path, mode: int) -> None:
    from frostfed.federation.identity import create_identity_file

    key = create_identity_file(tmp_path / "identity.key")
    key_path = tmp_path / "identity.key"
    key_path.chmod(mode)
    doc = valid_doc()
    doc["federation"]["members"][0]["id"] = key.id.hex()
    p = tmp_path / "member.toml"
    p.write_text(toml_of(doc))
    r = run_cli("run", "--config", str(p))
    assert r.returncode == 2
    assert "chmod 600" in r.stderr and str(key_path) in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("min_bond_sats", -1),
        ("min_bond_sats", 1.5),
        ("min_bond_blocks", 0),
        ("min_bond_blocks", 20.5),
        ("max_members", 1),
        ("max_members", 10.0),
        ("transition_confirmations", 0),
        ("transition_confirmations", True),
        ("max_transition_fee_sats", 10**8 + 1),
        ("max_transition_fee_sats", "100"),
        ("expel_after_seconds", -1),
        ("change_timeout_seconds", 0),
    ],
)
def test_membership_values_out_of_range_or_not_whole(key: str, value: Any) -> None:
    doc = valid_doc()
    doc["membership"] = {key: value}
    assert f"membership.{key}" in refused(doc)


def test_membership_settings_are_read() -> None:
    doc = valid_doc()
    doc["membership"] = {"min_bond_sats": 50_000, "min_bond_blocks": 20, "expel_after_seconds": 4.0}
    m = parse_config(doc, Path("/")).membership
    assert (m.min_bond_sats, m.min_bond_blocks, m.expel_after_seconds) == (50_000, 20, 4.0)
    assert isinstance(m.min_bond_sats, int)


def test_more_members_than_max_members_is_refused() -> None:
    doc = valid_doc(4)
    doc["membership"] = {"max_members": 3}
    msg = refused(doc)
    assert "membership.max_members" in msg and "federation.members" in msg


@pytest.mark.parametrize("joining", ["yes", 1, None])
def test_joining_must_be_a_boolean(joining: Any) -> None:
    doc = valid_doc()
    doc["member"]["joining"] = joining
    assert "member.joining" in refused(doc)


def test_a_joining_member_may_list_one_member_and_defaults_to_threshold_one() -> None:
    doc = valid_doc(1)
    doc["member"]["joining"] = True
    cfg = parse_config(doc, Path("/"))
    assert cfg.joining and cfg.threshold == 1 and len(cfg.members) == 1


def test_cli_run_with_an_identity_outside_the_member_list_exits_2(tmp_path: Path) -> None:
    from frostfed.federation.identity import create_identity_file

    doc = valid_doc()
    key = tmp_path / "other.key"
    create_identity_file(key)
    doc["member"]["identity_key_file"] = str(key)
    doc["member"]["data_dir"] = str(tmp_path / "data")
    p = tmp_path / "member.toml"
    p.write_text(toml_of(doc))
    r = run_cli("run", "--config", str(p))
    assert r.returncode == 2
    assert "not in the member list" in r.stderr
    assert "Traceback" not in r.stderr
