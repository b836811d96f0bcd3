"""The metric names a PromQL expression selects: a small tokenizer, enough for the expressions of
deploy/ (dashboards and rules), so a test can check each name against a real /metrics.

What is not a metric name: strings, label matchers (`{...}`), range and subquery windows
(`[...]`), the label lists of `by`/`without`/`on`/`ignoring`/`group_left`/`group_right`, the
operand of `offset`, Grafana variables (`$instance`, `${DS}`), numbers and durations, function
and aggregation names, keywords. What is: every other identifier, and `__name__="x"` matchers.
"""

from __future__ import annotations

import re

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NAME_MATCHER = re.compile(r'__name__\s*=\s*"([^"]+)"')
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_LABEL_LIST = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_OFFSET = re.compile(r"\boffset\s+-?[0-9a-z]+", re.IGNORECASE)
_AT = re.compile(r"@\s*(?:start\(\)|end\(\)|[0-9.]+)")
# Numbers (with exponents, hex) and durations (5m, 1h30m) come before identifiers, so that
# `1e3` or `5m` is never read as the identifier `e3` or `m`.
_TOKEN = re.compile(
    r"(?P<number>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?:[a-z]+\d*)*)"
    r"|(?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r"|(?P<other>\S)"
)
KEYWORDS = frozenset(
    {
        # aggregation operators: may be followed by `by (...)` rather than `(`
        "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
        "bottomk", "topk", "quantile", "limitk", "limit_ratio",
        # binary and set operators, modifiers, literals
        "and", "or", "unless", "atan2", "bool", "by", "without", "on", "ignoring",
        "group_left", "group_right", "offset", "inf", "nan",
    }
)  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names `expr` selects (see the module docstring)."""
    names = set(_NAME_MATCHER.findall(expr))
    text = _STRING.sub('""', expr)
    text = _VARIABLE.sub(" ", text)
    text = _strip_brackets(text, "{", "}")
    text = _strip_brackets(text, "[", "]")
    text = _LABEL_LIST.sub(" ", text)
    text = _OFFSET.sub(" ", text)
    text = _AT.sub(" ", text)
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(text)]
    for i, (kind, value) in enumerate(tokens):
        if kind != "ident" or value.lower() in KEYWORDS:
            continue
        if i + 1 < len(tokens) and tokens[i + 1][1] == "(":
            continue  # a function call
        names.add(value)
    return names


def _strip_brackets(text: str, opening: str, closing: str) -> str:
    """`text` with every `opening ... closing` span (strings already blanked) replaced by a
    space; an unbalanced bracket is an error, not a silent pass."""
    out, depth = [], 0
    for char in text:
        if char == opening:
            depth += 1
        elif char == closing:
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced {closing!r} in {text!r}")
            if depth == 0:
                out.append(" ")
        elif depth == 0:
            out.append(char)
    if depth:
        raise ValueError(f"unbalanced {opening!r} in {text!r}")
    return "".join(out)
