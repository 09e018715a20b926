"""Front ends: the Core Lightning plugin, the standalone daemon, the CLI and the demo."""
