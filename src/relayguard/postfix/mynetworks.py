"""Postfix's ``mynetworks`` — THE model of a match list of networks, read the way Postfix
reads it: the trusted editor (``relayguard trusted``), the config audit and the analysis all use it.

``mynetworks`` is a *match list*: items separated by commas and/or whitespace, evaluated in
order, the first match wins. An item is

* an address or network: ``192.168.1.0/24``, ``127.0.3.7`` (one host), ``[2001:db8::]/32``
  (IPv6 **must** be in brackets inline and in pattern files: an unbracketed ``2001:db8::/32``
  contains ``:`` and Postfix takes it for a ``type:table``);
* ``!item``: an exclusion — ``!192.168.1.50, 192.168.0.0/16`` trusts the LAN but that PC;
* ``/file/name``: a pattern file holding more items (``#`` comments);
* ``type:table``: a lookup table whose key is the client address. ``cidr:`` tables match
  networks (first field of a line: ``192.168.1.0/24  OK``; ``if``/``endif`` blocks and ``!``
  patterns too); ``hash:``/``btree:``/``lmdb:``/``cdb:`` (built with ``postmap``) and
  ``texthash:`` match exact addresses only, read here from their source text. Other types
  (``pcre:``, ``ldap:``, ``mysql:``…) are not evaluated: :class:`TrustedNetworks` names them.

:class:`TrustedNetworks` answers "does Postfix trust this client address?";
:func:`resolve_trusted` is the one place that decides which networks a run trusts.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .maps import INDEX_SUFFIX
from .postconf import Postconf, PostfixError
from .postconf import value as postconf_value

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Table types whose source text relayguard reads (and edits), and the file postmap builds
#: from the source (None: read into memory, no index).
DB_SUFFIX: dict[str, str | None] = {"cidr": None, "texthash": None, **INDEX_SUFFIX}
#: Types whose keys are exact addresses (no networks).
EXACT_TYPES = frozenset({"texthash", "hash", "btree", "lmdb", "cdb"})
#: What Postfix trusts when nothing else can be read: this host only.
FALLBACK = ("127.0.0.0/8", "[::1]/128")

_SEPARATORS = ", \t\r\n"
_REF = re.compile(r"\$(?:(\w+)|\{(\w+)\}|\((\w+)\))")


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


def parse_postfix_network(text: str, *,
                          bracketless_ipv6: bool = True) -> tuple[Network | None, str | None]:
    """``(network, problem)`` for one address pattern (without ``!``), in Postfix's notation.

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
    return parse_postfix_network(item)[0] is None


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
    negated: bool = False  # "!type:table": an address it holds is *not* trusted

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

def key_value(line: str) -> tuple[str, str]:
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
        key, value = key_value(ln)
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
        net, problem = parse_postfix_network(pattern)
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
            net, problem = parse_postfix_network(pattern, bracketless_ipv6=False)
            entries.append(Entry(pattern, net, source, negated=negated, line=i + 1,
                                 problem=problem, text=item))
    return entries, []


# ------------------------------------------------------------------ the whole list

