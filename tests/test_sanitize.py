"""`one_line`: what a log-borne value looks like once written to a map, a header or our log."""

from __future__ import annotations

from relayguard.sanitize import one_line


def test_line_breaks_and_controls_cannot_start_a_new_line() -> None:
    assert one_line("admin\r\nBcc: victim@example.net\x00\x1b[2J  x") == \
        "admin Bcc: victim@example.net [2J x"
    assert one_line("a\u2028b\u0085c") == "a b c"  # Unicode line separators too


def test_long_text_is_cut_visibly_within_the_limit() -> None:
    cut = one_line("x" * 300, 50)
    assert len(cut) == 50 and cut.endswith("…")
    assert one_line("short", 50) == "short"
