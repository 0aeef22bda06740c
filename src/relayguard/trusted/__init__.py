"""Postfix's trusted networks (mynetworks): read, and changed safely (see edit.py)."""

from .edit import Plan, apply, plan_add, plan_remove
from .mynetworks import Entry, Source, TrustedError, parse_target
from .postfix import Mynetworks, Postfix, read_mynetworks

__all__ = ["Entry", "Mynetworks", "Plan", "Postfix", "Source", "TrustedError", "apply",
           "parse_target", "plan_add", "plan_remove", "read_mynetworks"]
