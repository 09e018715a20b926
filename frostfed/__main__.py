from frostfed.plugin.cli import main

main()