@dataclass
class Mynetworks:
    """mynetworks of one instance: the raw main.cf value, every entry in match order, the
    tables and files it uses, and what deserves a warning."""

    main_cf: Path
    explicit: bool  # main.cf sets mynetworks (otherwise: the default from mynetworks_style)
    raw: str  # main.cf's value as written, or the computed default when not explicit
    items: list[InlineItem]
    order: list[Entry | Source] = field(default_factory=list)  # Postfix's evaluation order
    sources: list[Source] = field(default_factory=list)  # tables and pattern files
    texts: dict[Path, str] = field(default_factory=dict)  # file texts as read
    style: str = ""
    overrides: list[str] = field(default_factory=list)  # master.cf -o mynetworks=...
    warnings: list[str] = field(default_factory=list)
    main_source: Source = field(default_factory=lambda: Source("main.cf", "main.cf"))

    @property
    def entries(self) -> list[Entry]:
        out: list[Entry] = []
        for slot in self.order:
            if isinstance(slot, Entry):
                out.append(slot)
            else:
                out.extend(self.source_entries(slot))
        return out

    def source_entries(self, source: Source) -> list[Entry]:
        if source.path is None or source.path not in self.texts:
            return []
        if source.kind == "file":
            return [e for e in file_entries(source, self.texts[source.path])[0]
                    if e.network is not None or e.problem]
        return table_entries(source, self.texts[source.path])[0]

    def decide(self, net: Network, probe: Callable[[Source, Network], bool | None] | None = None
               ) -> tuple[bool, Entry | Source | None, list[Source]]:
        """Is every address of ``net`` trusted, as Postfix evaluates the list (first match
        wins)? ``(trusted, the deciding entry or table, tables we could not read)``."""
        unknown: list[Source] = []
        for slot in self.order:
            if isinstance(slot, Entry):
                if slot.covers(net):
                    return not slot.negated, slot, unknown
                continue
            if slot.path is not None and slot.path in self.texts:
                for e in self.source_entries(slot):
                    if e.conditional or e.negated:
                        continue  # cidr if-blocks and negations: beyond this simple check
                    if e.covers(net):
                        return not slot.negated, e, unknown
                continue
            found = probe(slot, net) if probe is not None else None
            if found:
                return not slot.negated, slot, unknown
            if found is None:
                unknown.append(slot)
        return False, None, unknown

    def find(self, net: Network, negated: bool = False) -> list[Entry]:
        return [e for e in self.entries if e.network == net and e.negated == negated
                and not (e.problem and e.problem.startswith("host bits"))]

    def wider(self, net: Network) -> list[Entry]:
        """Entries that trust ``net`` and more (the wider networks around it)."""
        return [e for e in self.entries if not e.negated and e.network is not None
                and e.network != net and e.covers(net)]

    def inner(self, net: Network) -> list[Entry]:
        """Entries inside ``net`` (listed hosts of a network someone wants to remove)."""
        return [e for e in self.entries if e.network is not None and e.network != net
                and e.network.version == net.version
                and e.network.subnet_of(net)]  # type: ignore[arg-type]


def build(raw: str, *, main_cf: Path = Path("main.cf"), explicit: bool = True,
          params: dict[str, str] | None = None, types: set[str] | None = None,
          text_overrides: dict[Path, str] | None = None) -> Mynetworks:
    """The model of a mynetworks value: items in order, pattern files and tables read.

    ``params`` expands ``$name`` references (unknown names expand to nothing, as in Postfix;
    without ``params``, give an already expanded value). ``types`` are the table types this
    Postfix supports (None: not checked). ``text_overrides`` stand in for file contents.
    """
    model = Mynetworks(main_cf=main_cf, explicit=explicit, raw=raw, items=[])
    model.main_source.path = main_cf
    params = params or {}
    overrides = text_overrides or {}
    seen: set[str] = set()

    def add_source(item: str, origin: str | None, depth: int, negated: bool = False) -> None:
        spec = table_spec(item)
        if item.startswith("/"):
            src = Source("file", item, Path(item))
        elif spec is not None:
            kind, name = spec
            src = Source(kind, item, Path(name) if name.startswith("/") else None,
                         query=f"{kind}:{name}", negated=negated)
            if kind not in DB_SUFFIX:
                src.editable, src.why_not = False, f"{kind}: tables are not edited by relayguard"
            elif types is not None and kind not in types:
                src.editable, src.why_not = False, f"this Postfix does not support {kind}: tables"
            elif src.path is None:
                src.editable, src.why_not = False, "not an absolute file name"
        else:
            return
        if ("!" if negated else "") + item in seen:
            return
        seen.add(("!" if negated else "") + item)
        if negated:
            src.editable, src.why_not = False, "an exclusion (!table): not edited by relayguard"
        else:
            model.sources.append(src)
        if src.path is not None and (src.kind == "file" or src.kind in DB_SUFFIX):
            if src.path in overrides:
                model.texts[src.path] = overrides[src.path]
            else:
                try:
                    model.texts[src.path] = src.path.read_text("utf-8", errors="replace")
                except FileNotFoundError:
                    src.missing = True
                    model.warnings.append(f"{src.spec}: no such file (smtpd cannot start with "
                                          "it)")
                except OSError as exc:
                    src.editable, src.why_not = False, f"cannot read ({exc.strerror})"
        if src.kind != "file" or src.path not in model.texts:
            model.order.append(src)
            return
        # A pattern file's items are evaluated in place; tables it names are consulted there.
        for e in file_entries(src, model.texts[src.path])[0]:
            if e.network is None and not e.problem:
                if depth < 2 and not e.pattern.startswith("/"):
                    add_source(e.pattern, origin, depth + 1, e.negated)
                elif depth < 2 and not e.negated:
                    add_source(e.pattern, origin, depth + 1)
                else:
                    model.warnings.append(f"{src.spec}, line {e.line}: {e.text}: not checked")
            else:
                model.order.append(e)

    for raw_item in split_list(raw):
        origin = raw_item if "$" in raw_item else None
        expanded_text = expand(raw_item, params) if origin else raw_item
        item = InlineItem(raw_item, split_list(expanded_text) if expanded_text is not None else [])
        model.items.append(item)
        if expanded_text is None:
            model.warnings.append(f"main.cf: {raw_item!r} uses a parameter expression relayguard "
                                  "does not expand: not checked")
            continue
        for sub in item.expanded:
            negated = sub.startswith("!")
            pattern = sub[1:] if negated else sub
            if is_table(pattern):
                if negated and pattern.startswith("/"):
                    model.warnings.append(f"main.cf: {sub}: a negated pattern file is not "
                                          "checked")
                    continue
                add_source(pattern, origin, 0, negated)
                continue
            net, problem = parse_postfix_network(pattern, bracketless_ipv6=False)
            model.order.append(Entry(pattern, net, model.main_source, negated=negated,
                                     problem=problem, origin=origin, text=sub))
    return model


