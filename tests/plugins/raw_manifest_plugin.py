#!/usr/bin/env python3
"""Answers getmanifest with the JSON in $CLNSIM_MANIFEST and init with {}: for manifest checks."""

import json
import os
import sys

manifest = json.loads(os.environ.get("CLNSIM_MANIFEST", "{}"))
decoder = json.JSONDecoder()
buf = ""
for line in sys.stdin:
    buf += line
    buf = buf.lstrip()
    try:
        req, end = decoder.raw_decode(buf)
    except ValueError:
        continue
    buf = buf[end:]
    result = manifest if req["method"] == "getmanifest" else {}
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": result}) + "\n\n")
    sys.stdout.flush()
