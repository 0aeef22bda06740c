"""The Postfix tools beyond postconf (`trusted`, `setup postfix`, `status`): ``postmap -q`` probes and the
reload after a change. Reading mynetworks is :mod:`relayguard.postfix.mynetworks`'s; every
program runs through :mod:`relayguard.postfix.programs` (argv lists, ``-c DIR``)."""

from __future__ import annotations

from .postconf import Postconf
from .programs import PostfixError


class Postfix(Postconf):
    """postconf, postmap and postfix of one instance (None: the system's default instance)."""

    def postmap_query(self, spec: str, key: str) -> tuple[bool | None, list[str]]:
        """``(found, warnings)`` of ``postmap -q KEY SPEC``; found None when the query failed."""
        r = self.run("postmap", "-q", key, spec)
        warnings = [ln for ln in r.stderr.splitlines() if ln.strip()]
        if r.ok:
            return True, warnings
        if r.returncode == 1 and not r.fatal:
            return False, warnings
        return None, warnings or [f"postmap exited {r.returncode}"]

    def running(self) -> bool:
        return self.run("postfix", "status").ok

    def reload(self) -> None:
        r = self.run("postfix", "reload")
        if not r.ok:
            raise PostfixError(f"postfix reload: {r.complaint()}")

    def reload_if_running(self) -> tuple[bool | None, str | None]:
        """After a change to main.cf or a map: ``postfix reload`` when the instance runs.
        ``(reloaded, warning)``: reloaded None when it is not running; the warning says how to
        finish by hand when the reload failed."""
        try:
            if not self.running():
                return None, None
            self.reload()
        except PostfixError as exc:
            by_hand = "postfix" + (f" -c {self.config_dir}" if self.config_dir else "") + " reload"
            return False, f"{exc}: the change is written; reload Postfix by hand ({by_hand})"
        return True, None