def read_mynetworks(pf: Postconf, *, raw_override: str | None = None,
                    text_overrides: dict[Path, str] | None = None) -> Mynetworks:
    """Read mynetworks of an instance (main.cf's value, its ``$name`` references, tables and
    pattern files, master.cf overrides).

    ``raw_override``/``text_overrides`` stand in for main.cf's value and file contents: the
    same reading predicts the result of a change before it is written.
    """
    raw_explicit = pf.explicit("mynetworks") if raw_override is None else raw_override
    explicit = raw_explicit is not None
    if raw_explicit is None:
        raw = pf.values(["mynetworks"]).get("mynetworks", "")
    else:
        raw = raw_explicit
    refs = set().union(*(references(it) for it in split_list(raw))) if raw else set()
    model = build(raw, main_cf=pf.main_cf(), explicit=explicit,
                  params=pf.values(sorted(refs)) if refs else {}, types=pf.types(),
                  text_overrides=text_overrides)
    model.style = pf.values(["mynetworks_style"]).get("mynetworks_style", "")
    with contextlib.suppress(PostfixError):
        model.overrides = pf.service_overrides("mynetworks")
    return model


# ------------------------------------------------------------------------- matching

def _usable(net: Network | None, problem: str | None) -> bool:
    return net is not None and not (problem and problem.startswith("host bits"))


def _compile_cidr(text: str) -> list[tuple[str, bool, Network | None]]:
    """A cidr table as ``(op, negated, network)`` steps: ``if``/``endif`` blocks and lines
    (``!pattern`` matches what the pattern does not). Unusable lines are left out (Postfix
    skips them with a warning), an unusable ``if`` keeps its block closed."""
    steps: list[tuple[str, bool, Network | None]] = []
    for _first, _last, ln in logical_lines(text):
        key, value = key_value(ln)
        low = key.lower()
        if low == "endif":
            steps.append(("endif", False, None))
            continue
        if low == "if":
            key, value = value, "if"
        negated = key.startswith("!")
        net, problem = parse_postfix_network(key[1:] if negated else key)
        if low == "if":
            steps.append(("if", negated, net if _usable(net, problem) else None))
        elif _usable(net, problem) and value.strip():
            steps.append(("line", negated, net))
    return steps


def _cidr_match(steps: list[tuple[str, bool, Network | None]], addr: Address) -> bool:
    """First matching line of a cidr table (any result value is a match in a match list);
    an address of the other IP version matches no pattern, negated or not."""
    closed = 0  # depth of the innermost if-block that does not apply (0: all apply)
    depth = 0
    for op, negated, net in steps:
        if op == "endif":
            if depth:
                if closed == depth:
                    closed = 0
                depth -= 1
            continue
        hit = net is not None and net.version == addr.version and (addr in net) != negated
        if op == "if":
            depth += 1
            if not closed and not hit:
                closed = depth
            continue
        if not closed and hit:
            return True
    return False


