#!/usr/bin/env python3
"""A plugin that writes raw text to its stdout (pyln turns print() into logs, this bypasses it)."""

import os

from pyln.client import Plugin

plugin = Plugin()


@plugin.method("noisy")
def noisy(**kwargs):
    """Writes raw text to stdout."""
    os.write(1, b"debug output\n")
    return {}


plugin.run()
