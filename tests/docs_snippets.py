"""The named code blocks of a document (`<!-- snippet: NAME -->` on the line before the fence),
so that tests run what the documentation shows."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

_SNIPPET = re.compile(
    r"^<!-- snippet: (?P<name>[\w-]+) -->\n```(?P<lang>\w*)\n(?P<code>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)


def snippets(document: str) -> dict[str, str]:
    """NAME -> code of every named block in `document` (a path under the repository)."""
    text = (REPO / document).read_text("utf-8")
    return {m["name"]: m["code"] for m in _SNIPPET.finditer(text)}


def snippet(document: str, name: str) -> str:
    return snippets(document)[name]
