"""Planning and applying a change to mynetworks: preview → backup → write → validate (roll back
on any doubt) → reload.

A plan is computed from the configuration as read (:func:`plan_add`, :func:`plan_remove`);
nothing is written until :func:`apply`. The files a change touches (main.cf, a table source and
its postmap-built file) are copied first into a timestamped backup directory; then the change
is written (main.cf with ``postconf -e``, tables atomically: written aside, built aside with
``postmap``, renamed into place), read back, and checked: postconf must not complain more than
before, the result must be what was asked, ``postmap -q`` must answer for a changed table as
expected. If anything fails, every file is put back from the backup.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..changes import backup_files, backup_name, restore_files
from ..postfix.instance import Postfix
from ..postfix.maps import atomic_write, build_aside
from ..postfix.mynetworks import (
    DB_SUFFIX,
    Entry,
    Mynetworks,
    Network,
    Source,
    format_network,
    read_mynetworks,
)
from ..postfix.programs import PostfixError
from .mynetworks import (
    TrustedError,
    append_line,
    cidr_line,
    common_value,
    exact_line,
    inline_with,
    inline_without,
    remove_lines,
)

DEFAULT_BACKUP_DIR = "/var/lib/relayguard/backups/trusted"
#: Table types `postmap -q` can answer locally, for tables relayguard does not read itself.
PROBE_TYPES = frozenset({"pcre", "regexp", "static", "inline"})
Probe = Callable[[Source, Network], "bool | None"]


@dataclass
class Change:
    """One file (or main.cf's value) before and after."""

    source: Source
    before: str
    after: str
    removed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)

    @property
    def is_main_cf(self) -> bool:
        return self.source.kind == "main.cf"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"where": self.source.spec,
                             "file": str(self.source.path) if self.source.path else None,
                             "removed": self.removed, "added": self.added}
        if self.is_main_cf:
            d |= {"before": self.before, "after": self.after}
        return d


@dataclass
class Plan:
    action: str  # "add" or "remove"
    network: Network
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    still_trusted_by: list[str] = field(default_factory=list)
    exclude: bool = False
    explicit_before: bool = True  # main.cf set mynetworks before the change

    @property
    def label(self) -> str:
        return format_network(self.network, brackets=False)

    def change_for(self, source: Source) -> Change | None:
        for c in self.changes:
            if c.source.spec == source.spec:
                return c
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "network": self.label, "exclude": self.exclude,
                "changes": [c.to_dict() for c in self.changes], "warnings": self.warnings,
                "notes": self.notes, "still_trusted_by": self.still_trusted_by}


def make_probe(pf: Postfix) -> Probe:
    """Ask ``postmap -q`` about tables relayguard cannot read (pcre:, regexp:…), hosts only."""
    def probe(src: Source, net: Network) -> bool | None:
        if src.kind not in PROBE_TYPES or net.prefixlen != net.max_prefixlen:
            return None
        found, _ = pf.postmap_query(src.map_spec, str(net.network_address))
        return found
    return probe


def _describe(slot: Entry | Source | None) -> str:
    if slot is None:
        return "?"
    if isinstance(slot, Source):
        return slot.spec
    return f"{'!' if slot.negated else ''}{slot.pattern} ({slot.where})"


def _predict(pf: Postfix, model: Mynetworks, changes: list[Change]) -> Mynetworks:
    raw = None
    texts: dict[Path, str] = {}
    for c in changes:
        if c.is_main_cf:
            raw = c.after
        elif c.source.path is not None:
            texts[c.source.path] = c.after
    if raw is None and not model.explicit and not texts:
        return model
    return read_mynetworks(pf, raw_override=raw if raw is not None else
                           (model.raw if model.explicit else None), text_overrides=texts)


def _main_change(plan: Plan, model: Mynetworks) -> Change:
    c = plan.change_for(model.main_source)
    if c is None:
        c = Change(model.main_source, model.raw, model.raw)
        plan.changes.insert(0, c)
    return c


def _exclusion(plan: Plan, model: Mynetworks, net: Network) -> None:
    """Put ``!net`` first in main.cf's mynetworks: first match wins, so it beats any wider
    network or table after it."""
    c = _main_change(plan, model)
    item = "!" + format_network(net, brackets=True)
    c.after = inline_with(c.after, item, first=True, style=c.before)
    c.added.append(item)


