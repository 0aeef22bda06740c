"""Reports: text (rich, for people), JSON (for machines)."""

from .json import render_json
from .text import render_text

__all__ = ["render_json", "render_text"]
