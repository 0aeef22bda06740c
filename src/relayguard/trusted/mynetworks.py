"""Postfix's ``mynetworks``, read the way Postfix reads it, and the text edits that change it.

``mynetworks`` is a *match list*: items separated by commas and/or whitespace, evaluated in
order, the first match wins. An item is

* an address or network: ``192.168.1.0/24``, ``127.0.3.7`` (one host), ``[2001:db8::]/32``
  (IPv6 **must** be in brackets inline and in pattern files: an unbracketed ``2001:db8::/32``
  contains ``:`` and Postfix takes it for a ``type:table``);
* ``!item``: an exclusion — ``!192.168.1.50, 192.168.0.0/16`` trusts the LAN but that PC;
* ``/file/name``: a pattern file holding more items (``#`` comments);
* ``type:table``: a lookup table whose key is the client address. ``cidr:`` tables match
  networks (first field of a line: ``192.168.1.0/24  OK``); ``hash:``/``btree:``/``lmdb:``/
  ``cdb:`` (built with ``postmap``) and ``texthash:`` match exact addresses only, so a network
  written there never matches anything. Other types (``pcre:``, ``ldap:``, ``mysql:``…) are
  consulted but not edited by relayguard.

This module is pure: it parses texts and produces new texts. Reading files, postconf and
postmap live in :mod:`relayguard.trusted.postfix`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Table types relayguard edits, and the file postmap builds from the source (None: none).
DB_SUFFIX: dict[str, str | None] = {"cidr": None, "texthash": None, "hash": ".db",
                                    "btree": ".db", "lmdb": ".lmdb", "cdb": ".cdb"}
#: Types whose keys are exact addresses (no networks).
EXACT_TYPES = frozenset({"texthash", "hash", "btree", "lmdb", "cdb"})

_SEPARATORS = ", \t\r\n"
_REF = re.compile(r"\$(?:(\w+)|\{(\w+)\}|\((\w+)\))")


class TrustedError(Exception):
    """The change cannot be made; the message is one line (or a few) for the user."""


# ---------------------------------------------------------------------------- parsing

def split_list(value: str) -> list[str]:
    """Postfix's list splitting: commas and whitespace separate, ``{...}`` groups stay whole."""
    return [value[a:b] for a, b in item_spans(value)]


