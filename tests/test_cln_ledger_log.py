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
