"""`relayguard ban list|add|remove|sync`, `relayguard lock`, `unlock` and `locks`.

Wired into the main command at the end of relayguard/cli.py, which imports this module last;
helpers of relayguard.cli (fail, load_config, parse_duration) are imported inside functions.

Exit codes: 0 done (also: nothing to remove); 2 usage or input error, a refused ban (allowlist),
or a backend failure — one line on stderr, never a traceback.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .. import timefmt
from ..state.store import StateError
from .bans import Banner
from .common import RespondError
from .locks import Locker


def _fail(message: str) -> NoReturn:
    from ..cli import fail

    fail(message)


def _config(path: str | None) -> dict[str, Any]:
    from ..cli import load_config

    return load_config(path)


def _seconds(opt: str, text: str | None) -> float | None:
    """--for: a duration (20m, 2h, 1d); None when not given."""
    if text is None:
        return None
    from ..cli import parse_duration

    try:
        value = parse_duration(text)
    except ValueError as exc:
        _fail(f"{opt}: {exc}")
    if value <= 0:
        _fail(f"{opt}: must be positive (leave it out, or --permanent, for no expiry)")
    return value


def _t(value: Any) -> Text:
    """Logins and reasons come from logs: shown as text, never as rich markup."""
    s = "" if value is None else str(value)
    return Text("".join(c if c.isprintable() else "?" for c in s))


def _warn(lines: list[str]) -> None:
    for line in lines:
        click.echo(f"relayguard: warning: {line}", err=True)


def _enforced(cfg: dict[str, Any], config_dir: str | None, what: str) -> None:
    """Never a silent success: say it when nothing on this machine enforces what was recorded."""
    from .enforcement import notice

    line = notice(cfg, config_dir, what)
    if line:
        click.echo(line, err=True)


def _age(seconds: float) -> str:
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option("--state", "state_path", type=click.Path(dir_okay=False),
                     help="State database (default: [state] path, $RELAYGUARD_STATE, "
                          "/var/lib/relayguard/state.db)."),
        click.option("--config", "config_path", type=click.Path(dir_okay=False),
                     help="relayguard TOML configuration (default: /etc/relayguard/relayguard.toml "
                          "when present)."),
        click.option("--config-dir", type=click.Path(file_okay=False),
                     help="Postfix configuration directory of the instance (postfix -c DIR) for "
                          "reloads, postmap and postconf ([respond] postfix_config_dir)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


@contextmanager
def _banner(config_path: str | None, state_path: str | None,
            config_dir: str | None) -> Iterator[Banner]:
    cfg = _config(config_path)
    try:
        b = Banner.from_config(cfg, state_path, config_dir)
    except (RespondError, StateError) as exc:
        _fail(str(exc))
    try:
        yield b
    except (RespondError, StateError) as exc:
        _fail(str(exc))
    finally:
        b.close()


@contextmanager
def _locker(config_path: str | None, state_path: str | None,
            config_dir: str | None) -> Iterator[Locker]:
    cfg = _config(config_path)
    try:
        lk = Locker.from_config(cfg, state_path, config_dir)
    except (RespondError, StateError) as exc:
        _fail(str(exc))
    try:
        yield lk
    except (RespondError, StateError) as exc:
        _fail(str(exc))
    finally:
        lk.close()


# ------------------------------------------------------------------------------ ban

@click.group()
def ban() -> None:
    """Refuse addresses or networks: list, add, remove (and sync) bans.

    How a ban is enforced is set by [bruteforce] ban_backend: state (the policy server refuses
    the client), nftables (TCP 25/465/587 dropped), postfix-access (a cidr: map for
    check_client_access) or command (e.g. fail2ban-client). Networks in [bruteforce] allow
    (default 127.0.0.0/8 and ::1) are never banned. Every change goes to the audit trail
    (relayguard history).
    """


@ban.command("list")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="json: a list of {ip, reason, since, expires, backend}.")
@_common
def ban_list(fmt: str, state_path: str | None, config_path: str | None,
             config_dir: str | None) -> None:
    """Active bans (expired ones are never shown)."""
    with _banner(config_path, state_path, config_dir) as b:
        bans = b.bans()
    if fmt == "json":
        click.echo(json.dumps([x.to_dict() for x in bans], ensure_ascii=False))
        return
    c = Console(highlight=False, soft_wrap=False)
    if not bans:
        c.print("No active bans.")
        return
    now = time.time()
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for col in ("Address", f"Since ({timefmt.label()})", "Expires in", "Backend", "By"):
        table.add_column(col, no_wrap=True)
    table.add_column("Reason", overflow="fold")
    for x in bans:
        table.add_row(_t(x.network), _t(timefmt.text(x.since)),
                      _t("never" if x.expires is None else _age(x.expires - now)),
                      _t(x.backend), _t(x.source or ""), _t(x.reason))
    c.print(table)


@ban.command("add")
@click.argument("network", metavar="IP|CIDR")
@click.option("--for", "for_", metavar="DURATION",
              help="How long (90s, 20m, 2h, 1d). Default: [bruteforce] ban_for (20m).")
@click.option("--permanent", is_flag=True, help="Until removed (relayguard ban remove).")
@click.option("--reason", default="", help="Why (kept in the ban list and the audit trail).")
@_common
def ban_add(network: str, for_: str | None, permanent: bool, reason: str, state_path: str | None,
            config_path: str | None, config_dir: str | None) -> None:
    """Ban an address or a CIDR network (re-banning replaces the earlier ban)."""
    if permanent and for_:
        _fail("--for and --permanent exclude each other")
    ttl = _seconds("--for", for_)
    with _banner(config_path, state_path, config_dir) as b:
        if ttl is None and not permanent:
            ttl = b.default_ttl
        x = b.ban(network, reason or "banned by hand", ttl, source="cli")
        warnings = b.warnings
    _warn(warnings)
    until = "until removed" if x.expires is None else f"for {_age(x.expires - x.since)}"
    click.echo(f"Banned {x.network} {until} (backend: {x.backend}).")
    _enforced(b.cfg, config_dir, "bans")


@ban.command("remove")
@click.argument("network", metavar="IP|CIDR")
@_common
def ban_remove(network: str, state_path: str | None, config_path: str | None,
               config_dir: str | None) -> None:
    """Lift the ban of exactly this address or network (also cleans the backend)."""
    with _banner(config_path, state_path, config_dir) as b:
        x = b.unban(network, source="cli")
        warnings = b.warnings
    if x is None:
        click.echo(f"{b.parse(network)} was not banned; nothing to remove.", err=True)
        return
    _warn(warnings)
    click.echo(f"Unbanned {x.network}.")


@ban.command("sync")
@_common
def ban_sync(state_path: str | None, config_path: str | None, config_dir: str | None) -> None:
    """Remove expired bans and locks, then re-apply the active ones to the backend and the
    maps (after a reboot, or from cron when `relayguard watch` is not running)."""
    with _banner(config_path, state_path, config_dir) as b:
        expired = b.expire()
        notes = list(b.warnings)
        n = b.sync()
        notes += b.warnings
        lk = Locker(b.shared, b.cfg, store=b.store, config_dir=config_dir)
        unlocked = lk.expire()
        notes += lk.warnings
        nlocks = lk.sync()
        notes += lk.warnings
    _warn(list(dict.fromkeys(notes)))
    click.echo(f"{len(expired)} ban(s) expired, {n} active applied ({b.backend.name}); "
               f"{len(unlocked)} lock(s) expired, {nlocks} active.")


# ----------------------------------------------------------------------------- locks

@click.command()
@click.argument("user", metavar="USER")
@click.option("--for", "for_", metavar="DURATION",
              help="How long (2h, 1d). Default: until `relayguard unlock`.")
@click.option("--reason", default="", help="Why (kept in the lock list and the audit trail).")
@click.option("--no-hooks", is_flag=True, help="Do not run the [respond] hooks.")
@click.option("--hold", "hold_mail", is_flag=True,
              help="Also put the login's queued mail on hold (like relayguard queue hold "
                   "--sasl-user USER --yes).")
@_common
def lock(user: str, for_: str | None, reason: str, no_hooks: bool, hold_mail: bool,
         state_path: str | None, config_path: str | None, config_dir: str | None) -> None:
    """Lock a SASL login: its mail is refused (check_sasl_access map, policy server), then the
    site hooks run (e.g. bm-cli user logout). Change the password, then unlock."""
    ttl = _seconds("--for", for_)
    with _locker(config_path, state_path, config_dir) as lk:
        x = lk.lock(user.strip(), reason or "locked by hand", ttl, source="cli",
                    hooks=not no_hooks)
        warnings, hooks = lk.warnings, lk.hook_results
        held = None
        if hold_mail:
            from .auto import hold_user_mail

            held = hold_user_mail(x.user, lk.store, lk.config_dir, reason or "locked by hand",
                                  source="cli")
    _warn(warnings)
    until = "until unlocked" if x.expires is None else f"for {_age(x.expires - x.since)}"
    click.echo(f"Locked {x.user} {until}.")
    _enforced(lk.cfg, config_dir, "locks")
    for r in hooks:
        click.echo(f"  hook {' '.join(r.argv)}: {r.summary()}")
    if held is not None:
        if not held.ok:
            _fail(held.detail)
        click.echo(f"  {held.detail}")


@click.command()
@click.argument("user", metavar="USER")
@click.option("--no-hooks", is_flag=True, help="Do not run the [respond] unlock_hooks.")
@_common
def unlock(user: str, no_hooks: bool, state_path: str | None, config_path: str | None,
           config_dir: str | None) -> None:
    """Unlock a SASL login (after its password was changed)."""
    with _locker(config_path, state_path, config_dir) as lk:
        x = lk.unlock(user.strip(), source="cli", hooks=not no_hooks)
        warnings = lk.warnings
        others = [o.user for o in lk.locks()] if x is None else []
    if x is None:
        hint = f" (locked: {', '.join(others[:5])})" if others else ""
        click.echo(f"{user.strip()} was not locked; nothing to unlock{hint}.", err=True)
        return
    _warn(warnings)
    click.echo(f"Unlocked {x.user}.")


@click.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="json: a list of {user, reason, since, expires, source}.")
@_common
def locks(fmt: str, state_path: str | None, config_path: str | None,
          config_dir: str | None) -> None:
    """Locked SASL logins (expired locks are never shown)."""
    with _locker(config_path, state_path, config_dir) as lk:
        rows = lk.locks()
    if fmt == "json":
        click.echo(json.dumps([x.to_dict() for x in rows], ensure_ascii=False))
        return
    c = Console(highlight=False, soft_wrap=False)
    if not rows:
        c.print("No locked accounts.")
        return
    now = time.time()
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    table.add_column("Login", overflow="fold")
    for col in (f"Since ({timefmt.label()})", "Expires in", "By"):
        table.add_column(col, no_wrap=True)
    table.add_column("Reason", overflow="fold")
    for x in rows:
        table.add_row(_t(x.user), _t(timefmt.text(x.since)),
                      _t("never" if x.expires is None else _age(x.expires - now)),
                      _t(x.source or ""), _t(x.reason))
    c.print(table)


__all__ = ["ban", "lock", "locks", "unlock"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(ban())
