"""`--format json`: the `relayguard.analysis/1` document of DESIGN.md."""

from __future__ import annotations

import json as _json

from ..analysis import Analysis


def render_json(analysis: Analysis) -> str:
    return _json.dumps(analysis.to_dict(), indent=2, ensure_ascii=False) + "\n"
