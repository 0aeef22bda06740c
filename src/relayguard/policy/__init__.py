"""Postfix policy delegation server: rate limits, bans and locks enforced at the door.

`protocol` reads and writes the name=value blocks, `limits` decides, `server` serves them over
TCP and unix sockets, `report` shows who is near a limit, `cli` is `relayguard policy`.
"""