@dataclass
class _Rule:
    """One slot of the list, ready to match one address: a network (inline or from a pattern
    file), a cidr table, or the keys of an exact-address table."""

    negated: bool
    net: Network | None = None
    steps: list[tuple[str, bool, Network | None]] | None = None
    keys: frozenset[Address] | None = None

    def hit(self, addr: Address) -> bool:
        if self.net is not None:
            return addr in self.net  # False across IP versions
        if self.steps is not None:
            return _cidr_match(self.steps, addr)
        return self.keys is not None and addr in self.keys


@dataclass
class TrustedNetworks:
    """Which client addresses Postfix trusts (``permit_mynetworks``): the list in order, first
    match wins, exclusions honoured, pattern files, cidr and exact-address tables read."""

    model: Mynetworks
    origin: str  # where the list comes from, for people ("postconf -c DIR mynetworks", ...)
    _rules: list[_Rule] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        for slot in self.model.order:
            if isinstance(slot, Entry):
                if _usable(slot.network, slot.problem):  # Postfix skips host-bits items
                    self._rules.append(_Rule(slot.negated, net=slot.network))
                continue
            text = self.model.texts.get(slot.path) if slot.path is not None else None
            if text is None:
                continue
            if slot.kind == "cidr":
                self._rules.append(_Rule(slot.negated, steps=_compile_cidr(text)))
            elif slot.kind in EXACT_TYPES:
                keys = frozenset(e.network.network_address for e in table_entries(slot, text)[0]
                                 if e.network is not None
                                 and e.network.prefixlen == e.network.max_prefixlen)
                self._rules.append(_Rule(slot.negated, keys=keys))

    @classmethod
    def parse(cls, value: str | Sequence[str], origin: str) -> TrustedNetworks:
        """From a mynetworks-style value (already expanded): ``--trusted``, configuration."""
        text = value if isinstance(value, str) else " ".join(value)
        return cls(build(text), origin)

    def contains(self, ip: str) -> bool:
        """Does Postfix trust a client with this address? False for what is not an address."""
        try:
            addr = ipaddress.ip_address(ip.strip("[]"))
        except ValueError:
            return False
        for rule in self._rules:
            if rule.hit(addr):
                return not rule.negated
        return False

    @property
    def networks(self) -> list[str]:
        """The list as people read it: ``127.0.0.0/8``, ``!127.0.5.50/32``, ``cidr:/x``."""
        out: list[str] = []
        for slot in self.model.order:
            bang = "!" if slot.negated else ""
            if isinstance(slot, Entry):
                out.append(bang + (str(slot.network) if slot.network is not None
                                   else slot.pattern))
            else:
                out.append(bang + slot.spec)
        return out

    @property
    def unevaluated(self) -> list[str]:
        """Tables and items this model cannot evaluate (pcre:, ldap:, missing files...)."""
        out = [s.spec for s in self.model.order
               if isinstance(s, Source) and (s.path is None or s.path not in self.model.texts)]
        return out + [w for w in self.model.warnings if w not in out]


def resolve_trusted(cfg: dict[str, Any] | None, given: Sequence[str] | None = None,
                    config_dir: str | None = None) -> TrustedNetworks:
    """The networks a run trusts: ``--trusted`` > ``[analyze] trusted`` > the instance's
    ``mynetworks`` (``postconf -c DIR -hx``, files and tables read; DIR from ``config_dir``,
    else ``[respond] postfix_config_dir``) > this host only when no Postfix can be asked.

    A named instance that cannot be read raises PostfixError: falling back then would
    silently trust other networks than the server does.
    """
    if given:
        return TrustedNetworks.parse(list(given), "--trusted")
    section = (cfg or {}).get("analyze") or {}
    if section.get("trusted"):
        return TrustedNetworks.parse([str(t) for t in section["trusted"]], "[analyze] trusted")
    config_dir = config_dir or ((cfg or {}).get("respond") or {}).get("postfix_config_dir") or None
    if config_dir:
        Postconf(config_dir)  # a clear message when DIR holds no main.cf
        value = postconf_value("mynetworks", str(config_dir))
        return TrustedNetworks(build(value), f"postconf -c {config_dir} mynetworks")
    try:
        value = postconf_value("mynetworks")
    except PostfixError as exc:
        return TrustedNetworks.parse(list(FALLBACK), f"this host only ({exc})")
    return TrustedNetworks(build(value), "postconf mynetworks")
