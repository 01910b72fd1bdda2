"""Printers: turn rows into what the user asked for (table, csv, json, yaml), apart from logic.

Tables are kubectl-style: upper-case headers, columns padded with three spaces, no borders,
so that they read in a terminal, a log file and a test alike.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from typing import Any


class Output(str, enum.Enum):
    table = "table"
    csv = "csv"
    json = "json"
    yaml = "yaml"


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["   ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def to_yaml(data: Any, indent: int = 0) -> str:
    """YAML for the plain data the CLI prints (dicts, lists, scalars) without a dependency."""
    pad = "  " * indent
    if isinstance(data, dict):
        if not data:
            return pad + "{}"
        out = []
        for key, value in data.items():
            if isinstance(value, (dict, list)) and value:
                out.append(f"{pad}{key}:\n{to_yaml(value, indent + 1)}")
            else:
                out.append(f"{pad}{key}: {_scalar(value)}")
        return "\n".join(out)
    if isinstance(data, list):
        if not data:
            return pad + "[]"
        out = []
        for item in data:
            text = to_yaml(item, indent + 1).lstrip()
            out.append(f"{pad}- {text}")
        return "\n".join(out)
    return pad + _scalar(data)


def _scalar(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))   # a JSON string is a valid YAML scalar
