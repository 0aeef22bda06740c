"""Reading ``mynetworks`` from a Postfix instance, and the Postfix tools that change it.

Values come from the real ``postconf`` (``-n`` for what main.cf says, ``-x`` for ``$name``
expansion, defaults included), so relayguard sees what the daemons see. Every program runs as
an argv list, never through a shell.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..queue.tools import find_tool
from .mynetworks import (
    DB_SUFFIX,
    Entry,
    InlineItem,
    Network,
    Source,
    TrustedError,
    expand,
    file_entries,
    is_table,
    parse_network,
    references,
    split_list,
    table_entries,
    table_spec,
)

INSTALL_HINT = "is Postfix installed? (apt-get install postfix)"


class Postfix:
    """The tools of one instance (``config_dir``; None: the system's default instance)."""

    def __init__(self, config_dir: str | os.PathLike[str] | None = None,
                 timeout: float = 60.0) -> None:
        if config_dir is not None:
            d = Path(config_dir)
            if not (d / "main.cf").is_file():
                raise TrustedError(f"--config-dir {d}: no main.cf there "
                                   "(a Postfix config_directory?)")
            config_dir = str(d.resolve())
        self.config_dir: str | None = config_dir
        self.timeout = timeout
        self._types: set[str] | None = None

    def tool(self, name: str) -> str:
        path = find_tool(name)
        if path is None:
            raise TrustedError(f"{name} not found: {INSTALL_HINT}")
        return path

    def argv(self, name: str, *args: str) -> list[str]:
        argv = [self.tool(name)]
        if self.config_dir is not None:
            argv += ["-c", self.config_dir]
        return argv + list(args)

    def run(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        argv = self.argv(name, *args)
        try:
            return subprocess.run(argv, capture_output=True, text=True, errors="replace",
                                  timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise TrustedError(f"{name} did not finish in {self.timeout:g}s") from None
        except OSError as exc:
            raise TrustedError(f"cannot run {argv[0]}: {exc.strerror}") from None

    def postconf(self, *args: str) -> str:
        r = self.run("postconf", *args)
        if r.returncode != 0:
            raise TrustedError(f"postconf {' '.join(args)}: {_complaint(r)}")
        return r.stdout

    def values(self, names: Iterable[str], *, expand: bool = True) -> dict[str, str]:
        """Effective values (defaults included), ``$name`` expanded unless ``expand`` is off."""
        names = list(names)
        if not names:
            return {}
        out = self.postconf(*(["-x"] if expand else []), *names)
        return _assignments(out)

    def explicit(self, name: str) -> str | None:
        """The value as written in main.cf (unexpanded), None when main.cf does not set it."""
        return _assignments(self.postconf("-n", name)).get(name)

    def main_cf(self) -> Path:
        d = self.config_dir or self.values(["config_directory"]).get("config_directory") \
            or "/etc/postfix"
        return Path(d) / "main.cf"

    def warnings(self) -> list[str]:
        """What postconf complains about for mynetworks right now (compared before/after)."""
        r = self.run("postconf", "-x", "mynetworks")
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        if r.returncode != 0:
            lines.append(f"postconf exited {r.returncode}")
        return lines

    def set_mynetworks(self, value: str) -> None:
        """Write main.cf's mynetworks with Postfix's own editor (keeps the rest of the file)."""
        r = self.run("postconf", "-e", f"mynetworks = {value}")
        if r.returncode != 0:
            raise TrustedError(f"postconf -e mynetworks: {_complaint(r)}")

    def types(self) -> set[str]:
        """Lookup table types this Postfix supports (``postconf -m``)."""
        if self._types is None:
            r = self.run("postconf", "-m")
            self._types = {t.strip() for t in r.stdout.split()} if r.returncode == 0 else set()
        return self._types

    def postmap_build(self, kind: str, path: Path) -> None:
        r = self.run("postmap", f"{kind}:{path}")
        if r.returncode != 0 or _fatal(r):
            raise TrustedError(f"postmap {kind}:{path}: {_complaint(r)}")

    def postmap_query(self, spec: str, key: str) -> tuple[bool | None, list[str]]:
        """``(found, warnings)`` of ``postmap -q KEY SPEC``; found None when the query failed."""
        r = self.run("postmap", "-q", key, spec)
        warnings = [ln for ln in r.stderr.splitlines() if ln.strip()]
        if r.returncode == 0:
            return True, warnings
        if r.returncode == 1 and not _fatal(r):
            return False, warnings
        return None, warnings or [f"postmap exited {r.returncode}"]

    def running(self) -> bool:
        return self.run("postfix", "status").returncode == 0

    def reload(self) -> None:
        r = self.run("postfix", "reload")
        if r.returncode != 0:
            raise TrustedError(f"postfix reload: {_complaint(r)}")


def _assignments(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        k, sep, v = line.partition(" =")
        if sep and k and " " not in k:
            out[k] = v.strip()
    return out


def _fatal(r: subprocess.CompletedProcess[str]) -> bool:
    return any("fatal:" in ln for ln in r.stderr.splitlines())


def _complaint(r: subprocess.CompletedProcess[str]) -> str:
    lines = [ln.strip() for ln in r.stderr.splitlines() if ln.strip()]
    fatal = [ln for ln in lines if "fatal:" in ln]
    return (fatal or lines or [f"exit status {r.returncode}"])[-1]


# ------------------------------------------------------------------------- model

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
                        return True, e, unknown
                continue
            found = probe(slot, net) if probe is not None else None
            if found:
                return True, slot, unknown
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


def read_mynetworks(pf: Postfix, *, raw_override: str | None = None,
                    text_overrides: dict[Path, str] | None = None) -> Mynetworks:
    """Read mynetworks, its tables and pattern files.

    ``raw_override``/``text_overrides`` stand in for main.cf's value and file contents: the
    same reading predicts the result of a change before it is written.
    """
    raw_explicit = pf.explicit("mynetworks") if raw_override is None else raw_override
    explicit = raw_explicit is not None
    if raw_explicit is None:
        raw = pf.values(["mynetworks"]).get("mynetworks", "")
    else:
        raw = raw_explicit
    model = Mynetworks(main_cf=pf.main_cf(), explicit=explicit, raw=raw, items=[])
    model.main_source.path = model.main_cf
    style = pf.values(["mynetworks_style"]).get("mynetworks_style", "")
    model.style = style
    refs = set().union(*(references(it) for it in split_list(raw))) if raw else set()
    params = pf.values(sorted(refs)) if refs else {}
    types = pf.types()
    overrides = text_overrides or {}
    seen: set[str] = set()

    def add_source(item: str, origin: str | None, depth: int) -> None:
        spec = table_spec(item)
        if item.startswith("/"):
            src = Source("file", item, Path(item))
        elif spec is not None:
            kind, name = spec
            src = Source(kind, item, Path(name) if name.startswith("/") else None,
                         query=f"{kind}:{name}")
            if kind not in DB_SUFFIX:
                src.editable, src.why_not = False, f"{kind}: tables are not edited by relayguard"
            elif kind not in types:
                src.editable, src.why_not = False, f"this Postfix does not support {kind}: tables"
            elif src.path is None:
                src.editable, src.why_not = False, "not an absolute file name"
        else:
            return
        if item in seen:
            return
        seen.add(item)
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
                if depth < 2 and not e.negated:
                    add_source(e.pattern, origin, depth + 1)
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
                if negated:
                    model.warnings.append(f"main.cf: {sub}: a negated table is not checked")
                    continue
                add_source(pattern, origin, 0)
                continue
            net, problem = parse_network(pattern, bracketless_ipv6=False)
            model.order.append(Entry(pattern, net, model.main_source, negated=negated,
                                     problem=problem, origin=origin, text=sub))
    try:
        out = pf.postconf("-P")
        model.overrides = [ln.strip() for ln in out.splitlines()
                           if ln.split(" =", 1)[0].endswith("/mynetworks")]
    except TrustedError:
        pass
    return model