def item_spans(value: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each item of a list value (see :func:`split_list`)."""
    spans: list[tuple[int, int]] = []
    start: int | None = None
    depth = 0
    for i, ch in enumerate(value):
        if ch == "{":
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
        if depth == 0 and ch in _SEPARATORS:
            if start is not None:
                spans.append((start, i))
                start = None
            continue
        if start is None:
            start = i
    if start is not None:
        spans.append((start, len(value)))
    return spans


def parse_network(text: str, *, bracketless_ipv6: bool = True) -> tuple[Network | None, str | None]:
    """``(network, problem)`` for one address pattern (without ``!``).

    ``problem`` says why Postfix would not use the pattern as written (host bits set, IPv6
    without brackets where they are required); the network is still returned when it can be
    understood, so that coverage questions can be answered.
    """
    t = text.strip()
    problem = None
    addr, slash, plen = t.partition("/")
    bracketed = addr.startswith("[") and addr.endswith("]")
    if bracketed:
        addr = addr[1:-1]
    if not addr:
        return None, "not an address"
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return None, "not an address or network"
    if ip.version == 6 and not bracketed and not bracketless_ipv6:
        problem = "IPv6 must be written in [brackets] here (Postfix reads this as a table)"
    if not slash:
        return ipaddress.ip_network(ip), problem
    if not plen.isdigit() or int(plen) > ip.max_prefixlen:
        return None, f"bad prefix length /{plen}"
    net = ipaddress.ip_network(f"{ip}/{plen}", strict=False)
    if net.network_address != ip:
        problem = (f"host bits set: Postfix skips it (perhaps you mean "
                   f"{format_network(net, brackets=True)})")
    return net, problem


def parse_target(text: str) -> Network:
    """The CIDR a person typed (``127.0.3.7``, ``10.0.0.0/8``, ``[::1]/128``, ``2001:db8::/32``)."""
    t = text.strip()
    net, problem = parse_network(t)
    if net is None:
        raise TrustedError(f"{text!r} is not an address or a network (e.g. 192.168.1.50 or "
                           "192.168.1.0/24)")
    if problem and problem.startswith("host bits"):
        raise TrustedError(f"{text}: host bits set; did you mean "
                           f"{format_network(net)}? (or {net.network_address} alone)")
    return net


def format_network(net: Network, *, brackets: bool = True, host_prefix: bool = True) -> str:
    """How relayguard writes a network: ``127.0.3.7/32``, ``[2001:db8::]/32`` (brackets where
    Postfix requires them: inline and pattern files; cidr tables accept both)."""
    addr = str(net.network_address)
    if net.version == 6 and brackets:
        addr = f"[{addr}]"
    if net.prefixlen == net.max_prefixlen and not host_prefix:
        return addr
    return f"{addr}/{net.prefixlen}"


def table_spec(item: str) -> tuple[str, str] | None:
    """``("cidr", "/etc/postfix/t.cidr")`` for a ``type:table`` item (``proxy:`` unwrapped)."""
    if item.startswith("[") or ":" not in item:
        return None
    kind, _, name = item.partition(":")
    if kind == "proxy" and ":" in name:
        kind, _, name = name.partition(":")
    return kind.lower(), name


def is_table(item: str) -> bool:
    """A ``type:table`` or ``/file/name`` item (an unbracketed IPv6 address is not one here:
    Postfix would take it for a table, but it is a mistake to report, not a table to open)."""
    if item.startswith("/"):
        return True
    if table_spec(item) is None:
        return False
    return parse_network(item)[0] is None


def references(value: str) -> set[str]:
    """``$name``, ``${name}``, ``$(name)`` parameter names used in a value."""
    return {a or b or c for a, b, c in _REF.findall(value)}


def expand(value: str, params: dict[str, str]) -> str | None:
    """Substitute plain parameter references; None if the value uses a form we don't expand
    (``${name?text}`` and the like), which then stays read-only."""
    out = _REF.sub(lambda m: params.get(m.group(1) or m.group(2) or m.group(3), ""), value)
    return None if "$" in out else out


# ------------------------------------------------------------------------------ model

@dataclass
class Source:
    """Where entries are written: main.cf's value, a table, or a pattern file."""

    kind: str  # "main.cf", "file", or a table type: "cidr", "hash", "texthash", "pcre"…
    spec: str  # "main.cf", "/etc/postfix/trusted", "cidr:/etc/postfix/trusted.cidr"
    path: Path | None = None  # the text file holding the entries (the source, not the .db)
    editable: bool = True
    why_not: str | None = None  # why relayguard leaves it alone
    missing: bool = False  # the file does not exist
    query: str = ""  # what postmap -q is given ("hash:/x" for "proxy:hash:/x"); "" = spec

    @property
    def map_spec(self) -> str:
        return self.query or self.spec

    @property
    def db_path(self) -> Path | None:
        suffix = DB_SUFFIX.get(self.kind)
        return Path(str(self.path) + suffix) if suffix and self.path else None

    @property
    def exact_only(self) -> bool:
        return self.kind in EXACT_TYPES

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "spec": self.spec, "path": str(self.path) if self.path else None,
                "editable": self.editable, "why_not": self.why_not}


