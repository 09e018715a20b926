"""Federation: one member's protocol parts over the network, and their persistence.

- `node.Member`: the composition root. It builds the `context.MemberContext` (identity, keys, store,
  chain view, settings, send/spawn, liveness) the parts share, routes each message kind to its part,
  and keeps liveness (heartbeats), the active epoch and address announcements.
- `messages`: the protocol's reference: every message kind (`Kind`) and its typed, strictly decoded form.
- `roast_signing`: ROAST over the network, coordinator and signer; what a request kind may sign is its
  judge's decision (`signing_judges`: the payout policy; membership's transition check).
- `dkg_driver`: the epoch's ChillDKG attempts (`dkg_run` is one attempt's sans-I/O state machine).
- `membership/`: membership changes (join, leave, expel) and the epoch transitions they sign, as one
  state machine without I/O (states, one transition table, one durable record per change in the
  store) and the driver that carries out its effects; see its package docstring for the modules.
- `store`: the member's SQLite record (epochs, nonce journal, requests, membership changes); `chain_view`, `coins`,
  `signing_request`, `transition`: what a member reads from its chain and judges with.
"""
