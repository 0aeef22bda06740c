"""Text that came from logs or the network, made safe to write on one line.

A login, a reason or an alert title can hold anything, CR LF included: written as it is, it
would forge a line in a map file, a header in an e-mail or an entry in our own log.
"""

from __future__ import annotations


def one_line(text: str, limit: int = 200) -> str:
    """A single printable line of at most `limit` characters: anything unprintable becomes a
    space, runs of white space one space, and a cut is marked with "…"."""
    flat = "".join(c if c.isprintable() else " " for c in str(text))
    flat = " ".join(flat.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
