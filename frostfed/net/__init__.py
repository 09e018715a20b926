"""Transport: authenticated channels, reliable delivery and echo broadcast.

Layers, bottom up (each a `Channel` except the broadcast):
- `tcp.NoiseChannel`: BOLT 8 Noise links over TCP among members (`noise` holds the sans-I/O handshake
  and framing); in Core Lightning, a custom-message channel takes its place.
- `faults.FaultyChannel`: optional, for tests: drops, duplicates, delays and cuts.
- `reliable.ReliableChannel`: exactly-once, in-order messages up to 4 MiB (`ReliableCore` sans-I/O).
- `mux.Mux`: numbered ports over one reliable channel.
- `echo.EchoBroadcast`: echo broadcast with equivocation proofs (`EchoCore` sans-I/O).
- `round_echo.RoundEchoBroadcast`: the same guarantees for rounds where every member broadcasts once,
  with O(n) frames and signature checks per member instead of O(n²) (`RoundEchoCore` sans-I/O).
  Both cores share their session handling (`echo.SessionCore`), and both run on
  `broadcast_driver.BroadcastDriver`, the asyncio driver around a sans-I/O core.
`wire` holds every frame format and its decoder.
"""
