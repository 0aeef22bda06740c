"""The effective Postfix configuration, read through the real ``postconf``.

Reading main.cf ourselves would miss the defaults, the compatibility-level expressions
(``${{$compatibility_level} <level {2} ? ...}``) and ``$name`` expansion; ``postconf -x`` does all
of that exactly as the daemons will.  master.cf is read with ``-F`` (the fields of every service)
and ``-xP`` (every ``-o name=value`` override, expanded), so a submission service's
``-o smtpd_client_restrictions=...`` is judged with its real value.

``postconf -c DIR`` needs nothing but ``DIR/main.cf`` and ``DIR/master.cf``: no running Postfix,
no queue directory — a copy of another server's configuration can be audited here.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
INSTALL_HINT = "is Postfix installed? (apt-get install postfix)"
_LINE = re.compile(r"^(\S+) =(?: (.*))?$")


class PostconfError(Exception):
    """postconf is missing or refused the configuration; the message is for the user."""


def find_tool(name: str) -> str | None:
    """``name`` on $PATH or in the sbin directories (root's PATH may lack /usr/sbin under sudo)."""
    found = shutil.which(name)
    if found:
        return found
    for d in SBIN_DIRS:
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def parse_assignments(text: str) -> dict[str, str]:
    """``name = value`` lines (postconf's output) into a dict; an empty value is ``""``."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            out[m.group(1)] = (m.group(2) or "").strip()
    return out


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


def _run(argv: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise PostconfError(f"{argv[0]} did not answer within {timeout:g}s") from None
    except OSError as exc:
        raise PostconfError(f"cannot run {argv[0]}: {exc.strerror}") from None


def postconf(args: list[str], config_dir: str | None = None) -> tuple[str, list[str]]:
    """Run ``postconf [-c DIR] ARGS``; return stdout and its warnings (one per line)."""
    exe = find_tool("postconf")
    if exe is None:
        raise PostconfError(f"postconf not found: {INSTALL_HINT}")
    argv = [exe] + (["-c", config_dir] if config_dir else []) + args
    r = _run(argv)
    lines = [ln.strip() for ln in r.stderr.splitlines() if ln.strip()]
    if r.returncode != 0:
        fatal = [ln for ln in lines if "fatal:" in ln] or lines or [f"exit status {r.returncode}"]
        raise PostconfError(fatal[0].removeprefix("postconf: "))
    warnings = [ln.removeprefix("postconf: ") for ln in lines if "warning:" in ln]
    return r.stdout, warnings


def check_config_dir(config_dir: str) -> None:
    """A clear message before postconf's ``fatal: open .../main.cf``."""
    p = Path(config_dir)
    if not p.is_dir():
        raise PostconfError(f"{config_dir}: not a directory")
    if not (p / "main.cf").is_file():
        raise PostconfError(f"{config_dir}: no main.cf in this directory")


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
