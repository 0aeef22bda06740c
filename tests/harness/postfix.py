"""A private, throw-away Postfix instance for the test-suite.

Everything lives under one temporary directory (``base``)::

    base/etc/            config_directory: main.cf, master.cf, aliases
    base/spool/          queue_directory
    base/data/           data_directory (owned by the postfix user)
    base/etc/sasl/       cyrus_sasl_config_path: smtpd.conf and the sasldb2 of the test users
    base/log/maillog     maillog_file, written by postlogd (no syslog involved)

The instance listens on ``127.0.0.1:<free port>`` only (``inet_interfaces = 127.0.0.1``); clients
play many hosts by connecting *from* any other 127.x.y.z address (Linux routes all of 127/8 to
``lo``; nothing has to be configured for a source address to be usable).  It never reads or
changes ``/etc/postfix/main.cf`` or ``master.cf`` (Postfix itself still reads its compiled-in
``meta_directory`` files such as ``/etc/postfix/postfix-files``) and it does not touch port 25, so
it coexists with a system Postfix.

What the log looks like (seen with Postfix 3.7.11 on Debian 12):

* SASL logins: users are created in the realm ``domain`` (``saslpasswd2 -u relayguard.test``)
  and ``smtpd_sasl_local_domain = $mydomain``, so a client may log in with the bare name
  (``alice``) or the full ``alice@relayguard.test``; either way the log shows the name *with*
  the realm: ``QID: client=unknown[127.0.1.5], sasl_method=LOGIN,
  sasl_username=alice@relayguard.test``.  So test code compares with ``f"{user}@{domain}"``
  (see :meth:`PostfixInstance.login_name`).
* A failed login (Postfix >= 3.6 appends ``sasl_username=``, also with the realm, also for
  users that do not exist): ``warning: unknown[127.0.2.9]: SASL LOGIN authentication failed:
  authentication failure, sasl_username=carol@relayguard.test``; for PLAIN, Cyrus adds its own
  ``warning: SASL authentication failure: Password verification failed`` line (no IP, no user).
* With the default ``local_header_rewrite_clients = permit_inet_interfaces`` cleanup invents a
  Message-ID only for clients connecting from 127.0.0.1 (the inet_interfaces address); other
  127.x clients, trusted or not, are already logged ``message-id=<>``.  The instance sets the
  parameter empty so that every client that omits the header, 127.0.0.1 included, is logged
  ``cleanup[..]: QID: message-id=<>`` like a remote relay.
* Debian's smtpd reads ``smtpd.conf`` from ``$config_directory/sasl/`` and ignores
  ``cyrus_sasl_config_path`` (seen with strace), so the SASL files live in ``etc/sasl``.
* Classic syslog stamps without year or fractions (``Nov 25 02:19:08``), the host is the first
  label of ``myhostname`` (``mx``), the program ``relayguard-pf/smtpd[5504]`` (``syslog_name``).
* ``smtpd_peername_lookup = no``: every client, 127.0.0.1 included, is ``unknown[IP]``.
* ``postsuper -d ALL`` logs only ``postsuper[..]: Deleted: N messages`` (no ``QID: removed``);
  master's ``terminating on signal 15`` never reaches the file (postlogd stops with it).
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from relayguard.postfix.programs import find_program

INSTALL_HINT = "apt-get install postfix sasl2-bin libsasl2-modules"

#: Test accounts created in every instance: name -> password.
DEFAULT_USERS: dict[str, str] = {
    "alice": "alice-secret-1",
    "bob": "bob-secret-2",
    "carol": "carol-secret-3",
    "dave": "dave-secret-4",
    "erin": "erin-secret-5",
    "frank": "frank-secret-6",
    "grace": "grace-secret-7",
    "heidi": "heidi-secret-8",
    "ivan": "ivan-secret-9",
    "judy": "judy-secret-10",
    "mallory": "mallory-secret-11",
    "oscar": "oscar-secret-12",
    "peggy": "peggy-secret-13",
    "trent": "trent-secret-14",
    "victor": "victor-secret-15",
    "walter": "walter-secret-16",
    "admin": "admin-secret-17",
    "info": "info-secret-18",
}

#: Local aliases the instance accepts mail for (everything is delivered to /dev/null).
LOCAL_ALIASES = ("postmaster", "root", "abuse", "mailer-daemon", "info", "sales", "support")

DIR_PREFIX = "relayguard-postfix-"
OWNER_FILE = "owner"  # "reapable PID STARTTIME": written only for reapable instances


class PostfixError(RuntimeError):
    """The private instance could not be prepared, started or stopped; the text says why."""


_which = find_program  # relayguard's own lookup: PATH first (the guard's shims), then sbin


def _sasl_plugin_dirs() -> list[Path]:
    dirs = [Path(p) for p in ("/usr/lib/sasl2", "/usr/lib64/sasl2")]
    dirs += sorted(Path("/usr/lib").glob("*/sasl2"))
    return [d for d in dirs if d.is_dir()]


def missing_requirements() -> str | None:
    """Why a private Postfix cannot run on this machine, or None when it can.

    The strings are meant for ``pytest.skip``.
    """
    if not _which("postfix"):
        return f"postfix not installed: {INSTALL_HINT}"
    missing = [n for n in ("postconf", "postqueue", "postsuper") if not _which(n)]
    if missing:
        return f"postfix not installed ({', '.join(missing)} missing): {INSTALL_HINT}"
    if not _which("saslpasswd2"):
        return f"postfix not installed (saslpasswd2 missing): {INSTALL_HINT}"
    plugins = {p.name.split(".")[0] for d in _sasl_plugin_dirs() for p in d.glob("lib*.so*")}
    lacking = {"libsasldb", "libplain", "liblogin"} - plugins
    if lacking:
        return (
            f"postfix not installed (Cyrus SASL plugins {', '.join(sorted(lacking))} missing): "
            f"{INSTALL_HINT}"
        )
    if os.geteuid() != 0:
        return "postfix tests need root"
    try:
        pwd.getpwnam("postfix")
        grp.getgrnam("postdrop")
    except KeyError:
        return f"postfix not installed (no 'postfix' user or 'postdrop' group): {INSTALL_HINT}"
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(host: str, port: int) -> str | None:
    """Describe what holds ``host:port``, or None when it can be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return f"port {host}:{port} is already in use ({exc.strerror})"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _process_identity(pid: int) -> str:
    """``"PID STARTTIME"``: survives PID reuse (the start time, in clock ticks since boot)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        start = stat.rsplit(")", 1)[-1].split()[19]
    except (OSError, IndexError):
        start = "?"
    return f"{pid} {start}"


def reap_stale_instances(parent: str | os.PathLike[str] | None = None) -> list[Path]:
    """Stop and delete instances whose starting process is gone (a test run that was killed).

    Only ``relayguard-postfix-*`` directories of instances created with ``reapable=True`` (the
    test session's) are considered: instances of a concurrent run, instances started by hand
    from a script, and kept directories are left alone.  Returns the directories removed.
    """
    reaped = []
    for base in Path(parent or tempfile.gettempdir()).glob(DIR_PREFIX + "*"):
        try:
            tag, _, owner = (base / OWNER_FILE).read_text().strip().partition(" ")
        except OSError:
            continue
        if tag != "reapable":
            continue
        pid = int(owner.split()[0]) if owner[:1].isdigit() else 0
        if pid and _pid_alive(pid) and _process_identity(pid) == owner:
            continue
        stale = PostfixInstance(keep=False)
        stale.base = base
        with contextlib.suppress(OSError, ValueError, IndexError):
            stale.master_pid = int((base / "spool/pid/master.pid").read_text().split()[0])
        with contextlib.suppress(PostfixError):
            stale.stop()
        reaped.append(base)
    return reaped


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc.strerror})"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


@dataclass
class LogWindow:
    """The part of the maillog written after a point in time (a byte offset)."""

    path: Path
    start: int

    def text(self) -> str:
        with open(self.path, "rb") as f:
            f.seek(self.start)
            return f.read().decode("utf-8", errors="replace")

    def lines(self) -> list[str]:
        return self.text().splitlines()

    def save(self, dest: Path) -> Path:
        """Copy the window into ``dest`` (a file for the analyzer) and return it."""
        dest = Path(dest)
        dest.write_text(self.text())
        return dest

    def grep(self, pattern: str | re.Pattern[str]) -> list[str]:
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        return [line for line in self.lines() if rx.search(line)]


class PostfixInstance:
    """One private Postfix: ``start()``, use, ``stop()`` (which also deletes its directory).

    Usable as a context manager.  ``relayhost`` is where mail for other domains goes (the fake
    internet); ``users`` become Cyrus sasldb accounts (name -> password); ``mynetworks`` is the
    trusted range (default ``127.0.0.0/28``: 127.0.0.1-127.0.0.15 are trusted, 127.0.0.16 and
    up, 127.0.1.x, 127.0.2.x ... are not); ``main_cf`` overrides or adds main.cf parameters;
    ``parent_dir`` is where the instance's directory is created (default: the system temp
    directory; it must be searchable by the postfix user); ``keep`` keeps that directory after
    ``stop()`` (default: ``$RELAYGUARD_KEEP_POSTFIX``); ``reapable=True`` lets
    :func:`reap_stale_instances` of a later run stop this instance should this process die
    without calling ``stop()``.
    """

    def __init__(
        self,
        relayhost: tuple[str, int] | None = None,
        *,
        users: Mapping[str, str] = DEFAULT_USERS,
        domain: str = "relayguard.test",
        hostname: str = "mx.relayguard.test",
        mynetworks: str = "127.0.0.0/28",
        syslog_name: str = "relayguard-pf",
        port: int | None = None,
        parent_dir: str | os.PathLike[str] | None = None,
        main_cf: Mapping[str, str] | None = None,
        keep: bool | None = None,
        reapable: bool = False,
    ) -> None:
        self.relayhost = relayhost
        self.users = dict(users)
        self.domain = domain
        self.hostname = hostname
        self.mynetworks = mynetworks
        self.syslog_name = syslog_name
        self.host = "127.0.0.1"
        self.port = port
        self.parent_dir = Path(parent_dir) if parent_dir is not None else None
        self.extra_main_cf = dict(main_cf or {})
        self.keep = bool(os.environ.get("RELAYGUARD_KEEP_POSTFIX")) if keep is None else keep
        self.reapable = reapable
        self.base: Path | None = None
        self.master_pid: int | None = None
        self._postfix = _which("postfix") or "postfix"
        self._postconf = _which("postconf") or "postconf"
        self._postqueue = _which("postqueue") or "postqueue"
        self._postsuper = _which("postsuper") or "postsuper"
        self._saslpasswd2 = _which("saslpasswd2") or "saslpasswd2"

    # ------------------------------------------------------------------ paths
    def _path(self, *parts: str) -> Path:
        if self.base is None:
            raise PostfixError("the instance has no directory yet: call start() first")
        return self.base.joinpath(*parts)

    @property
    def config_dir(self) -> Path:
        return self._path("etc")

    @property
    def queue_dir(self) -> Path:
        return self._path("spool")

    @property
    def data_dir(self) -> Path:
        return self._path("data")

    @property
    def sasl_dir(self) -> Path:
        # Debian's smtpd looks for smtpd.conf in $config_directory/sasl whatever
        # cyrus_sasl_config_path says (seen with strace), so it lives there; the parameter is
        # set to the same directory for other builds.
        return self._path("etc", "sasl")

    @property
    def maillog(self) -> Path:
        return self._path("log", "maillog")

    def login_name(self, user: str) -> str:
        """How ``user`` appears as ``sasl_username=`` in the log (with the realm)."""
        return user if "@" in user else f"{user}@{self.domain}"

    def password(self, user: str) -> str:
        return self.users[user.partition("@")[0]]

    @property
    def address(self) -> tuple[str, int]:
        """Where the instance's smtpd listens: ``(host, port)``."""
        if self.port is None:
            raise PostfixError("the instance has no port yet: call start() first")
        return (self.host, self.port)

    # --------------------------------------------------------------- lifecycle
    def __enter__(self) -> PostfixInstance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> PostfixInstance:
        """Write the configuration, create the SASL users and start the instance.

        Raises PostfixError with the cause, the tail of the maillog and ``postfix check``'s
        output when Postfix does not come up.
        """
        reason = missing_requirements()
        if reason:
            raise PostfixError(reason)
        if self.base is not None:
            raise PostfixError(f"instance in {self.base} already started")
        parent = self.parent_dir or Path(tempfile.gettempdir())
        self.base = Path(tempfile.mkdtemp(prefix=DIR_PREFIX, dir=parent))
        try:
            if self.reapable:
                (self.base / OWNER_FILE).write_text("reapable " + _process_identity(os.getpid()))
            self._check_traversable(self.base)
            if self.port is None:
                self.port = free_port(self.host)
            self._prepare()
            self._run_start(timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                self.stop()
            raise
        return self

    def _check_traversable(self, base: Path) -> None:
        os.chmod(base, 0o755)
        for p in base.parents:
            mode = p.stat().st_mode
            if not mode & 0o001:
                raise PostfixError(
                    f"{p} is not searchable by other users (mode {mode & 0o7777:o}); the "
                    f"postfix user could not reach {base}: use a parent directory such as /tmp"
                )

    def _prepare(self) -> None:
        pf = pwd.getpwnam("postfix")
        for d in (self.config_dir, self.queue_dir, self.sasl_dir, self.maillog.parent):
            d.mkdir(mode=0o755)
        self.data_dir.mkdir(mode=0o700)
        os.chown(self.data_dir, pf.pw_uid, pf.pw_gid)
        # postlogd runs as the postfix user and must be able to create the file.
        os.chown(self.maillog.parent, pf.pw_uid, pf.pw_gid)

        names = dict.fromkeys((*LOCAL_ALIASES, *self.users))
        # texthash: wants "key value" (postmap syntax), not aliases(5) "key: value".
        aliases = "".join(f"{a} /dev/null\n" for a in names)
        (self.config_dir / "aliases").write_text(aliases)
        (self.config_dir / "main.cf").write_text(self._main_cf())
        (self.config_dir / "master.cf").write_text(self._master_cf())

        sasldb = self.sasl_dir / "sasldb2"
        (self.sasl_dir / "smtpd.conf").write_text(
            "pwcheck_method: auxprop\n"
            "auxprop_plugin: sasldb\n"
            "mech_list: PLAIN LOGIN\n"
            f"sasldb_path: {sasldb}\n"
        )
        for user, password in self.users.items():
            r = subprocess.run(
                [self._saslpasswd2, "-p", "-c", "-f", str(sasldb), "-u", self.domain, user],
                input=password.encode(),
                capture_output=True,
                timeout=30,
                check=False,
            )
            if r.returncode != 0:
                raise PostfixError(
                    f"saslpasswd2 failed for {user!r} (exit {r.returncode}): "
                    f"{r.stderr.decode(errors='replace').strip()}"
                )
        for f in self.sasl_dir.iterdir():
            os.chown(f, 0, pf.pw_gid)
            os.chmod(f, 0o640)

    def main_cf_settings(self) -> dict[str, str]:
        """The main.cf parameters of this instance (extra ``main_cf`` entries win)."""
        assert self.base is not None and self.port is not None
        relay = f"[{self.relayhost[0]}]:{self.relayhost[1]}" if self.relayhost else ""
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "syslog_name": self.syslog_name,
            "maillog_file": str(self.maillog),
            "maillog_file_prefixes": str(self.base),
            "myhostname": self.hostname,
            "mydomain": self.domain,
            "myorigin": "$mydomain",
            "mydestination": "$mydomain, localhost",
            "inet_interfaces": self.host,
            "inet_protocols": "ipv4",
            "mynetworks": self.mynetworks,
            "relayhost": relay,
            "smtp_host_lookup": "native",
            # No reverse DNS for clients: every client is logged "unknown[IP]" and an offline
            # machine with an unreachable resolver cannot stall each connection.
            "smtpd_peername_lookup": "no",
            "smtpd_relay_restrictions": (
                "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"
            ),
            "smtpd_recipient_restrictions": "",
            "alias_maps": f"texthash:{self.config_dir / 'aliases'}",
            "alias_database": "",
            "local_recipient_maps": "$alias_maps",
            "biff": "no",
            # Cleanup adds no Message-ID/Date/From for any client: a trusted host that omits
            # its Message-ID is logged "message-id=<>" like a remote relay.
            "local_header_rewrite_clients": "",
            "always_add_missing_headers": "no",
            # Cyrus SASL with a private sasldb, AUTH over plaintext (no TLS in the tests).
            "smtpd_sasl_auth_enable": "yes",
            "smtpd_sasl_type": "cyrus",
            "smtpd_sasl_path": "smtpd",
            "cyrus_sasl_config_path": str(self.sasl_dir),
            "smtpd_sasl_local_domain": "$mydomain",
            "smtpd_sasl_security_options": "noanonymous",
            "smtpd_tls_security_level": "none",
            "smtpd_tls_auth_only": "no",
            "smtp_tls_security_level": "none",
            # Short timers: tests must not wait for retries.
            "queue_run_delay": "2s",
            "minimal_backoff_time": "2s",
            "maximal_backoff_time": "4s",
            "in_flow_delay": "0s",
            "smtpd_error_sleep_time": "0s",
            "smtp_connect_timeout": "5s",
            "delay_warning_time": "0h",
            "maximal_queue_lifetime": "1d",
            "bounce_queue_lifetime": "1d",
        }
        settings.update(self.extra_main_cf)
        return settings

    def _main_cf(self) -> str:
        head = "# relayguard test instance; generated, do not edit\n"
        return head + "".join(f"{k} = {v}\n" for k, v in self.main_cf_settings().items())

    def _master_cf(self) -> str:
        rows = [
            (f"{self.host}:{self.port}", "inet", "n", "-", "n", "-", "-", "smtpd"),
            ("pickup", "unix", "n", "-", "n", "60", "1", "pickup"),
            ("cleanup", "unix", "n", "-", "n", "-", "0", "cleanup"),
            ("qmgr", "unix", "n", "-", "n", "300", "1", "qmgr"),
            ("rewrite", "unix", "-", "-", "n", "-", "-", "trivial-rewrite"),
            ("bounce", "unix", "-", "-", "n", "-", "0", "bounce"),
            ("defer", "unix", "-", "-", "n", "-", "0", "bounce"),
            ("trace", "unix", "-", "-", "n", "-", "0", "bounce"),
            ("verify", "unix", "-", "-", "n", "-", "1", "verify"),
            ("flush", "unix", "n", "-", "n", "1000?", "0", "flush"),
            ("proxymap", "unix", "-", "-", "n", "-", "-", "proxymap"),
            ("proxywrite", "unix", "-", "-", "n", "-", "1", "proxymap"),
            ("smtp", "unix", "-", "-", "n", "-", "-", "smtp"),
            ("relay", "unix", "-", "-", "n", "-", "-", "smtp"),
            ("showq", "unix", "n", "-", "n", "-", "-", "showq"),
            ("error", "unix", "-", "-", "n", "-", "-", "error"),
            ("retry", "unix", "-", "-", "n", "-", "-", "error"),
            ("discard", "unix", "-", "-", "n", "-", "-", "discard"),
            ("local", "unix", "-", "n", "n", "-", "-", "local"),
            ("anvil", "unix", "-", "-", "n", "-", "1", "anvil"),
            ("scache", "unix", "-", "-", "n", "-", "1", "scache"),
            ("postlog", "unix-dgram", "n", "-", "n", "-", "1", "postlogd"),
        ]
        return "".join("  ".join(r) + "\n" for r in rows)

    def _run_start(self, timeout: float) -> None:
        busy = port_in_use(self.host, self.port)  # type: ignore[arg-type]
        r = self._cmd([self._postfix, "-c", str(self.config_dir), "start"], timeout=timeout)
        if r.returncode != 0:
            raise PostfixError(self._start_failure(f"postfix start exited {r.returncode}", r, busy))
        deadline = time.monotonic() + timeout
        pidfile = self.queue_dir / "pid" / "master.pid"
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                self.master_pid = int(pidfile.read_text().split()[0])
            if self.master_pid and self._banner_ok():
                return
            if self.master_pid and not _pid_alive(self.master_pid):
                raise PostfixError(self._start_failure("the master process died", r, busy))
            time.sleep(0.1)
        raise PostfixError(
            self._start_failure(f"smtpd did not answer on {self.host}:{self.port}", r, busy)
        )

    def _banner_ok(self) -> bool:
        try:
            with socket.create_connection(self.address, timeout=5) as s:
                s.settimeout(5)
                return s.recv(512).startswith(b"220")
        except OSError:
            return False

    def _start_failure(
        self, what: str, r: subprocess.CompletedProcess[str], busy: str | None
    ) -> str:
        parts = [f"private Postfix in {self.base} failed to start: {what}"]
        if busy:
            parts.append(f"cause: {busy}")
        out = (r.stdout + r.stderr).strip()
        if out:
            parts.append(f"postfix start said:\n{out}")
        chk = self._cmd([self._postfix, "-c", str(self.config_dir), "check"], timeout=60)
        parts.append(
            "postfix check said:\n" + ((chk.stdout + chk.stderr).strip() or "(nothing)")
        )
        # postlogd may still be writing the fatal line.
        time.sleep(0.3)
        parts.append(f"tail of {self.maillog}:\n{_tail(self.maillog)}")
        return "\n".join(parts)

    def pids(self) -> list[int]:
        """Every live process of this instance (found by ``MAIL_CONFIG`` in its environment)."""
        if self.base is None:
            return []
        want = f"MAIL_CONFIG={self.config_dir}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                env = (entry / "environ").read_bytes()
            except OSError:
                continue
            if want in env.split(b"\0") and _pid_alive(int(entry.name)):
                found.append(int(entry.name))
        return sorted(found)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the instance, kill any leftover process, delete the directory (unless keep)."""
        if self.base is None:
            return
        problems = []
        if self.master_pid and _pid_alive(self.master_pid):
            r = self._cmd([self._postfix, "-c", str(self.config_dir), "stop"], timeout=timeout)
            if r.returncode != 0:
                problems.append(f"postfix stop exited {r.returncode}: {(r.stdout + r.stderr).strip()}")
            deadline = time.monotonic() + timeout
            while _pid_alive(self.master_pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        leftovers = self.pids()
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.keep:
            (self.base / OWNER_FILE).unlink(missing_ok=True)  # not for reap_stale_instances
            print(f"relayguard: keeping private Postfix directory {self.base}")
        else:
            shutil.rmtree(self.base, ignore_errors=True)
        self.base = None
        self.master_pid = None
        if problems:
            raise PostfixError("; ".join(problems))

    # ------------------------------------------------------------------ tools
    def _cmd(self, argv: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise PostfixError(f"{' '.join(argv)} did not finish in {timeout:g}s") from exc

    def _checked(self, argv: list[str], timeout: float = 60.0) -> str:
        r = self._cmd(argv, timeout=timeout)
        if r.returncode != 0:
            raise PostfixError(
                f"{' '.join(argv)} exited {r.returncode}: {(r.stdout + r.stderr).strip()}"
            )
        return r.stdout

    def postconf(self, *names: str) -> dict[str, str]:
        """Effective values of main.cf parameters, read with ``postconf -c``."""
        out = self._checked([self._postconf, "-c", str(self.config_dir), *names])
        values = {}
        for line in out.splitlines():
            k, _, v = line.partition(" = ")
            values[k.strip()] = v
        return values

    def queue(self) -> list[dict]:
        """``postqueue -j`` as a list of dicts (queue_name, queue_id, sender, recipients...)."""
        out = self._checked([self._postqueue, "-c", str(self.config_dir), "-j"])
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def flush(self) -> None:
        """``postqueue -f``: retry deferred mail now."""
        self._checked([self._postqueue, "-c", str(self.config_dir), "-f"])

    def purge(self) -> None:
        """``postsuper -d ALL``: delete every queued message (logged as ``removed``)."""
        self._checked([self._postsuper, "-c", str(self.config_dir), "-d", "ALL"])

    def wait_queue_settled(
        self, timeout: float = 30.0, allow: Iterable[str] = ("deferred", "hold")
    ) -> list[dict]:
        """Poll ``postqueue -j`` until every message left sits in one of ``allow``.

        Returns the queue at that moment; raises PostfixError with the queue on timeout.
        Also waits until postlogd has written everything (the maillog stops growing).
        """
        allowed = set(allow)
        deadline = time.monotonic() + timeout
        stable = 0
        while True:
            q = self.queue()
            if all(m.get("queue_name") in allowed for m in q):
                stable += 1  # twice in a row: a message may be between queues
                if stable >= 2:
                    self.wait_log_quiet()
                    return q
            else:
                stable = 0
            if time.monotonic() > deadline:
                names = sorted({m.get("queue_name", "?") for m in q})
                raise PostfixError(
                    f"queue did not settle in {timeout:g}s: {len(q)} messages in {names}\n"
                    f"tail of {self.maillog}:\n{_tail(self.maillog)}"
                )
            time.sleep(0.15)

    # -------------------------------------------------------------------- log
    def log_size(self) -> int:
        try:
            return self.maillog.stat().st_size
        except FileNotFoundError:
            return 0

    def wait_log_quiet(self, quiet: float = 0.4, timeout: float = 10.0) -> int:
        """Wait until the maillog has not grown for ``quiet`` seconds; return its size."""
        deadline = time.monotonic() + timeout
        size, since = self.log_size(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self.log_size()
            if now != size:
                size, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                break
        return size

    def log_window(self, quiet: bool = True) -> LogWindow:
        """A window on the log lines written from now on."""
        start = self.wait_log_quiet() if quiet else self.log_size()
        return LogWindow(self.maillog, start)

    def wait_for_log(
        self,
        pattern: str | re.Pattern[str],
        since: int | LogWindow = 0,
        timeout: float = 15.0,
        count: int = 1,
    ) -> list[str]:
        """Wait until ``count`` lines after offset ``since`` match ``pattern`` (a regex).

        Postlogd writes asynchronously, so a line may appear a little after the SMTP reply.
        Returns the matching lines; raises PostfixError (with the log tail) on timeout.
        """
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        window = since if isinstance(since, LogWindow) else LogWindow(self.maillog, since)
        deadline = time.monotonic() + timeout
        while True:
            found = window.grep(rx) if self.maillog.exists() else []
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise PostfixError(
                    f"{len(found)} of {count} log lines matching {rx.pattern!r} after "
                    f"{timeout:g}s\ntail of {self.maillog}:\n{_tail(self.maillog)}"
                )
            time.sleep(0.1)
