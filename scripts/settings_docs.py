"""Write the settings table of docs/configuration.md from the settings declaration.

Every setting is declared once, as a field of `Settings` in `kaleido/settings.py`: its default
and check, and in its `about` metadata its variable, text parser and help (the flags are made
from the same). This script renders one row per option (variable, flag, default, help) between
the page's
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
from kaleido.secret_settings import FILE_SUFFIX, SECRET_URLS, SECRETS
from kaleido.setting_fields import Option

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "configuration.md"
START, END = "<!-- settings:start -->", "<!-- settings:end -->"


def _default(option: Option) -> str:
    fields = attrs.fields_dict(settings.Settings)
    value: Any = option.value(lambda field: fields[field].default)
    if value is None or value == ():
        return "unset"
    if value == "":
        return "empty"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{option.text(value)}`"


def _flags(option: Option) -> str:
    files = f"`{option.env}{FILE_SUFFIX}` or `{option.flag}-file` name a file holding it"
    if option.name in SECRETS:
        return f"none (a secret): {files}"
    if option.name in SECRET_URLS:
        return f"`{option.flag}` without a password; {files}"
    return f"`{option.flag}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table() -> str:
    """The settings table, one row per option of the declaration."""
    lines = ["| variable | flag | default | meaning |", "|---|---|---|---|"]
    for option in settings.OPTIONS.values():
        cells = (f"`{option.env}`", _flags(option), _default(option), _cell(option.help))
        lines.append(f"| {' | '.join(cells)} |")
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
