"""The `relayguard` command: a thin layer of argument parsing over the library.

One module per command family (analyze.py, queue.py, respond.py, …), what they share in
common.py. Nothing outside this package imports it: it is the top layer.

Exit codes: 0 nothing at high or above, 1 high or critical findings, 2 usage or input error.
"""

from __future__ import annotations

import importlib

import click

from .common import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS, fail

__all__ = ["EXIT_CLEAN", "EXIT_ERROR", "EXIT_FINDINGS", "LAZY_COMMANDS", "fail", "main"]

# Every command is imported only when used: `relayguard ban add` starts in a tenth of a second
# instead of loading every subsystem.
LAZY_COMMANDS = {
    "analyze": "relayguard.cli.analyze:analyze",
    "show": "relayguard.cli.analyze:show",
    "parse": "relayguard.cli.analyze:parse",
    "messages": "relayguard.cli.analyze:messages_cmd",
    "simulate": "relayguard.cli.simulate:simulate",
    "queue": "relayguard.cli.queue:queue",
    "history": "relayguard.cli.history:history",
    "ban": "relayguard.cli.respond:ban",
    "lock": "relayguard.cli.respond:lock",
    "unlock": "relayguard.cli.respond:unlock",
    "locks": "relayguard.cli.respond:locks",
    "watch": "relayguard.cli.watch:watch",
    "policy": "relayguard.cli.policy:policy",
    "serve": "relayguard.cli.serve:serve",
    "audit": "relayguard.cli.audit:audit",
    "probe-relay": "relayguard.cli.audit:probe_relay",
    "dnsbl": "relayguard.cli.audit:dnsbl",
    "password-check": "relayguard.cli.audit:password_check",
    "trusted": "relayguard.cli.trusted:trusted",
    "firewall": "relayguard.cli.firewall:firewall",
    "config": "relayguard.cli.config:config",
    "setup": "relayguard.cli.setup:setup",
    "status": "relayguard.cli.setup:status",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS:
            module, _, attr = LAZY_COMMANDS[name].partition(":")
            try:
                return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]
            except ModuleNotFoundError as exc:
                if exc.name and module.startswith(exc.name):
                    return None  # a subsystem not in this build
                raise
        return super().get_command(ctx, name)


def _version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """`relayguard 0.1.0 (compiled with mypyc)` or `(pure Python: <why>)`."""
    if not value or ctx.resilient_parsing:
        return
    from importlib.metadata import PackageNotFoundError, version

    from ..buildinfo import describe

    try:
        number = version("relayguard")
    except PackageNotFoundError:  # run from a source tree that was never installed
        number = "(not installed)"
    click.echo(f"relayguard {number} ({describe()})")
    ctx.exit()


@click.group(cls=LazyGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_version,
              help="Show the version and whether the hot path is compiled, then exit.")
def main() -> None:
    """relayguard — find who is sending spam through your Postfix server, stop it, prevent it.

    Start with `relayguard analyze` on your mail log.
    """
