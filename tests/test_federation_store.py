"""A member's durable state: the SQLite store (nonce journal above all), sealed secrets, the identity file."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from coincurve import PrivateKey

from frostfed.federation.identity import Identity, IdentityError, create_identity_file, load_identity_file
from frostfed.federation.nonce_journal import NonceReuseError
from frostfed.federation.sealing import Sealer, SealError
from frostfed.federation.store import EpochRecord, Store
from frostfed.federation.store_db import StoreError


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "frostfed.sqlite"


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    s = Store(db)
    yield s
    s.close()


def epoch_record(epoch: int, status: str = "active", sealed: bytes | None = b"sealed") -> EpochRecord:
    members = [PrivateKey().public_key.format() for _ in range(3)]
    return EpochRecord(
        epoch=epoch,
        status=status,
        members=members,
        threshold=2,
        group_key=PrivateKey().public_key.format(),
        chain_code=os.urandom(32),
        pubshares=[PrivateKey().public_key.format() for _ in range(3)],
        recovery=os.urandom(300),
        sealed_share=sealed,
    )


# store


def test_store_runs_in_wal_mode_with_full_sync(store: Store, db: Path) -> None:
    assert db.exists()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_nonce_is_used_once(store: Store) -> None:
    store.issue_nonce(b"n1", "req")
    assert store.nonce_counts() == {"issued": 1}
    store.use_nonce(b"n1")
    assert store.nonce_counts() == {"used": 1}
    with pytest.raises(NonceReuseError):
        store.use_nonce(b"n1")
    assert store.nonce_counts() == {"used": 1}


def test_an_unknown_nonce_cannot_be_used(store: Store) -> None:
    with pytest.raises(NonceReuseError):
        store.use_nonce(b"never issued")


def test_a_nonce_is_issued_once(store: Store) -> None:
    store.issue_nonce(b"n1", "a")
    with pytest.raises(NonceReuseError):
        store.issue_nonce(b"n1", "b")
    store.use_nonce(b"n1")
    with pytest.raises(NonceReuseError):  # nor reissued after use
        store.issue_nonce(b"n1", "c")


def test_restart_discards_issued_nonces_and_they_can_never_be_used(store: Store) -> None:
    for k in (b"a", b"b", b"c"):
        store.issue_nonce(k, "r")
    store.use_nonce(b"a")
    assert store.discard_issued_nonces() == 2
    assert store.nonce_counts() == {"used": 1, "discarded": 2}
    for k in (b"a", b"b", b"c"):
        with pytest.raises(NonceReuseError):
            store.use_nonce(k)
    assert store.discard_issued_nonces() == 0


def test_discard_nonce_touches_only_an_issued_nonce(store: Store) -> None:
    store.issue_nonce(b"used", "r")
    store.use_nonce(b"used")
    store.issue_nonce(b"open", "r")
    store.discard_nonce(b"used")
    store.discard_nonce(b"open")
    store.discard_nonce(b"unknown")
    assert store.nonce_counts() == {"used": 1, "discarded": 1}
    with pytest.raises(NonceReuseError):
        store.use_nonce(b"open")


def test_a_second_store_on_the_same_file_sees_committed_state(store: Store, db: Path) -> None:
    """As after a crash: nothing is held back in a transaction, every change is on disk once made."""
    rec = epoch_record(0)
    store.save_epoch(rec)
    store.issue_nonce(b"issued", "r")
    store.issue_nonce(b"used", "r")
    store.use_nonce(b"used")
    store.save_request("r1", "payout", b"\x02" * 33, "signing", {"tx": "00"})
    store.record_address(0, 0, "bcrt1p0")
    store.set_meta("dkg_attempt", "3")

    other = Store(db)  # the first one is never closed, as in a crash
    try:
        assert other.active_epoch() == rec
        assert other.get_meta("dkg_attempt") == "3"
        assert other.requests("r1")[0]["status"] == "signing"
        assert other.next_address_index(0) == 1
        with pytest.raises(NonceReuseError):
            other.use_nonce(b"used")
        assert other.discard_issued_nonces() == 1
    finally:
        other.close()
    with pytest.raises(NonceReuseError):  # the discard is seen by the first connection too
        store.use_nonce(b"issued")


def test_two_stores_race_for_one_nonce_and_only_one_wins(store: Store, db: Path) -> None:
    other = Store(db)
    try:
        store.issue_nonce(b"n", "r")
        other.use_nonce(b"n")
        with pytest.raises(NonceReuseError):
            store.use_nonce(b"n")
    finally:
        other.close()


def test_a_session_uses_its_nonce_and_issues_the_next_in_one_write(store: Store) -> None:
    store.issue_nonce(b"n1", "r")
    store.use_nonce_and_issue(b"n1", b"n2", "r")
    assert store.nonce_counts() == {"used": 1, "issued": 1}
    with pytest.raises(NonceReuseError):  # n1 again: refused, and n3 is not issued
        store.use_nonce_and_issue(b"n1", b"n3", "r")
    store.issue_nonce(b"n3", "r")
    with pytest.raises(NonceReuseError):  # the next one already known: n3 stays unused
        store.use_nonce_and_issue(b"n3", b"n2", "r")
    assert store.nonce_counts() == {"used": 1, "issued": 2}
    store.use_nonce(b"n3")
    with pytest.raises(NonceReuseError):
        store.use_nonce_and_issue(b"never issued", b"n4", "r")
    assert store.nonce_counts() == {"used": 2, "issued": 1}


def test_an_accepted_request_and_its_first_nonce_are_one_write(store: Store) -> None:
    store.issue_nonce_for(b"n1", "r1", "payout", b"\x02" * 33, {"tx": "00"})
    assert store.requests("r1")[0]["status"] == "accepted" and store.nonce_counts() == {"issued": 1}
    with pytest.raises(NonceReuseError):  # a repeated nonce: the second request is not saved either
        store.issue_nonce_for(b"n1", "r2", "payout", b"\x02" * 33, {"tx": "01"})
    assert store.requests("r2") == []
    store.issue_nonce_for(b"n2", "r3", "payout", b"\x02" * 33, None)  # this member's own request
    assert store.requests("r3") == [] and store.nonce_counts() == {"issued": 2}


_CRASH_AFTER_THE_WRITE = """
import os, sys
from pathlib import Path
from frostfed.federation.store import Store
store = Store(Path(sys.argv[1]))
store.issue_nonce(b"first", "r")
store.use_nonce_and_issue(b"first", b"next", "r")
print("written", flush=True)
sys.stdin.read()  # killed here, before any partial signature could leave
"""


def test_a_member_killed_after_the_session_write_never_reuses_either_nonce(db: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CRASH_AFTER_THE_WRITE, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
    finally:
        proc.kill()  # SIGKILL: no cleanup, no close
        proc.wait()
    restarted = Store(db)
    try:
        assert restarted.nonce_counts() == {"used": 1, "issued": 1}
        assert restarted.discard_issued_nonces() == 1  # what a member does first at start
        for pubnonce in (b"first", b"next"):
            with pytest.raises(NonceReuseError):
                restarted.use_nonce(pubnonce)
            with pytest.raises(NonceReuseError):
                restarted.use_nonce_and_issue(pubnonce, b"other", "r")
        assert restarted.nonce_counts() == {"used": 1, "discarded": 1}
    finally:
        restarted.close()


def test_epochs_round_trip_in_order(store: Store) -> None:
    recs = [epoch_record(2, "pending", None), epoch_record(0, "retired"), epoch_record(1)]
    for r in recs:
        store.save_epoch(r)
    assert store.epochs() == sorted(recs, key=lambda r: r.epoch)
    assert store.active_epoch() == recs[2]
    replaced = epoch_record(1, "retired")
    store.save_epoch(replaced)
    assert store.active_epoch() is None
    assert store.epochs()[1] == replaced


def test_an_epoch_with_an_unknown_status_is_refused(store: Store) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        store.save_epoch(epoch_record(0, "bogus"))
    assert store.epochs() == []


def test_meta_values_are_replaced(store: Store) -> None:
    assert store.get_meta("k") is None
    store.set_meta("k", "1")
    store.set_meta("k", "2")
    assert store.get_meta("k") == "2"


def test_requests_are_saved_updated_and_listed(store: Store) -> None:
    coord = PrivateKey().public_key.format()
    store.save_request("a", "payout", coord, "signing", {"tx": "aa"})
    store.save_request("b", "psbt", coord, "refused", {"tx": "bb"}, {"reason": "no"})
    store.update_request("a", "broadcast", {"txid": "11" * 32})
    rows = store.requests()
    assert [r["id"] for r in rows] == ["a", "b"]
    a, b = rows
    assert (a["kind"], a["coordinator"], a["status"], a["request"]) == (
        "payout",
        coord.hex(),
        "broadcast",
        {"tx": "aa"},
    )
    assert a["outcome"] == {"txid": "11" * 32}
    assert a["updated"] >= a["created"]
    assert b["outcome"] == {"reason": "no"}
    assert store.requests("b") == [b]
    assert store.requests("missing") == []


def test_saving_a_request_again_keeps_its_payload_and_updates_status(store: Store) -> None:
    coord = b"\x03" * 33
    store.save_request("a", "payout", coord, "accepted", {"tx": "aa"})
    store.save_request("a", "payout", coord, "signed", {"tx": "changed"}, {"txid": "x"})
    (row,) = store.requests("a")
    assert (row["status"], row["request"], row["outcome"]) == ("signed", {"tx": "aa"}, {"txid": "x"})


def test_an_empty_outcome_is_kept_as_empty_not_lost(store: Store) -> None:
    store.save_request("a", "payout", b"\x02" * 33, "failed", {}, {})
    assert store.requests("a")[0]["outcome"] == {}
    store.update_request("a", "failed", {})
    assert store.requests("a")[0]["outcome"] == {}


def test_an_empty_request_id_finds_nothing_rather_than_everything(store: Store) -> None:
    store.save_request("a", "payout", b"\x02" * 33, "signing", {})
    assert store.requests("") == []


def test_address_index_per_epoch(store: Store) -> None:
    assert store.next_address_index(0) == 0
    store.record_address(0, 0, "addr0")
    store.record_address(0, 1, "addr1")
    store.record_address(0, 1, "addr1-again")  # a repeated announcement changes nothing
    store.record_address(1, 5, "other-epoch")
    assert store.next_address_index(0) == 2
    assert store.address_count(0) == 2
    assert store.next_address_index(1) == 6
    assert store.address_count(1) == 1
    assert store.next_address_index(7) == 0


# sealing


CTX = b"frostfed/share/\x00\x00\x00\x00" + b"\x02" * 33


@pytest.fixture(scope="module")
def sealer() -> Sealer:
    return Sealer.from_seed(b"\x11" * 32)


@pytest.mark.parametrize("secret", [b"", b"\x00", os.urandom(32), os.urandom(5000)])
def test_seal_and_open_round_trip(sealer: Sealer, secret: bytes) -> None:
    sealed = sealer.seal(secret, CTX)
    assert len(secret) < 16 or secret not in sealed  # (a short secret may occur in random bytes by chance)
    assert len(sealed) == 1 + 12 + len(secret) + 16
    assert sealer.open(sealed, CTX) == secret
    assert Sealer.from_seed(b"\x11" * 32).open(sealed, CTX) == secret  # the key is derived, not random


def test_sealing_twice_gives_different_ciphertexts(sealer: Sealer) -> None:
    assert sealer.seal(b"s" * 32, CTX) != sealer.seal(b"s" * 32, CTX)


def test_wrong_key_does_not_open(sealer: Sealer) -> None:
    sealed = sealer.seal(b"secret", CTX)
    with pytest.raises(SealError):
        Sealer.from_seed(b"\x12" * 32).open(sealed, CTX)


def test_wrong_context_does_not_open(sealer: Sealer) -> None:
    sealed = sealer.seal(b"secret", CTX)
    with pytest.raises(SealError):
        sealer.open(sealed, CTX[:-1] + b"\x03")
    with pytest.raises(SealError):
        sealer.open(sealed, b"")


def test_every_tampered_byte_is_refused(sealer: Sealer) -> None:
    sealed = sealer.seal(os.urandom(32), CTX)
    for i in range(len(sealed)):
        bad = bytearray(sealed)
        bad[i] ^= 0x80
        with pytest.raises(SealError):
            sealer.open(bytes(bad), CTX)


def test_truncated_or_extended_sealed_data_is_refused(sealer: Sealer) -> None:
    sealed = sealer.seal(os.urandom(32), CTX)
    for cut in range(len(sealed)):
        with pytest.raises(SealError):
            sealer.open(sealed[:cut], CTX)
    with pytest.raises(SealError):
        sealer.open(sealed + b"\x00", CTX)


def test_passphrase_sealer_depends_on_passphrase_and_salt() -> None:
    salt = b"\x05" * 16
    a = Sealer.from_passphrase(b"correct horse", salt)
    sealed = a.seal(b"share", CTX)
    assert Sealer.from_passphrase(b"correct horse", salt).open(sealed, CTX) == b"share"
    with pytest.raises(SealError):
        Sealer.from_passphrase(b"correct horsf", salt).open(sealed, CTX)
    with pytest.raises(SealError):
        Sealer.from_passphrase(b"correct horse", b"\x06" * 16).open(sealed, CTX)


@pytest.mark.parametrize(("passphrase", "salt"), [(b"", b"\x05" * 16), (b"pw", b""), (b"pw", b"\x05" * 15)])
def test_an_empty_passphrase_or_a_short_salt_is_refused(passphrase: bytes, salt: bytes) -> None:
    with pytest.raises(ValueError):
        Sealer.from_passphrase(passphrase, salt)


@pytest.mark.parametrize("length", [0, 16, 31, 33])
def test_sealing_key_must_be_32_bytes(length: int) -> None:
    with pytest.raises(ValueError):
        Sealer(bytes(length))


# identity


def test_created_identity_file_is_owner_only_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "identity.key"
    ident = create_identity_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_identity_file(path)
    assert loaded.id == ident.id
    assert len(ident.id) == 33 and ident.id[0] in (2, 3)
    assert loaded.host_seed() == ident.host_seed() != ident.seal_seed()


def test_an_existing_identity_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    create_identity_file(path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        create_identity_file(path)
    assert path.read_bytes() == before


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o644, 0o666, 0o610])
def test_identity_file_readable_or_writable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "identity.key"
    create_identity_file(path)
    path.chmod(mode)
    with pytest.raises(IdentityError, match="chmod 600"):
        load_identity_file(path)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_owner_only_modes_are_accepted(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "identity.key"
    create_identity_file(path)
    path.chmod(mode)
    assert load_identity_file(path).id


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\n",
        b"zz" * 32,
        b"ab" * 31,
        b"ab" * 33,
        b"00" * 32,  # zero is not a secret key
        b"ff" * 32,  # above the group order
        b"\xff\xfe\x80 binary",
        ("ab" * 32 + "\n" + "cd" * 32).encode(),
    ],
)
def test_malformed_identity_files_are_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "identity.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, content)
    os.close(fd)
    with pytest.raises(IdentityError, match=str(path)):
        load_identity_file(path)


def test_missing_identity_file(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="cannot read"):
        load_identity_file(tmp_path / "absent.key")


def test_identity_repr_never_shows_the_secret() -> None:
    secret = bytes.fromhex("a1" * 32)
    ident = Identity(secret)
    for text in (repr(ident), str(ident), f"{ident}", repr([ident])):
        assert secret.hex() not in text
        assert ident.id.hex() in text


@pytest.mark.parametrize("content", [b"this is not a database" * 100, b"SQLite format 3\x00" + b"\xff" * 4000])
def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "frostfed.sqlite"
    path.write_bytes(content)
    with pytest.raises(StoreError, match=str(path)):
        Store(path)
    assert path.read_bytes() == content  # left as it was, for the operator to look at


def test_a_directory_in_place_of_the_database_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "frostfed.sqlite").mkdir()
    with pytest.raises(StoreError):
        Store(tmp_path / "frostfed.sqlite")


OLD_EPOCHS = """CREATE TABLE epochs (
    epoch INTEGER PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('active', 'pending', 'retired')),
    members TEXT NOT NULL, threshold INTEGER NOT NULL, group_key BLOB NOT NULL, chain_code BLOB NOT NULL,
    pubshares TEXT NOT NULL, recovery BLOB NOT NULL, sealed_share BLOB, created REAL NOT NULL
)"""


def test_a_database_from_before_activation_txids_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "frostfed.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(OLD_EPOCHS)
    conn.execute(
        "INSERT INTO epochs VALUES(0, 'active', '[]', 2, x'02', x'00', '[]', x'01', NULL, 0)",
    )
    conn.commit()
    conn.close()
    store = Store(path)
    try:
        (old,) = store.epochs()
        assert (old.epoch, old.status, old.activation_txid) == (0, "active", None)
        rec = dataclasses.replace(epoch_record(1, "pending"), activation_txid="ab" * 32)
        store.save_epoch(rec)
        assert store.epoch(1) == rec
    finally:
        store.close()


def test_epoch_lookup_delete_and_activation_txid(store: Store) -> None:
    rec = dataclasses.replace(epoch_record(4, "pending"), activation_txid="cd" * 32)
    store.save_epoch(rec)
    assert store.epoch(4) == rec
    assert store.epoch(5) is None
    store.delete_epoch(4)
    assert store.epoch(4) is None and store.epochs() == []


def test_member_directory_round_trips(store: Store, db: Path) -> None:
    assert store.directory() == {}
    d = {PrivateKey().public_key.format(): "10.0.0.1:9735", PrivateKey().public_key.format(): "[::1]:1"}
    store.save_directory(d)
    other = Store(db)
    try:
        assert other.directory() == d
    finally:
        other.close()
