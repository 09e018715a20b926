"""Unix socket paths longer than the kernel's limit (107 bytes in `sun_path`).

A data directory deep in a file system (a test's temporary directory, a long home) gives a control
socket path the kernel refuses with "AF_UNIX path too long". As pyln-client does for lightningd's
socket, such a path is reached through an open descriptor of its directory, `/proc/self/fd/<n>/<name>`,
which is short whatever the directory; no process-wide `chdir` (other threads keep working)."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

SUN_PATH_MAX = 107
"""Bytes a socket path may hold (`sizeof(sun_path)` is 108 on Linux, with the terminating NUL)."""


class SocketPathError(OSError):
    """The socket path cannot be used on this system (too long, and no /proc to shorten it)."""


@contextlib.contextmanager
def usable(path: Path) -> Iterator[str]:
    """A name for `path` that bind() and connect() accept, valid inside the `with` block."""
    text = os.fsencode(str(path))
    if len(text) <= SUN_PATH_MAX:
        yield str(path)
        return
    try:
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise SocketPathError(e.errno, f"cannot open the socket's directory: {e.strerror}", str(path.parent)) from None
    try:
        short = f"/proc/self/fd/{fd}/{path.name}"
        if not os.path.isdir(f"/proc/self/fd/{fd}") or len(os.fsencode(short)) > SUN_PATH_MAX:
            raise SocketPathError(
                errno.ENAMETOOLONG,
                f"socket path is {len(text)} bytes, over the limit of {SUN_PATH_MAX}; use a shorter data directory",
            )
        yield short
    finally:
        os.close(fd)
