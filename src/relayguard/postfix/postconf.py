"""Reading (and editing) Postfix's configuration through the real ``postconf``.

Reading main.cf ourselves would miss the defaults, the compatibility-level expressions
(``${{$compatibility_level} <level {2} ? ...}``) and ``$name`` expansion; ``postconf -x`` does all
of that exactly as the daemons will.  master.cf is read with ``-F`` (the fields of every service)
and ``-xP`` (every ``-o name=value`` override, expanded), so a submission service's
``-o smtpd_client_restrictions=...`` is judged with its real value.

``postconf -c DIR`` needs nothing but ``DIR/main.cf`` (and ``DIR/master.cf`` for services): no
running Postfix, no queue directory — a copy of another server's configuration can be read here.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from . import programs
from .programs import PostfixError

#: The config audit's name for the error (postconf missing or refusing the configuration).
PostconfError = PostfixError

_LINE = re.compile(r"^(\S+) =(?: (.*))?$")


def parse_assignments(text: str) -> dict[str, str]:
    """``name = value`` lines (postconf's output) into a dict; an empty value is ``""``."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            out[m.group(1)] = (m.group(2) or "").strip()
    return out


def postconf(args: list[str], config_dir: str | None = None,
             timeout: float = 30.0) -> tuple[str, list[str]]:
    """Run ``postconf [-c DIR] ARGS``; return stdout and its warnings (one per line)."""
    r = programs.run("postconf", *args, config_dir=config_dir, timeout=timeout)
    lines = [ln.strip() for ln in r.stderr.splitlines() if ln.strip()]
    if not r.ok:
        fatal = [ln for ln in lines if "fatal:" in ln] or lines or [f"exit status {r.returncode}"]
        raise PostfixError(fatal[0].removeprefix("postconf: "))
    warnings = [ln.removeprefix("postconf: ") for ln in lines if "warning:" in ln]
    return r.stdout, warnings


def value(name: str, config_dir: str | None = None, *, expand: bool = True) -> str:
    """One parameter's effective value (``postconf -h [-x] NAME``); PostfixError on failure."""
    out, _ = postconf(["-h", *(["-x"] if expand else []), name], config_dir)
    return out.strip()


class Postconf:
    """postconf for one instance (``config_dir``; None: the system's default instance)."""

    def __init__(self, config_dir: str | os.PathLike[str] | None = None,
                 timeout: float = 60.0) -> None:
        if config_dir is not None:
            config_dir = str(Path(programs.check_config_dir(config_dir)).resolve())
        self.config_dir: str | None = config_dir
        self.timeout = timeout
        self._types: set[str] | None = None

    def run(self, name: str, *args: str) -> programs.Result:
        """Any Postfix program of this instance (``-c DIR`` added)."""
        return programs.run(name, *args, config_dir=self.config_dir, timeout=self.timeout)

    def postconf(self, *args: str) -> str:
        r = self.run("postconf", *args)
        if not r.ok:
            raise PostfixError(f"postconf {' '.join(args)}: {r.complaint()}")
        return r.stdout

    def values(self, names: Iterable[str], *, expand: bool = True) -> dict[str, str]:
        """Effective values (defaults included), ``$name`` expanded unless ``expand`` is off."""
        names = list(names)
        if not names:
            return {}
        return parse_assignments(self.postconf(*(["-x"] if expand else []), *names))

    def explicit(self, name: str) -> str | None:
        """The value as written in main.cf (unexpanded), None when main.cf does not set it."""
        return parse_assignments(self.postconf("-n", name)).get(name)

    def main_cf(self) -> Path:
        d = self.config_dir or self.values(["config_directory"]).get("config_directory") \
            or "/etc/postfix"
        return Path(d) / "main.cf"

    def warnings(self, name: str) -> list[str]:
        """What postconf complains about for ``name`` right now (compared before/after edits)."""
        r = self.run("postconf", "-x", name)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        if not r.ok:
            lines.append(f"postconf exited {r.returncode}")
        return lines

    def edit(self, name: str, value: str) -> None:
        """Set a main.cf parameter with Postfix's own editor (``postconf -e``: the rest of the
        file stays as written)."""
        r = self.run("postconf", "-e", f"{name} = {value}")
        if not r.ok:
            raise PostfixError(f"postconf -e {name}: {r.complaint()}")

    def types(self) -> set[str]:
        """Lookup table types this Postfix supports (``postconf -m``)."""
        if self._types is None:
            r = self.run("postconf", "-m")
            self._types = {t.strip() for t in r.stdout.split()} if r.ok else set()
        return self._types

    def service_overrides(self, name: str) -> list[str]:
        """master.cf ``-o NAME=...`` lines (``postconf -P``), e.g. a service's own mynetworks."""
        return [ln.strip() for ln in self.postconf("-P").splitlines()
                if ln.split(" =", 1)[0].endswith("/" + name)]


# ----------------------------------------------------------- the config audit's model

@dataclass
class Service:
    """One master.cf service and the main.cf parameters it overrides with ``-o``."""

    name: str
    type: str
    private: str
    unprivileged: str
    chroot: str
    command: str  # the whole command field, -o options included
    overrides: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """How postconf names the service: ``submission/inet``."""
        return f"{self.name}/{self.type}"

    @property
    def program(self) -> str:
        words = self.command.split()
        return os.path.basename(words[0]) if words else ""

    def listen(self) -> tuple[str | None, int | None]:
        """``(host, port)`` of an inet service; host None means "every inet_interfaces address"."""
        if self.type != "inet":
            return None, None
        host: str | None = None
        name = self.name
        if ":" in name:
            host, _, name = name.rpartition(":")
            host = host.strip("[]") or None
        if name.isdigit():
            return host, int(name)
        try:
            return host, socket.getservbyname(name, "tcp")
        except OSError:
            return host, None


@dataclass
class PostfixConfig:
    """main.cf (defaults included, expanded), what was set explicitly, and master.cf."""

    config_dir: str | None
    params: dict[str, str]
    explicit: set[str]
    services: list[Service]
    warnings: list[str] = field(default_factory=list)

    def get(self, name: str, service: Service | None = None) -> str:
        """The value ``name`` has for ``service`` (its ``-o`` override, else main.cf's)."""
        if service is not None and name in service.overrides:
            return service.overrides[name]
        return self.params.get(name, "")

    def flag(self, name: str, service: Service | None = None) -> bool:
        return self.get(name, service).strip().lower() in ("yes", "true", "1")

    def service(self, key: str) -> Service | None:
        for s in self.services:
            if s.key == key:
                return s
        return None

    def smtpd_services(self) -> list[Service]:
        """Every service run by the smtpd program (inet listeners and postscreen's ``pass``)."""
        return [s for s in self.services if s.program == "smtpd"]

    def port_of(self, svc: Service) -> tuple[str | None, int | None]:
        """Where an smtpd service takes connections from the network.

        A ``pass`` service behind postscreen serves postscreen's port: postscreen hands the
        clients it lets through to the service named by its ``smtpd_service_name``.
        """
        if svc.type == "inet":
            return svc.listen()
        if svc.type == "pass":
            for ps in self.services:
                if ps.program == "postscreen" and ps.type == "inet":
                    target = self.get("smtpd_service_name", ps) or "smtpd"
                    if target == svc.name:
                        return ps.listen()
        return None, None

    def is_local_only(self, svc: Service) -> bool:
        """True when only this machine can connect (a loopback listener)."""
        host, port = self.port_of(svc)
        if port is None:
            return True  # unix or pass services nobody routes network clients to
        hosts = [host] if host else _split(self.get("inet_interfaces", svc))
        if not hosts:
            return False
        for h in hosts:
            if h in ("loopback-only", "localhost"):
                continue
            if h == "all":
                return False
            try:
                if not ipaddress.ip_address(h.strip("[]")).is_loopback:
                    return False
            except ValueError:
                return False  # a host name: assume it is a public interface
        return True


def _split(value: str) -> list[str]:
    return [t for t in re.split(r"[\s,]+", value) if t]


def check_config_dir(config_dir: str) -> None:
    """A clear message before postconf's ``fatal: open .../main.cf``."""
    p = Path(config_dir)
    if not p.is_dir():
        raise PostfixError(f"{config_dir}: not a directory")
    if not (p / "main.cf").is_file():
        raise PostfixError(f"{config_dir}: no main.cf in this directory")


def load(config_dir: str | None = None) -> PostfixConfig:
    """The effective configuration of the Postfix whose configuration is ``config_dir``."""
    if config_dir is not None:
        check_config_dir(config_dir)
    warnings: list[str] = []

    def call(*args: str) -> str:
        out, warn = postconf(list(args), config_dir)
        warnings.extend(w for w in warn if w not in warnings)
        return out

    params = parse_assignments(call("-x"))
    explicit = set(parse_assignments(call("-n")))
    fields: dict[str, dict[str, str]] = {}
    for key, value in parse_assignments(call("-F")).items():
        name, typ, fname = key.rsplit("/", 2)
        fields.setdefault(f"{name}/{typ}", {"name": name, "type": typ})[fname] = value
    services = [
        Service(
            name=f["name"],
            type=f["type"],
            private=f.get("private", "-"),
            unprivileged=f.get("unprivileged", "-"),
            chroot=f.get("chroot", "-"),
            command=f.get("command", ""),
        )
        for f in fields.values()
    ]
    by_key = {s.key: s for s in services}
    for key, value in parse_assignments(call("-xP")).items():
        name, typ, pname = key.rsplit("/", 2)
        svc = by_key.get(f"{name}/{typ}")
        if svc is not None:
            svc.overrides[pname] = value
    return PostfixConfig(config_dir, params, explicit, services, warnings)
