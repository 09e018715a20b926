"""What a member is busy with, for `frost-status`: the membership change it proposes and whom it is
waiting for, and the signing requests still open.

A change waits minutes for answers (a DKG that needs every new member, a joiner's bond offer and
signature); an operator must be able to see whom it waits for while it waits, and the final error
names them, so an unreachable joiner is not a silent five-minute hang."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

OPEN_REQUESTS = ("signing", "accepted", "broadcast")
"""Request statuses not yet final: coordinating, agreed to sign, waiting for a confirmation."""
MAX_SHOWN = 20


@dataclass(frozen=True)
class Wait:
    """One step of a long operation: what it waits for, from whom, since when."""

    what: str
    peers: tuple[bytes, ...]
    since: float = field(default_factory=time.time)


def _dkg_missing(member: Any, wait: Wait) -> list[bytes] | None:
    """The members whose message the DKG run of this member still lacks, in its current round."""
    run = member.dkg.run
    if run is None or not set(run.members) <= set(wait.peers) | {member.me}:
        return None
    for got in (run.hostkeys, run.pmsgs1, run.pmsgs2):
        missing = [m for m in run.members if m not in got]
        if missing:
            return missing
    return None


def awaited(member: Any, wait: Wait) -> list[bytes]:
    """Of the peers a step waits for, the ones holding it up: those not heard from lately; when all
    are up and it is a DKG, those whose message of the current round it lacks; else all of them.
    (An echo broadcast delivers nothing while one member is silent, so a DKG with a silent member
    lacks everyone's message: the silent ones are named first.)"""
    others = [p for p in wait.peers if p != member.me]
    silent = [p for p in others if not member.online(p)]
    if silent:
        return silent
    if wait.what.startswith("the DKG"):
        missing = _dkg_missing(member, wait)
        if missing:
            return [m for m in missing if m != member.me] or others
    return others


def describe(member: Any, wait: Wait) -> dict[str, Any]:
    now = time.time()
    return {
        "waiting_for": wait.what,
        "seconds": round(now - wait.since, 1),
        "from": [
            {
                "id": p.hex(),
                "online": member.online(p),
                "last_seen_seconds_ago": round(now - member.last_seen[p], 1) if p in member.last_seen else None,
            }
            for p in awaited(member, wait)
        ],
    }


def no_answer(member: Any, wait: Wait | None) -> str:
    """The final error of a step that timed out: who did not answer."""
    if wait is None:
        return "no answer in time"
    silent = awaited(member, wait)
    never = [p for p in silent if p not in member.last_seen]
    names = ", ".join(p.hex() + (" (never seen)" if p in never else " (offline)" if not member.online(p) else "")
                      for p in silent)
    return f"no answer in time: {wait.what} got none from {names}" if names else f"no answer in time: {wait.what}"


def open_requests(member: Any) -> list[dict[str, Any]]:
    """Signing requests not yet final, newest first (the most recent few)."""
    now = time.time()
    return [
        {"id": rid, "kind": kind, "status": status, "coordinator": coordinator, "seconds_ago": round(now - created, 1)}
        for rid, kind, coordinator, status, created in member.store.open_request_rows(OPEN_REQUESTS, MAX_SHOWN)
    ]


def _running_dkg(member: Any) -> Wait | None:
    """A DKG this member takes part in (the founding one, or a change another member proposed); its
    seconds count from the run's last progress."""
    run = member.dkg.run
    if run is None:
        return None
    since = member.dkg.last_progress or time.time()
    return Wait(f"the DKG of epoch {run.epoch} (attempt {run.attempt})", tuple(run.members), since)


def status(member: Any) -> dict[str, Any]:
    membership = member.membership
    wait = membership.waiting or _running_dkg(member)
    return {
        "change": membership.status()["in_progress"],
        "waiting": None if wait is None else describe(member, wait),
        "requests": open_requests(member),
    }