def plan_remove(pf: Postfix, model: Mynetworks, net: Network, *, exclude: bool = False,
                probe: Probe | None = None) -> Plan:
    """What `trusted remove` would change; TrustedError when there is nothing to remove."""
    plan = Plan("remove", net, exclude=exclude, explicit_before=model.explicit)
    label = plan.label
    exact = model.find(net)
    editable = [e for e in exact if e.editable]
    readonly = [e for e in exact if not e.editable]
    if not exact:
        trusted, by, unknown = model.decide(net, probe)
        if not trusted:
            excluded = model.find(net, negated=True)
            if excluded:
                raise TrustedError(f"{label} is already excluded from mynetworks "
                                   f"({excluded[0].where}): nothing to remove")
            msg = f"{label} is not in mynetworks: nothing to remove"
            inner = model.inner(net)
            if inner:
                msg += ("; listed inside it: " + ", ".join(_describe(e) for e in inner[:5])
                        + " (remove those)")
            if unknown:
                msg += "; not checked: " + ", ".join(s.spec for s in unknown)
            raise TrustedError(msg)
        wide = by.pattern if isinstance(by, Entry) else (by.spec if by else "?")
        if not exclude:
            raise TrustedError(
                f"{label} is not listed in mynetworks itself: it is trusted through "
                f"{_describe(by)}. To stop trusting this address only: "
                f"`relayguard trusted remove {label} --exclude` (puts !{label} first in "
                f"main.cf's mynetworks); to stop trusting the whole network: "
                f"`relayguard trusted remove {wide}`")
        _exclusion(plan, model, net)
        plan.notes.append(f"{label} is trusted through {_describe(by)}: excluded instead")
        return plan
    if not editable:
        e = readonly[0]
        why = (f"it comes from {e.origin}: edit that parameter" if e.origin
               else e.source.why_not or "not editable")
        raise TrustedError(f"{label} is listed in {e.where}, which relayguard does not edit "
                           f"({why})")
    by_source: dict[str, Source] = {}
    for e in editable:
        by_source.setdefault(e.source.spec, e.source)
    for spec, src in by_source.items():
        if src.kind == "main.cf":
            c = _main_change(plan, model)
            c.after = inline_without(c.after, net)
            c.removed += [e.text or e.pattern for e in editable if e.source.spec == spec]
        else:
            assert src.path is not None
            before = model.texts.get(src.path, "")
            after, removed = remove_lines(before, src, net)
            plan.changes.append(Change(src, before, after, removed=[_flat(r) for r in removed]))
    main = plan.change_for(model.main_source)
    if main is not None and not main.after.strip():
        plan.warnings.append("mynetworks becomes empty: no client relays without logging in, "
                             "not even programs on this host connecting to 127.0.0.1")
    for e in readonly:
        plan.warnings.append(f"{label} is also listed in {e.where}, which relayguard does not "
                             f"edit: {e.origin or e.source.why_not}")
    predicted = _predict(pf, model, plan.changes)
    trusted, by, _ = predicted.decide(net, probe)
    if trusted:
        if exclude:
            _exclusion(plan, model, net)
        else:
            plan.still_trusted_by.append(_describe(by))
            wide = by.pattern if isinstance(by, Entry) else (by.spec if by else "?")
            plan.warnings.append(
                f"{label} stays trusted through {_describe(by)}: it can still relay. Add "
                f"--exclude to exclude it too, or remove {wide}")
    if not model.explicit and plan.change_for(model.main_source):
        plan.warnings.append("main.cf did not set mynetworks (default from mynetworks_style = "
                             f"{model.style}): the remaining networks are written explicitly")
    return plan


