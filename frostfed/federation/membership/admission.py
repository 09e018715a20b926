"""The operator's admission command, asked when no operator decision covers a proposal."""

from __future__ import annotations

import json
import shlex
import subprocess
from typing import Any

from frostfed.federation.change_judgement import CommandVerdict


def ask_admission_command(command: str, proposal: dict[str, Any], timeout: float = 30.0) -> CommandVerdict:
    """`membership.admission_command`: the decoded proposal on stdin, `{"accept": bool, "reason": ...}` on
    stdout. Anything else (an error, a timeout, another answer) is a refusal: a broken command admits
    no one."""
    argv = shlex.split(command)
    what = f"admission command {argv[0]!r}" if argv else "admission command"
    try:
        proc = subprocess.run(argv, input=json.dumps(proposal), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return CommandVerdict(False, f"{what} gave no answer within {timeout:.0f} s")
    except (OSError, ValueError) as e:
        return CommandVerdict(False, f"{what} could not run: {e}")
    if proc.returncode != 0:
        return CommandVerdict(False, f"{what} exited with {proc.returncode}: {proc.stderr.strip()[-300:]}")
    try:
        answer = json.loads(proc.stdout)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get("accept"), bool):
        return CommandVerdict(False, f"{what} answered {proc.stdout.strip()[:200]!r}, not {{'accept': bool}}")
    return CommandVerdict(answer["accept"], str(answer.get("reason") or "no reason given")[:300])