@dataclass
class Entry:
    """One item of mynetworks (or of one of its tables/files)."""

    pattern: str  # the address pattern as written, without "!" ("[::1]/128", "127.0.3.7")
    network: Network | None
    source: Source
    negated: bool = False
    line: int | None = None  # 1-based line in a table or pattern file
    problem: str | None = None  # why Postfix would not use it as written
    origin: str | None = None  # "$name" when it comes from another parameter
    conditional: bool = False  # inside an "if" block of a cidr table
    text: str = ""  # the whole item or table line, for people

    @property
    def editable(self) -> bool:
        return self.source.editable and self.origin is None

    @property
    def where(self) -> str:
        if self.source.kind == "main.cf":
            return "main.cf" + (f" (via {self.origin})" if self.origin else "")
        return f"{self.source.spec}" + (f", line {self.line}" if self.line else "")

    def covers(self, net: Network) -> bool:
        """Would Postfix match every address of ``net`` with this entry (negation aside)?"""
        if self.network is None or self.network.version != net.version:
            return False
        if self.source.exact_only:
            # hash-like tables: exact address keys only.
            return net.prefixlen == net.max_prefixlen and self.network == net
        if self.problem and self.problem.startswith("host bits"):
            return False  # Postfix skips such a rule
        return net.subnet_of(self.network)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        n = self.network
        return {"entry": ("!" if self.negated else "") + self.pattern,
                "network": str(n) if n is not None else None,
                "addresses": n.num_addresses if n is not None else None,
                "negated": self.negated, "where": self.where, "source": self.source.spec,
                "line": self.line, "editable": self.editable, "problem": self.problem,
                "origin": self.origin, "conditional": self.conditional}


@dataclass
class InlineItem:
    """One raw item of main.cf's mynetworks value and what it expands to."""

    raw: str
    expanded: list[str] = field(default_factory=list)  # [] when it cannot be expanded


# ------------------------------------------------------------------ file formats

def _key_value(line: str) -> tuple[str, str]:
    parts = line.strip().split(None, 1)
    return (parts[0], parts[1].strip()) if len(parts) == 2 else (parts[0] if parts else "", "")


def logical_lines(text: str) -> Iterator[tuple[int, int, str]]:
    """``(first, last, text)`` 0-based line ranges of postmap-style logical lines: a line that
    starts with whitespace continues the previous one; blank lines and ``#`` lines are skipped
    (and end a logical line)."""
    lines = text.splitlines()
    start: int | None = None
    buf: list[str] = []
    last = 0
    for i, ln in enumerate(lines):
        stripped = ln.strip()
        if not stripped or stripped.startswith("#"):
            if start is not None:
                yield start, last, " ".join(buf)
                start, buf = None, []
            continue
        if ln[:1].isspace() and start is not None:
            buf.append(stripped)
            last = i
            continue
        if start is not None:
            yield start, last, " ".join(buf)
        start, buf, last = i, [stripped], i
    if start is not None:
        yield start, last, " ".join(buf)


def table_entries(source: Source, text: str) -> tuple[list[Entry], list[str]]:
    """Entries of a cidr or hash-like table source text, and problems worth a warning."""
    entries: list[Entry] = []
    notes: list[str] = []
    depth = 0
    for first, _last, ln in logical_lines(text):
        key, value = _key_value(ln)
        if source.kind == "cidr":
            low = key.lower()
            if low == "if":
                depth += 1
                continue
            if low == "endif":
                depth = max(0, depth - 1)
                continue
        negated = key.startswith("!") and source.kind == "cidr"
        pattern = key[1:] if negated else key
        net, problem = parse_network(pattern)
        if source.exact_only and net is not None and net.prefixlen != net.max_prefixlen:
            problem = (f"{source.kind}: tables match exact addresses only: this network never "
                       "matches (use a cidr: table)")
        if not value.strip() and source.kind == "cidr":
            problem = problem or "no result value: Postfix skips the line"
        entries.append(Entry(pattern, net, source, negated=negated, line=first + 1,
                             problem=problem, conditional=depth > 0, text=ln))
    return entries, notes


def file_entries(source: Source, text: str) -> tuple[list[Entry], list[str]]:
    """Address items of a ``/file/name`` pattern file (table items come back as entries with
    no network and ``problem`` None; the caller turns them into sources)."""
    entries: list[Entry] = []
    for i, ln in enumerate(text.splitlines()):
        if ln.lstrip().startswith("#"):
            continue
        for item in split_list(ln):
            negated = item.startswith("!")
            pattern = item[1:] if negated else item
            if is_table(pattern):
                entries.append(Entry(pattern, None, source, negated=negated, line=i + 1,
                                     text=item))
                continue
            net, problem = parse_network(pattern, bracketless_ipv6=False)
            entries.append(Entry(pattern, net, source, negated=negated, line=i + 1,
                                 problem=problem, text=item))
    return entries, []


