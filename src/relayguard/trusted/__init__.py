"""Postfix's trusted networks (mynetworks): changed safely (see edit.py); the list itself is
modelled by :mod:`relayguard.postfix.mynetworks`."""

from ..postfix.instance import Postfix
from ..postfix.mynetworks import Entry, Mynetworks, Source, read_mynetworks
from .edit import Plan, apply, plan_add, plan_remove
from .mynetworks import TrustedError, parse_target

__all__ = ["Entry", "Mynetworks", "Plan", "Postfix", "Source", "TrustedError", "apply",
           "parse_target", "plan_add", "plan_remove", "read_mynetworks"]
