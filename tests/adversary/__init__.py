"""The malicious member and the harness that runs it among honest member processes.

`attacker` is a member process with its honesty removed (it approves anything and obeys a second
control socket, `<data_dir>/evil-rpc`); `harness` starts a federation where chosen members run it
and reads what the honest members themselves recorded. Nothing here is part of the shipped package.
"""
