"""A member identity sealed under a passphrase: useless without it, and the daemon opens it from
`member.passphrase_file`."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_federation_config import toml_of, valid_doc

from frostfed.federation.identity import IdentityError, create_identity_file, load_identity_file


def test_sealed_identity_round_trip_and_refusals(tmp_path: Path) -> None:
    path = tmp_path / "id.key"
    ident = create_identity_file(path, b"correct horse")
    text = path.read_text()
    assert ident.private_key.secret.hex() not in text
    assert load_identity_file(path, b"correct horse").id == ident.id
    with pytest.raises(IdentityError, match="sealed"):
        load_identity_file(path)
    with pytest.raises(IdentityError, match="does not open"):
        load_identity_file(path, b"wrong")
    path.write_text(text.replace(":", ";", 1))
    with pytest.raises(IdentityError):
        load_identity_file(path, b"correct horse")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "frostfed", *args], capture_output=True, text=True, timeout=60)


def test_the_daemon_opens_a_sealed_identity_with_its_passphrase_file(tmp_path: Path) -> None:
    (tmp_path / "pass").write_text("correct horse\n")
    made = _cli("keygen", str(tmp_path / "identity.key"), "--passphrase-file", str(tmp_path / "pass"))
    assert made.returncode == 0, made.stderr
    my_id = made.stdout.strip()
    doc = valid_doc()
    doc["federation"]["members"][0]["id"] = my_id
    doc["member"]["passphrase_file"] = "pass"
    config = tmp_path / "member.toml"
    config.write_text(toml_of(doc))

    (tmp_path / "pass").write_text("wrong\n")
    refused = _cli("run", "--config", str(config))
    assert refused.returncode == 2 and "does not open" in refused.stderr and "Traceback" not in refused.stderr

    (tmp_path / "pass").write_text("correct horse\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "frostfed", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        sock = tmp_path / "data" / "frostfed-rpc"
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        status = _cli("-d", str(tmp_path / "data"), "frost-status")
        assert status.returncode == 0 and my_id in status.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
