"""The judges of signing requests: for each request kind, what the coordinator signs and whether a
signer signs it.

`RoastSigning` knows no request kind: it asks the judge of the request's kind. A judge reads only the
member's own chain data and records, so a request signed on a coordinator's word alone cannot exist.
A payout and a PSBT are judged by the payout policy here; a transition by the membership rules, which
`node` wires in as a `SameCheck`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from frostfed.bitcoin.chain import ChainError
from frostfed.bitcoin.chain_checks import ChainChecks, FeeBounds
from frostfed.bitcoin.fee_budget import FeeBudget
from frostfed.bitcoin.policy import CommandPolicy, LedgerPolicy, PayoutPolicy, Policy
from frostfed.bitcoin.standardness import Standardness
from frostfed.federation.chain_view import AnchorPolicy, ChainRefresh
from frostfed.federation.context import MemberContext
from frostfed.federation.fee_bump import replacement_policy
from frostfed.federation.signing_request import SigningRequest, check_psbt, federation_scripts, judge, signing_tasks
from frostfed.frost.roast import SigningTask


class Judge(Protocol):
    """Both methods run in a worker thread and raise PolicyRejection (or ChainError) to refuse."""

    def coordinate(self, req: SigningRequest) -> list[SigningTask]:
        """What the coordinator signs: the sighashes, from its own view of the spent outputs."""
        ...

    def approve(self, req: SigningRequest) -> list[SigningTask]:
        """The signer's whole judgement; what it signs if it accepts."""
        ...

    def close(self) -> None: ...


class SameCheck:
    """A request kind whose coordinator runs the same check as every signer (a transition: each
    member re-derives the transaction from its own records of the change)."""

    def __init__(self, check: Callable[[SigningRequest], list[SigningTask]]) -> None:
        self._check = check

    def coordinate(self, req: SigningRequest) -> list[SigningTask]:
        return self._check(req)

    def approve(self, req: SigningRequest) -> list[SigningTask]:
        return self._check(req)

    def close(self) -> None:
        pass


class PayoutJudge:
    """Payouts, PSBTs and fee bumps: the payout policy on this member's chain source, ledger and anchor chain."""

    def __init__(self, ctx: MemberContext, extra_policies: list[Policy] | None = None) -> None:
        self.ctx = ctx
        self.extra_policies = list(extra_policies or [])
        self._fee_budget: FeeBudget | None = None

    def coordinate(self, req: SigningRequest) -> list[SigningTask]:
        keys = self.ctx.keys
        assert keys is not None
        payout = self.build_policy(req).chain_checks.check(req.tx)
        check_psbt(req, payout)
        return signing_tasks(keys, req, payout)

    def approve(self, req: SigningRequest) -> list[SigningTask]:
        keys = self.ctx.keys
        assert keys is not None
        return judge(keys, req, self.build_policy(req))

    def build_policy(self, req: SigningRequest) -> PayoutPolicy:
        ctx = self.ctx
        if ctx.chain is None:
            raise ChainError("this member has no chain source")
        assert ctx.keys is not None
        s = ctx.policy
        checks = ChainChecks(
            ctx.chain,
            federation_scripts(ctx.keys, req),
            FeeBounds(s.min_feerate, s.max_feerate, s.max_fee_sats),
            s.min_confirmations,
            standardness=Standardness(s.allow_version_3, s.allow_op_return, s.allow_consolidation),
        )
        if self._fee_budget is None:  # its journal is a table of the member's own database
            self._fee_budget = FeeBudget(
                ctx.store.path,
                s.fee_budget_sats,
                s.fee_budget_blocks,
                chain_fees=ctx.chain_view.index.fees_since,  # what the chain shows burnt, by anyone
            )
        policies: list[Policy] = [ChainRefresh(ctx.chain_view)]
        if ctx.ledger is not None:
            policies.append(LedgerPolicy(ctx.ledger, ctx.network))
        if req.kind in ("payout", "psbt", "bump"):  # a transition is held to the anchor by its own checks
            policies.append(AnchorPolicy(ctx.chain_view, ctx.keys, req, refresh=False))
        if s.payout_check_command:
            policies.append(CommandPolicy(s.payout_check_command, ctx.network))
        policies += self.extra_policies
        policies.append(self._fee_budget)  # last: a refusal names the payout's own fault first
        if req.kind == "bump":  # judged as a replacement of this member's own record of the payout
            return replacement_policy(ctx, req, PayoutPolicy(checks, policies), self._fee_budget)
        return PayoutPolicy(checks, policies)

    def close(self) -> None:
        if self._fee_budget is not None:
            self._fee_budget.close()
            self._fee_budget = None
