"""The standalone daemon's logging and the mode of the files it writes.

The log goes to `frostfed.log` in the data directory and to stderr (what a service manager keeps);
SIGHUP reopens the file, so logrotate can move it away and the daemon writes a new one instead of
dying on the signal's default action. Every file the daemon creates is its owner's only (umask 077):
the store holds sealed shares, the ledger and chain index what the pool owes and holds, the log who
was paid."""

from __future__ import annotations

import logging
import os
import signal
import stat
from pathlib import Path

LOG_NAME = "frostfed.log"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_file_handler: logging.FileHandler | None = None


DATA_FILES = ("frostfed.sqlite*", "ledger.sqlite*", "chain.sqlite*", "frostfed.log*", "seal.salt")
"""The daemon's own files in its data directory (which may hold other files too: those are left be)."""


def private_files(data_dir: Path) -> None:
    """From now on files are created 0600 (directories 0700); the daemon's files an earlier version
    left readable by others are made owner-only."""
    os.umask(0o077)
    if not data_dir.is_dir():
        return
    for path in (p for pattern in DATA_FILES for p in data_dir.glob(pattern)):
        try:
            st = path.lstat()
            if stat.S_ISREG(st.st_mode) and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                os.chmod(path, 0o600)
        except OSError:  # gone meanwhile, or not ours: nothing to tighten
            continue


def reopen() -> None:
    """Close the log file and open it again by name (after logrotate moved it)."""
    handler = _file_handler
    if handler is None:
        return
    handler.acquire()
    try:
        if handler.stream is not None:
            handler.stream.close()
        handler.stream = handler._open()
    finally:
        handler.release()
    logging.getLogger(__name__).info("log file reopened")


def setup(data_dir: Path, level: int | str = logging.INFO) -> None:
    global _file_handler
    if isinstance(level, str):
        level = LEVELS[level]
    private_files(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter(_FORMAT)
    root = logging.getLogger()
    root.setLevel(level)
    if _file_handler is not None:  # set up once per process
        return
    _file_handler = logging.FileHandler(data_dir / LOG_NAME)
    to_stderr = logging.StreamHandler()
    for handler in (_file_handler, to_stderr):
        handler.setFormatter(fmt)
        root.addHandler(handler)
    # Until the event loop takes SIGHUP over (daemon.run), a plain handler keeps it from killing us.
    signal.signal(signal.SIGHUP, lambda _sig, _frame: reopen())
