"""The plugin's entry point (`frostfed-plugin`): the plugin of `cln` serving the member `cln_member` assembles.

It sits apart from both so that neither imports the other's way back: `cln_member` builds on `cln`'s
`PluginContext`, and `cln` knows no factory.
"""

from __future__ import annotations

from frostfed.plugin.cln import FrostfedPlugin
from frostfed.plugin.cln_member import from_plugin_context


def main() -> None:
    FrostfedPlugin(from_plugin_context).run()
