"""The refusal every payout check raises, in a module of its own so the chain checks, the
standardness rules, the fee budget and the pluggable policies can all raise it without importing one
another."""

from __future__ import annotations


class PolicyRejection(Exception):
    """A signing request this member refuses. `code` is stable for programs; `message` is for people."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
