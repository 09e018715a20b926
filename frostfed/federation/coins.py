"""Finding the federation's coins and choosing which to spend.

The coordinator takes its coins from its own chain index (no `scantxoutset`: a payout's cost does not
grow with the UTXO set), keeps only what the policy will accept anyway (confirmed; coinbase outputs
mature; not spent in the mempool), and always spends the epoch's anchor first, with the change to the
canonical change path: every member checks both on its own index before signing. This is only the
proposal."""

from __future__ import annotations

from dataclasses import dataclass

from frostfed.bitcoin.chain import ChainSource, Utxo
from frostfed.bitcoin.chain_checks import COINBASE_MATURITY
from frostfed.bitcoin.chain_index import IndexedCoin
from frostfed.federation.chain_view import ChainView
from frostfed.federation.epoch_keys import CHANGE, EpochKeys


@dataclass(frozen=True)
class Coin:
    utxo: Utxo
    path: tuple[int, int]


class CoinError(Exception):
    pass


class AnchorPending(CoinError):
    """The anchor is spent by a transaction that is not confirmed yet: the next payout must wait."""

    def __init__(self, message: str, anchor: tuple[str, int]) -> None:
        super().__init__(message)
        self.anchor = anchor


@dataclass(frozen=True)
class PayoutCoins:
    anchor: Coin
    others: list[Coin]  # every other spendable coin of the epoch
    change_path: tuple[int, int]


def _spendable(c: IndexedCoin, tip: int, min_confirmations: int) -> bool:
    need = COINBASE_MATURITY if c.coinbase else min_confirmations
    return c.confirmations(tip) >= need


def _live(chain: ChainSource, c: IndexedCoin) -> Coin | None:
    utxo = chain.get_utxo(c.txid, c.vout)  # a mempool spend counts as spent
    if utxo is None or utxo.amount_sats != c.sats or utxo.script_pubkey != c.script:
        return None
    return Coin(utxo, c.path)


def find_coins(view: ChainView, chain: ChainSource, keys: EpochKeys, min_confirmations: int) -> list[Coin]:
    """Every spendable coin of the epoch, from the index (refreshed first)."""
    view.refresh()
    tip = view.index.tip_height()
    coins = []
    for c in view.coins(keys.epoch):
        if _spendable(c, tip, min_confirmations) and (coin := _live(chain, c)) is not None:
            coins.append(coin)
    return coins


def payout_coins(view: ChainView, chain: ChainSource, keys: EpochKeys, min_confirmations: int) -> PayoutCoins:
    """The anchor, the other spendable coins and the change path of the epoch's next payout."""
    view.refresh()
    anchor = view.anchor(keys.epoch)
    if anchor.outpoint is None:
        raise CoinError("the federation holds no confirmed coin yet")
    coin = view.index.coin(anchor.outpoint)
    if coin is None:  # a block arrived meanwhile
        raise CoinError("the chain moved while the payout was being built; try again")
    tip = view.index.tip_height()
    name = f"{anchor.outpoint[0]}:{anchor.outpoint[1]}"
    if not _spendable(coin, tip, min_confirmations):
        need = COINBASE_MATURITY if coin.coinbase else min_confirmations
        raise CoinError(
            f"the federation's anchor coin {name} has {coin.confirmations(tip)} confirmations and is "
            f"spendable at {need}: every payout spends it, so the next one waits until then"
        )
    live = _live(chain, coin)
    if live is None:
        raise AnchorPending(
            f"the federation's anchor coin {name} is spent by a transaction not yet in a block "
            "(a payout awaits confirmation); the next payout can be made once it confirms",
            anchor.outpoint,
        )
    others = []
    for c in view.coins(keys.epoch):
        if c.outpoint != anchor.outpoint and _spendable(c, tip, min_confirmations) and (o := _live(chain, c)):
            others.append(o)
    return PayoutCoins(live, others, (CHANGE, anchor.change_index))


def select_coins(coins: list[Coin], target_sats: int, fee_per_input: int, first: Coin | None = None) -> list[Coin]:
    """`first` (the anchor), then largest first until the payouts and the fee of the inputs taken so far
    are covered."""
    chosen: list[Coin] = [first] if first is not None else []
    total = sum(c.utxo.amount_sats for c in chosen)
    if chosen and total >= target_sats + fee_per_input * len(chosen):
        return chosen
    for coin in sorted(coins, key=lambda c: (-c.utxo.amount_sats, c.utxo.txid, c.utxo.vout)):
        chosen.append(coin)
        total += coin.utxo.amount_sats
        if total >= target_sats + fee_per_input * len(chosen):
            return chosen
    have = sum(c.utxo.amount_sats for c in coins) + (first.utxo.amount_sats if first is not None else 0)
    raise CoinError(f"the federation holds {have} spendable sats, not enough for {target_sats} sats and fees")
