"""The config audit's checks, one module per family, and the order they run in.

Each Postfix family is a :data:`~relayguard.audit.context.Check`: it reads the effective
configuration through a :class:`~relayguard.audit.context.Ctx` and yields
:class:`~relayguard.audit.context.ConfigFinding` objects. Dovecot is judged from what
``doveconf`` reports, so :func:`check_dovecot` takes those facts instead.
"""

from __future__ import annotations

from ..context import Check
from .auth import check_auth
from .dovecot import check_dovecot
from .hygiene import check_hygiene
from .mynetworks import check_implicit_mynetworks, check_mynetworks
from .rate_limits import check_rate_limits
from .relay import check_relay
from .sender_login import check_sender_login
from .submission import check_submission

#: The Postfix checks, in the order their findings are collected (the report sorts them).
CHECKS: tuple[Check, ...] = (
    check_mynetworks, check_implicit_mynetworks, check_relay, check_auth, check_sender_login,
    check_rate_limits, check_submission, check_hygiene,
)

__all__ = ["CHECKS", "check_dovecot"]
