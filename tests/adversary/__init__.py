"""The malicious member and the harness that runs it among honest member processes.

`attacker` is a member process with its honesty removed (it approves anything and obeys a second
control socket, `<data_dir>/evil-rpc`); `harness` starts a federation where chosen members run it
and reads what the honest members themselves recorded. Nothing here is part of the shipped package.

Writing an attack:

    fed = AdversaryCluster(tmp, regtest, 5, 3, attackers=(0,))       # then fed.start()
    coin = fed.fund_coin(50_000)                                       # a coin the attacker sees
    tx = build_tx([coin], [(script, sats)], version=..., locktime=...) # any fields
    body = request_body(tx, [coin], fed.attacker.evil("keys")["epoch"])
    out = fed.attacker.evil("sign", {"request": body, "to": [m.id.hex() for m in fed.honest], "self": True})
    wait_for_refusals(fed.honest, body["id"])                          # each member's own record
    assert nonces_for(member, body["id"]) == []                        # no presignature, no signature

Other evil commands: `send` (any raw message to chosen members), `tamper` (overwrite fields of every
message of a kind the attacker sends), `coins`, `keys`, `script`. New ones go in a module
`adversary/commands_<topic>.py` with `@evilrpc.command("name")`; the attacker loads them all.
"""
