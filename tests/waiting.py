"""Synchronising on observable state: poll a predicate until it holds, with a deadline, instead of
sleeping a fixed time and hoping the system got there (a flake under load, and slow when it is idle).

`wait_for` (blocking, for tests that drive member processes) and `wait_for_async` (inside an event
loop) return the predicate's first truthy value, so a test can wait for a record and then assert on
it; at the deadline they raise TimeoutError naming `what` was awaited and the last value seen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T], timeout: float = 30.0, what: str = "the condition", interval: float = 0.05
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what} (last: {value!r})")
        time.sleep(interval)


async def wait_for_async(
    predicate: Callable[[], T], timeout: float = 30.0, what: str = "the condition", interval: float = 0.01
) -> T:
    """As `wait_for`, with the event loop running between polls."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what} (last: {value!r})")
        await asyncio.sleep(interval)
