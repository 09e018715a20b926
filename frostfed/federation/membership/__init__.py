"""Membership changes (join, leave, expel) as one explicit state machine.

| module | holds |
|---|---|
| `record.py` | the change's states and its one durable record (the store's `changes` table) |
| `transitions.py` | the table of every state change, and the inputs that cause them |
| `machine.py`, `proposer.py`, `participant.py` | the machine without I/O: the proposer's and a participant's side |
| `effects.py` | what the machine asks its driver to do |
| `driver.py`, `executor.py` | `Membership`: feeds the machine and carries out its effects |
| `host.py` | `Hooks`: what the driver is handed beyond the member's context (the DKG driver, activation, signing) |
| `bond_exchange.py` | the joiner's bond: its coin offered, its input signed |
| `transition_tx.py` | the proposer's transition transaction, built and signed with ROAST |
| `activation.py` | the activation watcher: the transition found on this member's own chain |
| `sweep.py` | the retired epoch's share deleted, the offline clock, automatic expulsion |
| `transition_check.py` | the signer's check of a transition (`transition_tasks`) |
| `admission.py` | the operator's admission command |

Admission and expulsion rest on this member's own judgement (`change_judgement`), which the machine
asks for every proposal, its own included.
"""

from frostfed.federation.membership.driver import Membership, MembershipError

__all__ = ["Membership", "MembershipError"]
