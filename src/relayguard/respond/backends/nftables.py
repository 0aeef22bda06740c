"""`nftables`: table `inet relayguard`, sets of addresses (`flags timeout`) and of networks
(`flags interval, timeout`) per IP version, and `input`/`forward` chains dropping TCP to ports
25, 465 and 587 from them. The kernel expires each element with its own timeout."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from ...postfix.programs import find_program
from ...state.shared import Ban
from ..common import RespondError, run_argv
from .base import Active, Network, as_network, remaining

DEFAULT_PORTS = (25, 465, 587)
TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,30}$")


class NftablesBackend:
    """Table `inet <table>` managed through `nft -f -` (a generated script on stdin; argv only).

    Addresses and networks live in separate sets: an interval set refuses overlapping
    elements, so only networks (rare, set by people) go into one, and when they overlap the
    widest is loaded (it covers the others; they return at the next `expire()`/`sync()` once
    it is gone). Re-banning an address replaces its timeout (add, delete, add in one
    transaction: `add` alone keeps the old timeout)."""

    name = "nftables"
    SETS = {4: ("banned_v4", "banned_net_v4", "ipv4_addr", "ip"),
            6: ("banned_v6", "banned_net_v6", "ipv6_addr", "ip6")}

    def __init__(self, table: str = "relayguard", ports: Iterable[int] = DEFAULT_PORTS,
                 timeout: float = 30.0) -> None:
        if not TABLE_NAME.match(table):
            raise RespondError(f"[bruteforce] nftables_table: bad table name {table!r}")
        self.table = table
        self.ports = sorted({int(p) for p in ports})
        if not self.ports or not all(0 < p < 65536 for p in self.ports):
            raise RespondError("[bruteforce] nftables_ports: TCP ports between 1 and 65535")
        self.timeout = timeout
        self._ready = False

    # ---- plumbing
    def _nft(self, script: str, what: str) -> str:
        nft = find_program("nft")
        if nft is None:
            raise RespondError("nft not found: install nftables (apt-get install nftables) or "
                               "choose another [bruteforce] ban_backend")
        r = run_argv([nft, "-f", "-"], self.timeout, stdin=script.encode())
        if not r.ok:
            errs = [ln for ln in r.output.splitlines() if "Error" in ln or "rror:" in ln]
            why = errs[0].split("Error:", 1)[-1].strip() if errs else (r.error or "failed")
            if "Operation not permitted" in r.output:
                why = "Operation not permitted (nftables needs root or CAP_NET_ADMIN)"
            raise RespondError(f"nftables: cannot {what}: {why}")
        return r.output

    def _list_table(self) -> dict[str, Any] | None:
        nft = find_program("nft")
        if nft is None:
            return None
        r = run_argv([nft, "-j", "list", "table", "inet", self.table], self.timeout)
        if not r.ok:
            return None
        try:
            return json.loads(r.output)
        except ValueError:
            return None

    def structure_script(self) -> str:
        t = f"inet {self.table}"
        ports = ", ".join(str(p) for p in self.ports)
        lines = [f"add table {t}"]
        for addr, net, typ, _ in self.SETS.values():
            lines.append(f"add set {t} {addr} {{ type {typ}; flags timeout; }}")
            lines.append(f"add set {t} {net} {{ type {typ}; flags interval, timeout; }}")
        for chain in ("input", "forward"):
            # input: clients of this server; forward: LAN hosts sending straight to the internet
            # through this machine (the direct_smtp finding), when it is their router.
            lines.append(f"add chain {t} {chain} {{ type filter hook {chain} priority filter - 10; "
                         f"policy accept; }}")
            lines.append(f"flush chain {t} {chain}")
            for addr, net, _, proto in self.SETS.values():
                for s in (addr, net):
                    lines.append(f"add rule {t} {chain} {proto} saddr @{s} "
                                 f"tcp dport {{ {ports} }} counter drop")
        return "\n".join(lines) + "\n"

    def _structure_ok(self) -> bool:
        data = self._list_table()
        if data is None:
            return False
        items = data.get("nftables", [])
        sets = {i["set"]["name"] for i in items if "set" in i}
        chains = {i["chain"]["name"] for i in items if "chain" in i}
        rules: dict[str, int] = {}
        for i in items:
            if "rule" in i:
                rules[i["rule"]["chain"]] = rules.get(i["rule"]["chain"], 0) + 1
        want_sets = {n for v in self.SETS.values() for n in v[:2]}
        return (want_sets <= sets and {"input", "forward"} <= chains
                and all(rules.get(c) == 4 for c in ("input", "forward")))

    def ensure(self, force: bool = False) -> None:
        """Create the table, sets, chains and rules when missing (idempotent; elements kept)."""
        if self._ready and not force:
            return
        if force or not self._structure_ok():
            self._nft(self.structure_script(), f"create table inet {self.table}")
        self._ready = True

    @staticmethod
    def _elem(network: str, seconds: int | None) -> str:
        return network + (f" timeout {seconds}s" if seconds else "")

    def _set_for(self, network: str) -> str:
        n = as_network(network)
        addr, net, _, _ = self.SETS[n.version]
        return net if "/" in network else addr

    def _nets_script(self, active: list[Ban], now: float) -> str:
        """Flush the network sets and load the widest non-overlapping active networks."""
        t = f"inet {self.table}"
        lines = []
        for version, (_, net_set, _, _) in self.SETS.items():
            lines.append(f"flush set {t} {net_set}")
            nets = sorted(((as_network(b.network), b) for b in active
                           if "/" in b.network and as_network(b.network).version == version),
                          key=lambda nb: (nb[0].prefixlen, int(nb[0].network_address)))
            kept: list[Network] = []
            elems = []
            for n, b in nets:
                if any(n.overlaps(k) for k in kept):  # type: ignore[arg-type]
                    continue
                kept.append(n)
                elems.append(self._elem(b.network, remaining(b, now)))
            if elems:
                lines.append(f"add element {t} {net_set} {{ {', '.join(elems)} }}")
        return "\n".join(lines) + "\n"

    def _address_script(self, network: str, seconds: int | None, present: bool) -> str:
        t = f"inet {self.table}"
        s = self._set_for(network)
        # add (no-op when present) + delete: works whether or not the element exists.
        lines = [f"add element {t} {s} {{ {network} timeout 1s }}",
                 f"delete element {t} {s} {{ {network} }}"]
        if present:
            lines.append(f"add element {t} {s} {{ {self._elem(network, seconds)} }}")
        return "\n".join(lines) + "\n"

    # ---- backend API
    def add(self, ban: Ban, active: Active, now: float) -> list[str]:
        self.ensure()
        if "/" in ban.network:
            self._nft(self._nets_script(active(), now), f"ban {ban.network}")
        else:
            self._nft(self._address_script(ban.network, remaining(ban, now), True),
                      f"ban {ban.network}")
        return []

    def remove(self, network: str, active: Active, now: float) -> list[str]:
        self.ensure()
        if "/" in network:
            self._nft(self._nets_script(active(), now), f"unban {network}")
        else:
            self._nft(self._address_script(network, None, False), f"unban {network}")
        return []

    def expire(self, expired: list[Ban], active: Active, now: float) -> list[str]:
        # The kernel has removed these already (element timeouts); deleting again costs nothing
        # and covers a clock step. Networks hidden behind an expired wider one come back here.
        if not expired:
            return []
        self.ensure()
        script = "".join(self._address_script(b.network, None, False)
                         for b in expired if "/" not in b.network)
        if any("/" in b.network for b in expired):
            script += self._nets_script(active(), now)
        self._nft(script, "remove expired bans")
        return []

    def sync(self, active: Active, now: float) -> list[str]:
        self.ensure(force=True)
        t = f"inet {self.table}"
        bans = active()
        lines = []
        for version, (addr_set, _, _, _) in self.SETS.items():
            lines.append(f"flush set {t} {addr_set}")
            elems = [self._elem(b.network, remaining(b, now)) for b in bans
                     if "/" not in b.network and as_network(b.network).version == version]
            if elems:
                lines.append(f"add element {t} {addr_set} {{ {', '.join(elems)} }}")
        self._nft("\n".join(lines) + "\n" + self._nets_script(bans, now), "load the bans")
        return []

