"""Write the settings table of docs/configuration.md from the settings declaration.

Every setting is declared once, in `kaleido/settings.py`: its field (and default) on `Settings`,
its text converter and help in the options table the flags are made from. This script renders
one row per option (variable, flag, default, help) between the page's
`<!-- settings:start -->` and `<!-- settings:end -->` markers; the prose around the table is the
page's own. `tests/test_docs_site.py` checks that the page is current.

    python scripts/settings_docs.py           # rewrite the table
    python scripts/settings_docs.py --check   # exit 1 if the page is not current
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import attrs

from kaleido import settings
from kaleido.secret_settings import ENV_PREFIX, FILE_SUFFIX, SECRET_URLS, SECRETS, flag

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "configuration.md"
START, END = "<!-- settings:start -->", "<!-- settings:end -->"
# Options that set two fields of Settings (`HOST:PORT` → `<side>_host`, `<side>_port`).
_BINDS = ("http_bind", "ops_bind")


def _default(name: str) -> str:
    fields = attrs.fields_dict(settings.Settings)
    if name in _BINDS:
        side = name.removesuffix("_bind")
        host, port = fields[f"{side}_host"].default, fields[f"{side}_port"].default
        return f"`{host}:{port}`"
    value: Any = fields[name].default
    if value is None or value == ():
        return "unset"
    if value == "":
        return "empty"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def _flags(name: str) -> str:
    variable = f"{ENV_PREFIX}{name.upper()}{FILE_SUFFIX}"
    files = f"`{variable}` or `{flag(name)}-file` name a file holding it"
    if name in SECRETS:
        return f"none (a secret): {files}"
    if name in SECRET_URLS:
        return f"`{flag(name)}` without a password; {files}"
    return f"`{flag(name)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table() -> str:
    """The settings table, one row per option of the declaration."""
    lines = ["| variable | flag | default | meaning |", "|---|---|---|---|"]
    for name, (_, help_text) in settings._OPTIONS.items():
        variable = f"`{ENV_PREFIX}{name.upper()}`"
        lines.append(f"| {variable} | {_flags(name)} | {_default(name)} | {_cell(help_text)} |")
    return "\n".join(lines) + "\n"


def render(page: str) -> str:
    """`page` with the table between its markers replaced by the current one."""
    marker = re.compile(re.escape(START) + r"\n.*?" + re.escape(END), re.S)
    if not marker.search(page):
        raise SystemExit(f"{PAGE.relative_to(ROOT)}: no {START} ... {END} markers")
    return marker.sub(lambda _: f"{START}\n{table()}{END}", page)


def main(argv: list[str]) -> int:
    current = PAGE.read_text("utf-8")
    wanted = render(current)
    if "--check" in argv:
        if wanted != current:
            print(f"{PAGE.relative_to(ROOT)} is out of date: run python scripts/settings_docs.py")
            return 1
        return 0
    PAGE.write_text(wanted, "utf-8")
    print(f"{PAGE.relative_to(ROOT)}: settings table written")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
