#!/usr/bin/env python3
"""frostfed as a Core Lightning plugin: `lightningd --plugin=/path/to/frostfed-plugin.py`.

Runs from a checkout whose dependencies are installed (`pip install -e .`), with the python3 found on
PATH; the installed console script `frostfed-plugin` is the same plugin.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))

from frostfed.plugin.cln_main import main

main()
