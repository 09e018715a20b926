"""Transport: authenticated channels, reliable delivery and echo broadcast.

Layers, bottom up (each a `Channel` except the broadcast):
- `tcp.NoiseChannel`: BOLT 8 Noise links over TCP among members (`noise` holds the sans-I/O handshake
  and framing); in Core Lightning, a custom-message channel takes its place.
- `reliable.ReliableChannel`: exactly-once, in-order messages up to 4 MiB (`reliable_core.ReliableCore` sans-I/O).
- `mux.Mux`: numbered ports over one reliable channel.
- `round_echo.RoundEchoBroadcast`: echo broadcast with equivocation proofs for rounds where every
  member broadcasts once, with O(n) frames and signature checks per member (`RoundEchoCore` sans-I/O);
  the federation's DKG runs on it.
- `echo.EchoBroadcast`: the same guarantees per sender, with O(n²) frames (`EchoCore` sans-I/O); not
  part of a member's stack, kept as the general protocol and the benchmark's baseline.
  Both cores share statements, proofs, events and session handling (`echo_base`), and both run on
  `broadcast_driver.BroadcastDriver`, the asyncio driver around a sans-I/O core.
`wire` holds what every frame shares; `wire_reliable`, `wire_echo`, `wire_round` and `wire_mux` each hold
one family of frames with its decoder.
"""
