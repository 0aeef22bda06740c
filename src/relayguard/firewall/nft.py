"""An nftables rule that logs the SMTP connections PCs open straight to the internet.

The seeds' manual fix is ``iptables -I FORWARD -m state --state NEW -p tcp --dport 25 -j LOG``:
then ``grep kernel.*DPT=25``. relayguard installs the nftables equivalent in a table of its
own, so it never touches the administrator's rules and can be removed whole::

    table inet relayguard_log {
        chain forward {
            type filter hook forward priority -10; policy accept;
            tcp dport { 25, 465, 587 } tcp flags & (fin | syn | rst | ack) == syn
                counter limit rate 10/second burst 20 packets log prefix "relayguard-smtp: "
        }
    }

* ``inet``: IPv4 and IPv6 alike. ``hook forward``: traffic routed *through* this host (the
  gateway), which is where a LAN PC's direct connections pass. ``policy accept`` and no verdict
  in the rule: the chain only observes, it can never block mail.
* "New connection" is the first SYN (no ACK): the same packets ``ct state new`` selects for
  TCP, without needing connection tracking on a router that does not otherwise use it.
* ``counter`` counts every new connection (``status`` shows it); ``limit`` caps the log lines
  so that a spamming PC cannot flood the kernel log; the prefix makes the lines easy to find.
  The kernel writes ``relayguard-smtp: IN=eth1 OUT=eth0 … SRC=192.168.1.50 DST=… DPT=25 …``,
  which relayguard's parser reads as a ``firewall`` event.

Changes go through ``nft -f -`` with the script on stdin (one atomic transaction; argv, never
a shell): enabling creates the table if absent, deletes it and recreates it, so running it twice
leaves exactly one rule.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from typing import Any

from ..postfix.programs import find_program

FAMILY = "inet"
TABLE = "relayguard_log"
CHAIN = "forward"
DEFAULT_PREFIX = "relayguard-smtp"
DEFAULT_RATE = "10/second"
DEFAULT_BURST = 20
DEFAULT_PORTS = (25, 465, 587)

_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_RATE = re.compile(r"(\d{1,7})\s*/\s*(second|minute|hour|day|s|m|h|d)")
_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day"}


class FirewallError(Exception):
    """nft is missing or refused; the message is one line for the user."""


@dataclass(frozen=True)
class LogSmtpRule:
    """What to log: which ports, with which prefix, at which rate."""

    prefix: str = DEFAULT_PREFIX
    rate: str = DEFAULT_RATE  # "N/second|minute|hour|day"
    burst: int = DEFAULT_BURST
    ports: tuple[int, ...] = DEFAULT_PORTS

    @classmethod
    def make(cls, prefix: str = DEFAULT_PREFIX, rate: str = DEFAULT_RATE,
             burst: int = DEFAULT_BURST, ports: tuple[int, ...] | list[int] = DEFAULT_PORTS
             ) -> LogSmtpRule:
        """Validated: what reaches the nft script is only digits, the unit names and a prefix
        of letters, digits, ``_.-``."""
        if not _PREFIX.fullmatch(prefix):
            raise FirewallError(f"--prefix {prefix!r}: letters, digits, '_', '.', '-' only "
                                "(at most 63), starting with a letter or digit")
        m = _RATE.fullmatch(rate.strip())
        if not m or int(m.group(1)) < 1:
            raise FirewallError(f"--rate {rate!r}: use N/second, N/minute, N/hour or N/day "
                                "(e.g. 10/second)")
        unit = _UNITS.get(m.group(2), m.group(2))
        if not 1 <= burst <= 100000:
            raise FirewallError(f"--burst {burst}: between 1 and 100000")
        clean = tuple(sorted(set(ports)))
        if not clean or any(not 1 <= p <= 65535 for p in clean):
            raise FirewallError("--ports: TCP ports between 1 and 65535")
        return cls(prefix, f"{int(m.group(1))}/{unit}", burst, clean)

    @property
    def log_prefix(self) -> str:
        """As the kernel writes it before ``IN=``: the prefix, a colon and a space."""
        return f"{self.prefix}: "

    def rule_text(self) -> str:
        ports = (str(self.ports[0]) if len(self.ports) == 1
                 else "{ " + ", ".join(map(str, self.ports)) + " }")
        return (f"tcp dport {ports} tcp flags & (fin | syn | rst | ack) == syn counter "
                f"limit rate {self.rate} burst {self.burst} packets "
                f'log prefix "{self.log_prefix}"')

    def script(self) -> str:
        """The nft script that (re)creates the table: idempotent and atomic."""
        return (f"table {FAMILY} {TABLE} {{\n}}\n"
                f"delete table {FAMILY} {TABLE}\n"
                f"table {FAMILY} {TABLE} {{\n"
                f"\tchain {CHAIN} {{\n"
                f"\t\ttype filter hook forward priority -10; policy accept;\n"
                f"\t\t{self.rule_text()}\n"
                f"\t}}\n"
                f"}}\n")

    def to_dict(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "log_prefix": self.log_prefix, "rate": self.rate,
                "burst": self.burst, "ports": list(self.ports)}


@dataclass
class Status:
    """What is installed now."""

    enabled: bool
    rule: LogSmtpRule | None = None  # None: absent, or not a rule relayguard wrote
    packets: int | None = None  # new SMTP connections counted since the rule was installed
    bytes: int | None = None
    hook: str | None = None
    rules: int = 0  # rules in relayguard's table (1 when it is as relayguard left it)
    text: str = ""  # `nft list table …` as nft prints it
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "relayguard.firewall-log-smtp/1", "enabled": self.enabled,
                "table": f"{FAMILY} {TABLE}", "chain": CHAIN, "hook": self.hook,
                "rules": self.rules, **(self.rule.to_dict() if self.rule else {}),
                "connections": self.packets, "bytes": self.bytes,
                "forwarding": forwarding(), "problems": self.problems}


def forwarding() -> bool | None:
    """Does this host route packets (IPv4 or IPv6)? Only then does the forward hook see a PC's
    connections: the rule belongs on the gateway. None when it cannot be told."""
    seen = False
    for path in ("/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"):
        try:
            with open(path) as fh:
                if fh.read().strip() == "1":
                    return True
            seen = True
        except OSError:
            continue
    return False if seen else None


class Nft:
    """Runs ``nft`` (argv lists only)."""

    def __init__(self, path: str | None = None, timeout: float = 30.0) -> None:
        self.path = path or _find_nft()
        self.timeout = timeout

    def run(self, *args: str, script: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = [self.path, *args]
        try:
            return subprocess.run(argv, input=script, capture_output=True, text=True,
                                  errors="replace", timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise FirewallError(f"nft did not finish in {self.timeout:g}s") from None
        except OSError as exc:
            raise FirewallError(f"cannot run {self.path}: {exc.strerror}") from None

    def checked(self, *args: str, script: str | None = None) -> str:
        r = self.run(*args, script=script)
        if r.returncode != 0:
            raise FirewallError(f"nft {' '.join(args)}: {_complaint(r)}")
        return r.stdout

    def table_exists(self) -> bool:
        out = self.checked("-j", "list", "tables", FAMILY)
        for obj in _objects(out):
            t = obj.get("table")
            if isinstance(t, dict) and t.get("name") == TABLE and t.get("family") == FAMILY:
                return True
        return False


def _find_nft() -> str:
    found = find_program("nft")  # nft is no Postfix tool, but lives in sbin the same way
    if found is None:
        raise FirewallError("nft not found: apt-get install nftables")
    return found


def _complaint(r: subprocess.CompletedProcess[str]) -> str:
    lines = [ln.strip() for ln in r.stderr.splitlines() if ln.strip()]
    text = (lines or [f"exit status {r.returncode}"])[0]
    if "Operation not permitted" in r.stderr:
        text += " (run as root)"
    return text


def _objects(text: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except ValueError:
        raise FirewallError("nft -j printed something that is not JSON") from None
    items = data.get("nftables") if isinstance(data, dict) else None
    return [o for o in items or [] if isinstance(o, dict)]


def parse_rule(expr: list[Any]) -> tuple[LogSmtpRule | None, int | None, int | None]:
    """``(rule, packets, bytes)`` from a rule's JSON expressions; rule None if it is not one
    relayguard writes (someone edited the table)."""
    ports: list[int] = []
    prefix = rate = None
    burst = 0
    packets = nbytes = None
    syn = False
    for e in expr:
        if not isinstance(e, dict):
            continue
        if "match" in e:
            m = e["match"]
            left = m.get("left", {})
            if left.get("payload", {}).get("field") == "dport":
                right = m.get("right")
                if isinstance(right, int):
                    ports = [right]
                elif isinstance(right, dict) and isinstance(right.get("set"), list):
                    ports = [p for p in right["set"] if isinstance(p, int)]
            elif "&" in left and m.get("right") == "syn":
                syn = True
        elif "counter" in e and isinstance(e["counter"], dict):
            packets, nbytes = e["counter"].get("packets"), e["counter"].get("bytes")
        elif "limit" in e and isinstance(e["limit"], dict):
            lim = e["limit"]
            rate = f"{lim.get('rate')}/{lim.get('per')}"
            burst = int(lim.get("burst") or 0)
        elif "log" in e and isinstance(e["log"], dict):
            prefix = e["log"].get("prefix")
    if not (ports and prefix and rate and syn and str(prefix).endswith(": ")):
        return None, packets, nbytes
    try:
        rule = LogSmtpRule.make(str(prefix)[:-2], rate, burst or DEFAULT_BURST, ports)
    except FirewallError:
        return None, packets, nbytes
    return rule, packets, nbytes


def status(nft: Nft) -> Status:
    if not nft.table_exists():
        return Status(False)
    st = Status(True)
    out = nft.checked("-j", "list", "table", FAMILY, TABLE)
    st.text = nft.run("list", "table", FAMILY, TABLE).stdout
    for obj in _objects(out):
        if isinstance(obj.get("chain"), dict) and obj["chain"].get("name") == CHAIN:
            st.hook = obj["chain"].get("hook")
        r = obj.get("rule")
        if isinstance(r, dict):
            st.rules += 1
            rule, packets, nbytes = parse_rule(r.get("expr") or [])
            if rule is not None and st.rule is None:
                st.rule, st.packets, st.bytes = rule, packets, nbytes
    if st.rule is None:
        st.problems.append(f"table {FAMILY} {TABLE} exists but holds no rule relayguard "
                           "recognises (edited by hand?): `enable` replaces it")
    elif st.rules > 1:
        st.problems.append(f"table {FAMILY} {TABLE} holds {st.rules} rules: `enable` leaves one")
    if st.hook not in (None, "forward"):
        st.problems.append(f"chain {CHAIN} is hooked on {st.hook}, not forward")
    return st


def enable(nft: Nft, rule: LogSmtpRule) -> tuple[str, Status]:
    """Install or replace the rule. Returns ("enabled" | "updated" | "unchanged", status)."""
    before = status(nft)
    if before.enabled and before.rule == rule and before.rules == 1 and \
            before.hook == "forward" and not before.problems:
        return "unchanged", before  # keeps the counter
    nft.checked("-f", "-", script=rule.script())
    after = status(nft)
    if after.rule != rule or after.rules != 1:
        raise FirewallError(f"after nft -f, table {FAMILY} {TABLE} does not hold the expected "
                            f"rule:\n{after.text}")
    return ("updated" if before.enabled else "enabled"), after


def disable(nft: Nft) -> bool:
    """Remove relayguard's table; False when it was not there."""
    if not nft.table_exists():
        return False
    nft.checked("-f", "-", script=f"delete table {FAMILY} {TABLE}\n")
    return True
