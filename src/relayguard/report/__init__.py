"""Reports: text (rich, for people), JSON (for machines), HTML (to hand over)."""

from .html import render_html
from .json import render_json
from .text import render_text

__all__ = ["render_html", "render_json", "render_text"]