# ------------------------------------------------------------------------- edits

def _same(entry: Entry, net: Network, negated: bool) -> bool:
    return entry.network == net and entry.negated == negated


def _literal_match(raw: str, net: Network, negated: bool) -> bool:
    neg = raw.startswith("!")
    body = raw[1:] if neg else raw
    if "$" in raw or body.startswith("/"):
        return False
    n, _ = parse_network(body)  # an unbracketed IPv6 network is an address here, not a table
    return n == net and neg == negated


def inline_without(value: str, net: Network, negated: bool = False) -> str:
    """main.cf's value with every literal item equal to ``net`` (or ``!net``) cut out, the
    rest of the text (separators, layout) left as the administrator wrote it."""
    spans = item_spans(value)
    out = value
    # From the end, so earlier offsets stay valid.
    for idx in range(len(spans) - 1, -1, -1):
        a, b = spans[idx]
        if not _literal_match(value[a:b], net, negated):
            continue
        if idx + 1 < len(spans):
            cut_to = spans[idx + 1][0]  # the item and the separator after it
            out = out[:a] + out[cut_to:]
        else:
            cut_from = spans[idx - 1][1] if idx > 0 else a  # last item: the separator before
            out = out[:cut_from] + out[b:]
    return out.strip() if not split_list(out) else out


def inline_with(value: str, item: str, *, first: bool = False, style: str = "") -> str:
    """main.cf's value with ``item`` added at the end (or first), separated the way the value
    (or ``style``, the value as the administrator wrote it) separates its items."""
    if not value.strip():
        return item
    sep = ", " if "," in value or "," in style else " "
    return f"{item}{sep}{value.lstrip()}" if first else f"{value.rstrip()}{sep}{item}"


def cidr_line(net: Network, value: str) -> str:
    return f"{format_network(net, brackets=False)}\t{value}"


def exact_line(net: Network, value: str) -> str:
    return f"{net.network_address}\t{value}"


def remove_lines(text: str, source: Source, net: Network, negated: bool = False
                 ) -> tuple[str, list[str]]:
    """A table or pattern file's text without the items equal to ``net``; and what went."""
    lines = text.splitlines(keepends=True)
    removed: list[str] = []
    if source.kind == "file":
        out = []
        for ln in lines:
            if ln.lstrip().startswith("#"):
                out.append(ln)
                continue
            body = ln.rstrip("\r\n")
            items = split_list(body)
            keep = []
            for item in items:
                neg = item.startswith("!")
                n, _ = parse_network(item[1:] if neg else item)
                if n == net and neg == negated:
                    removed.append(item)
                else:
                    keep.append(item)
            if len(keep) == len(items):
                out.append(ln)
            elif keep:
                sep = ", " if "," in body else " "
                out.append(sep.join(keep) + "\n")
        return "".join(out), removed
    drop: set[int] = set()
    entries, _ = table_entries(source, text)
    ranges = {first: last for first, last, _ in logical_lines(text)}
    for e in entries:
        if e.line is not None and _same(e, net, negated):
            first = e.line - 1
            drop.update(range(first, ranges.get(first, first) + 1))
            removed.append(e.text)
    return "".join(ln for i, ln in enumerate(lines) if i not in drop), removed


def common_value(entries: list[Entry], default: str = "OK") -> str:
    """The result value most lines of a table use (so an added line looks like the others)."""
    counts: dict[str, int] = {}
    for e in entries:
        _, v = _key_value(e.text)
        if v:
            counts[v] = counts.get(v, 0) + 1
    return max(counts, key=lambda k: counts[k]) if counts else default


def append_line(text: str, line: str, comment: str | None = None) -> str:
    if text and not text.endswith("\n"):
        text += "\n"
    return text + (f"# {comment}\n" if comment else "") + line + "\n"
