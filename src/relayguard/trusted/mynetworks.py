"""The text edits that change ``mynetworks`` (main.cf's value, tables, pattern files).

The list itself — items, exclusions, files, tables, match order — is modelled by
:mod:`relayguard.postfix.mynetworks`; this module is pure: it takes texts and produces new
texts. Writing files, postconf and postmap live in :mod:`relayguard.trusted.postfix`.
"""

from __future__ import annotations

from ..postfix.mynetworks import (
    Entry,
    Network,
    Source,
    format_network,
    item_spans,
    key_value,
    logical_lines,
    parse_postfix_network,
    split_list,
    table_entries,
)
from ..postfix.programs import PostfixError


class TrustedError(PostfixError):
    """The change cannot be made; the message is one line (or a few) for the user."""


def parse_target(text: str) -> Network:
    """The CIDR a person typed (``127.0.3.7``, ``10.0.0.0/8``, ``[::1]/128``, ``2001:db8::/32``)."""
    t = text.strip()
    net, problem = parse_postfix_network(t)
    if net is None:
        raise TrustedError(f"{text!r} is not an address or a network (e.g. 192.168.1.50 or "
                           "192.168.1.0/24)")
    if problem and problem.startswith("host bits"):
        raise TrustedError(f"{text}: host bits set; did you mean "
                           f"{format_network(net)}? (or {net.network_address} alone)")
    return net


# ------------------------------------------------------------------------- edits

def _same(entry: Entry, net: Network, negated: bool) -> bool:
    return entry.network == net and entry.negated == negated


def _literal_match(raw: str, net: Network, negated: bool) -> bool:
    neg = raw.startswith("!")
    body = raw[1:] if neg else raw
    if "$" in raw or body.startswith("/"):
        return False
    # An unbracketed IPv6 network is an address here, not a table.
    n, _ = parse_postfix_network(body)
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
                n, _ = parse_postfix_network(item[1:] if neg else item)
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
        _, v = key_value(e.text)
        if v:
            counts[v] = counts.get(v, 0) + 1
    return max(counts, key=lambda k: counts[k]) if counts else default


def append_line(text: str, line: str, comment: str | None = None) -> str:
    if text and not text.endswith("\n"):
        text += "\n"
    return text + (f"# {comment}\n" if comment else "") + line + "\n"