def plan_add(pf: Postfix, model: Mynetworks, net: Network, *, where: str | None = None,
             probe: Probe | None = None, who: str = "") -> Plan:
    """What `trusted add` would change (no changes: already trusted, see ``notes``)."""
    plan = Plan("add", net, explicit_before=model.explicit)
    label = plan.label
    if net.prefixlen == 0:
        raise TrustedError(f"refusing to trust {label}: every address on the internet could "
                           "relay through this server (an open relay)")
    if not (net.is_private or net.is_loopback or net.is_link_local):
        plan.warnings.append(f"{label} is not a private network: every host in it will be able "
                             "to relay through this server without a password")
    if (net.version == 4 and net.prefixlen < 16) or (net.version == 6 and net.prefixlen < 48):
        plan.warnings.append(f"{label} is a wide network ({net.num_addresses:,} addresses): one "
                             "compromised host anywhere in it can send spam through this server")
    # A "!net" exclusion is undone first: add means "trust it again".
    for e in model.find(net, negated=True):
        if not e.editable:
            raise TrustedError(f"{label} is excluded by !{e.pattern} in {e.where}, which "
                               "relayguard does not edit")
        if e.source.kind == "main.cf":
            c = _main_change(plan, model)
            c.after = inline_without(c.after, net, negated=True)
            c.removed.append("!" + e.pattern)
        else:
            assert e.source.path is not None
            before = model.texts.get(e.source.path, "")
            after, removed = remove_lines(before, e.source, net, negated=True)
            plan.changes.append(Change(e.source, before, after,
                                       removed=[_flat(r) for r in removed]))
    predicted = _predict(pf, model, plan.changes) if plan.changes else model
    trusted, by, _ = predicted.decide(net, probe)
    if trusted:
        if not plan.changes:
            plan.notes.append(f"{label} is already trusted: {_describe(by)}")
        else:
            plan.notes.append(f"{label} is trusted again through {_describe(by)} once the "
                              "exclusion is removed")
        return plan
    dest = _destination(model, net, where)
    if dest.kind == "main.cf":
        c = _main_change(plan, model)
        item = format_network(net, brackets=True)
        c.after = inline_with(c.after, item, style=c.before)
        c.added.append(item)
        if not model.explicit:
            plan.warnings.append("main.cf did not set mynetworks (default from "
                                 f"mynetworks_style = {model.style}): it is written explicitly")
    else:
        assert dest.path is not None
        before = model.texts.get(dest.path, "")
        entries = model.source_entries(dest)
        value = common_value(entries)
        line = cidr_line(net, value) if dest.kind == "cidr" else exact_line(net, value)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        after = append_line(before, line, f"added by relayguard trusted add, {stamp}"
                            + (f", {who}" if who else ""))
        plan.changes.append(Change(dest, before, after, added=[_flat(line)]))
    predicted = _predict(pf, model, plan.changes)
    trusted, by, _ = predicted.decide(net, probe)
    if not trusted:
        raise TrustedError(f"adding {label} would not trust it: {_describe(by)} comes first "
                           "and excludes it")
    return plan


def _flat(text: str) -> str:
    """A table line for people and the audit trail: one space between fields."""
    return " ".join(text.split())


def _destination(model: Mynetworks, net: Network, where: str | None) -> Source:
    host = net.prefixlen == net.max_prefixlen
    if where == "inline":
        return model.main_source
    if where:
        for s in model.sources:
            if where in (s.spec, str(s.path)) or s.spec.endswith(":" + where):
                if not s.editable:
                    raise TrustedError(f"--table {where}: {s.why_not}")
                if s.kind == "file":
                    raise TrustedError(f"--table {where}: a pattern file; relayguard adds to "
                                       "main.cf or to cidr:/hash: tables")
                if s.exact_only and not host:
                    raise TrustedError(f"--table {where}: {s.kind}: tables match exact "
                                       f"addresses only; {format_network(net)} needs a cidr: "
                                       "table or main.cf (--inline)")
                return s
        raise TrustedError(f"--table {where}: mynetworks does not use that table (see "
                           "`relayguard trusted list`)")
    for s in model.sources:  # the administrator keeps networks in a cidr table: use it
        if s.kind == "cidr" and s.editable:
            return s
    if host:
        for s in model.sources:
            if s.exact_only and s.editable:
                return s
    return model.main_source


# ----------------------------------------------------------------------------- apply

@dataclass
class Applied:
    backup_dir: Path
    reloaded: bool | None = None  # None: not running (or --no-reload)
    warnings: list[str] = field(default_factory=list)


def _files_of(plan: Plan, main_cf: Path) -> list[Path]:
    files: list[Path] = []
    for c in plan.changes:
        if c.is_main_cf:
            files.append(main_cf)
        elif c.source.path is not None:
            files.append(c.source.path)
            if c.source.db_path is not None:
                files.append(c.source.db_path)
    return files


def make_backup(base: str | os.PathLike[str], plan: Plan, main_cf: Path,
                config_dir: str | None) -> tuple[Path, list[dict[str, Any]]]:
    """Copy every file the plan touches into a new directory (mode 0700); a ``meta.json``
    there says where each copy came from, so a person can put it back with ``cp``."""
    meta = {"schema": "relayguard.trusted-backup/1", "action": plan.action,
            "network": plan.label, "config_dir": config_dir, "main_cf": str(main_cf)}
    return backup_files(base, backup_name(f"trusted-{plan.action}", plan.label),
                        _files_of(plan, main_cf), meta)


