"""Events → message records, keyed by (host, Postfix instance, queue ID)."""

from .messages import Correlator, Message, Recipient

__all__ = ["Correlator", "Message", "Recipient"]
