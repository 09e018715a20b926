"""The plugin's ledger commands and log levels, without lightningd: keyed credits credit once, and
Python log levels become lightningd's."""

from __future__ import annotations

import logging

import pytest

from frostfed.bitcoin.ledger import Ledger, LedgerError
from frostfed.plugin.cln import lightningd_level, python_level

SCRIPT = bytes.fromhex("5120" + "11" * 32)
OTHER = bytes.fromhex("5120" + "22" * 32)


def test_a_keyed_credit_counts_once_and_a_reused_key_is_refused(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    assert ledger.credit_once("w1", SCRIPT, 1000, 100) is True
    assert ledger.credit_once("w1", SCRIPT, 1000, 101) is False  # the retry
    assert ledger.status(SCRIPT).credited == 1000
    for script, sats in [(SCRIPT, 999), (OTHER, 1000)]:
        with pytest.raises(LedgerError, match="already used"):
            ledger.credit_once("w1", script, sats, 102)
    assert ledger.status(OTHER).credited == 0 and not ledger.knows(OTHER)
    with pytest.raises(LedgerError):
        ledger.credit_once("w2", SCRIPT, 0, 103)
    assert ledger.credit_once("w2", SCRIPT, 5, 104) is True
    ledger.close()
    reopened = Ledger(tmp_path / "ledger.sqlite")
    assert reopened.keyed_credits() == [("w1", SCRIPT, 1000, 100), ("w2", SCRIPT, 5, 104)]
    assert reopened.status(SCRIPT).credited == 1005 and reopened.scripts() == [SCRIPT]
    assert reopened.credit_once("w2", SCRIPT, 5, 105) is False
    reopened.close()


@pytest.mark.parametrize(
    ("levelno", "name"),
    [(logging.DEBUG, "debug"), (logging.INFO, "info"), (logging.WARNING, "unusual"), (logging.ERROR, "broken"),
     (logging.CRITICAL, "broken")],
)
def test_python_levels_map_to_lightningds(levelno, name):
    assert lightningd_level(levelno) == name


@pytest.mark.parametrize(
    ("setting", "level"),
    [
        ("debug", logging.DEBUG),
        ("trace", logging.DEBUG),
        ("info", logging.INFO),
        ("unusual", logging.WARNING),
        ("broken", logging.ERROR),
        (["unusual", "debug:plugin-frostfed"], logging.DEBUG),
        (["unusual", "debug:channeld"], logging.WARNING),
        (None, logging.INFO),
    ],
)
def test_the_nodes_log_level_decides_what_the_plugin_sends(setting, level):
    assert python_level(setting, "plugin-frostfed-plugin") == level


async def test_the_ledger_commands_of_a_member(tmp_path):
    from types import SimpleNamespace

    from frostfed.bitcoin.taproot import address_from_script
    from frostfed.federation import commands
    from frostfed.federation.commands import RpcError, dispatch
    from frostfed.federation.service import FederationService

    ledger = Ledger(tmp_path / "ledger.sqlite")
    svc = FederationService(SimpleNamespace(ledger=ledger, network="regtest"), None)  # type: ignore[arg-type]
    addr = address_from_script(SCRIPT, "regtest")
    first = await dispatch(svc, "frost-ledger-credit", [addr, 700, "w1"])
    retry = await dispatch(svc, "frost-ledger-credit", {"address": addr, "sats": 700, "key": "w1"})
    assert (first["credited"], retry["credited"]) == (True, False)
    assert retry["total_credited"] == 700 and retry["available"] == 700
    with pytest.raises(RpcError) as e:
        await dispatch(svc, "frost-ledger-credit", [addr, 701, "w1"])
    assert e.value.code == commands.INVALID_PARAMS and "already used" in e.value.message
    with pytest.raises(RpcError) as e:
        await dispatch(svc, "frost-ledger-credit", ["bc1q" + "q" * 38, 5, "w2"])  # a mainnet address on regtest
    assert e.value.code == commands.INVALID_PARAMS
    debts = await dispatch(svc, "frost-ledger", [])
    assert debts == {"debts": [{"address": addr, "total_credited": 700, "paid": 0, "reserved": 0, "available": 700}]}
    history = await dispatch(svc, "frost-ledger-history", [addr])
    assert [(c["key"], c["sats"], c["address"]) for c in history["credits"]] == [("w1", 700, addr)]
    assert history["payouts"] == []
    ledger.close()


def test_a_missing_or_damaged_lightningd_bundle_is_reported(tmp_path, monkeypatch):
    import lightningd_bundle

    monkeypatch.setenv("PATH", str(tmp_path))  # no lightningd here
    monkeypatch.setattr(lightningd_bundle, "CACHE", tmp_path / "cache")
    monkeypatch.setenv("FROSTFED_CLN_BUNDLE", str(tmp_path / "nowhere.tar.xz"))
    missing = lightningd_bundle.provide()
    assert missing is not None and "is missing" in missing and "put it on PATH" in missing
    damaged = tmp_path / "damaged.tar.xz"
    damaged.write_bytes(b"not the bundle")
    monkeypatch.setenv("FROSTFED_CLN_BUNDLE", str(damaged))
    wrong = lightningd_bundle.provide()
    assert wrong is not None and "sha256" in wrong and lightningd_bundle.SHA256 in wrong
    assert not (tmp_path / "cache").exists()  # nothing unpacked from a file that is not the bundle
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="sha256"):
        lightningd_bundle.require()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="sha256"):
        lightningd_bundle.require()