def _write_table(pf: Postfix, src: Source, text: str) -> None:
    """Replace a table or pattern file (indexed types: built aside with postmap, then renamed),
    keeping the original's mode and owner."""
    assert src.path is not None
    if DB_SUFFIX.get(src.kind) is None:
        atomic_write(src.path, text)
    else:
        build_aside(src.kind, src.path, text, config_dir=pf.config_dir, timeout=pf.timeout)


def _probe_key(net: Network) -> str:
    return str(net.network_address)


def _verify(pf: Postfix, plan: Plan, warnings_before: list[str],
            table_warnings_before: dict[str, list[str]], probe: Probe | None) -> None:
    after = pf.warnings("mynetworks")
    new = [w for w in after if w not in warnings_before]
    if new:
        raise TrustedError(f"postconf complains after the change: {new[0]}")
    model = read_mynetworks(pf)
    net = plan.network
    trusted, by, _ = model.decide(net, probe)
    if plan.action == "add" and not trusted:
        raise TrustedError(f"after the change, {plan.label} is still not trusted")
    if plan.action == "remove":
        left = [e for e in model.find(net) if e.editable]
        if left:
            raise TrustedError(f"after the change, {plan.label} is still listed in "
                               f"{left[0].where}")
        if plan.exclude and trusted:
            raise TrustedError(f"after the change, {plan.label} is still trusted through "
                               f"{_describe(by)}")
    for c in plan.changes:
        if c.is_main_cf:
            if not model.explicit:
                raise TrustedError("main.cf does not set mynetworks after the change")
            continue
        if c.source.kind == "file":
            continue  # a pattern file is not a table postmap can query; read back above
        spec = c.source.map_spec
        found, warnings = pf.postmap_query(spec, _probe_key(net))
        fresh = [w for w in warnings if w not in table_warnings_before.get(spec, [])]
        if found is None or fresh:
            raise TrustedError(f"postmap -q on {spec}: {(fresh or warnings or ['failed'])[0]}")
        expect = _table_should_match(model.source_entries(c.source), c.source, net)
        if expect is not None and bool(found) != expect:
            raise TrustedError(f"postmap -q {_probe_key(net)} {spec} answers "
                               f"{'found' if found else 'not found'}, expected the opposite")


def _table_should_match(entries: list[Entry], src: Source, net: Network) -> bool | None:
    """What ``postmap -q`` must answer for the network's first address, judged from the text;
    None when if-blocks or negations make that more than this check knows."""
    addr = net.network_address
    if src.exact_only:
        return any(e.network is not None and e.network.prefixlen == e.network.max_prefixlen
                   and e.network.network_address == addr for e in entries)
    hits = [e for e in entries if e.network is not None and e.network.version == addr.version
            and addr in e.network and not e.problem]
    if any(e.negated or e.conditional for e in entries):
        return None
    return bool(hits)


def apply(pf: Postfix, model: Mynetworks, plan: Plan, backup_base: str | os.PathLike[str], *,
          reload: bool = True, probe: Probe | None = None) -> Applied:
    """Back up, write, verify (restoring everything on failure), reload a running Postfix."""
    warnings_before = pf.warnings("mynetworks")
    table_before: dict[str, list[str]] = {}
    for c in plan.changes:
        if not c.is_main_cf and c.source.kind != "file" and c.source.path is not None \
                and c.source.path.exists():
            table_before[c.source.map_spec] = pf.postmap_query(c.source.map_spec,
                                                               _probe_key(plan.network))[1]
    try:
        backup_dir, saved = make_backup(backup_base, plan, model.main_cf, pf.config_dir)
    except OSError as exc:
        raise TrustedError(f"cannot write the backup in {backup_base}: "
                           f"{exc.strerror or exc} (nothing was changed; --backup-dir DIR)"
                           ) from None
    try:
        for c in plan.changes:
            if c.is_main_cf:
                pf.edit("mynetworks", c.after)
            else:
                _write_table(pf, c.source, c.after)
        _verify(pf, plan, warnings_before, table_before, probe)
    except (PostfixError, OSError) as exc:
        why = str(exc) if isinstance(exc, PostfixError) else f"{exc.strerror or exc}"
        problems = restore_files(saved, backup_dir)
        if problems:
            raise TrustedError(f"{why}; restoring from {backup_dir} FAILED for "
                               f"{'; '.join(problems)}: copy the files back by hand") from None
        raise TrustedError(f"{why}; every file was restored from {backup_dir}") from None
    result = Applied(backup_dir)
    if reload:
        result.reloaded, warning = pf.reload_if_running()
        if warning:
            result.warnings.append(warning)
    return result
