"""Events → message records, keyed by (host, Postfix instance, queue ID)."""

from .messages import Correlator, Message, recipient_dict

__all__ = ["Correlator", "Message", "recipient_dict"]
