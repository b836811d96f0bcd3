"""A setting's declaration on its `Settings` field: `checked` (its attrs validator) and
`about` (its metadata: how it is given as text).

Each setting is declared once, as an attrs field: its type, default and check, and here its
text parser and help. Its variable and flag are its name (`sync_interval`:
`KALEIDO_SYNC_INTERVAL`, `--sync-interval`). The flags, the environment loading,
`settings_to_env` and the generated table of docs/configuration.md all read `options(Settings)`.
A field without `about` is no option of its own: `http_port` is set by the `http_bind` option
declared on `http_host` (`name=`, `sets=`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from kaleido.errors import SettingError
from kaleido.secret_settings import ENV_PREFIX, flag

_KEY = "kaleido.setting"


def _text(value: Any) -> str:
    return ",".join(value) if isinstance(value, tuple) else str(value)


@attrs.frozen(kw_only=True)
class Option:
    """One setting as text: the variable `KALEIDO_<NAME>` and the flag `--<name>`, parsed
    into `fields`."""

    name: str  # `sync_interval`: the field's name, or the option's own (`http_bind`)
    parse: Callable[[str], Any]  # text to value; ValueError with the reason (the checks are
    # the fields' validators)
    help: str
    # The fields it sets: its own, or several (`HOST:PORT` → host and port), which `parse`
    # returns as a tuple in this order and `text` receives as one.
    fields: tuple[str, ...] = ()
    text: Callable[[Any], str] = _text  # the value back as text `parse` reads
    empty: bool = False  # "" is a value (else an empty variable counts as unset)

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return flag(self.name)

    def assign(self, parsed: Any) -> dict[str, Any]:
        """The fields' values from what `parse` returned."""
        if len(self.fields) == 1:
            return {self.fields[0]: parsed}
        return dict(zip(self.fields, parsed, strict=True))

    def value(self, get: Callable[[str], Any]) -> Any:
        """The option's value from its fields' (`get(field)`), as `text` takes it."""
        values = tuple(get(name) for name in self.fields)
        return values[0] if len(values) == 1 else values


def checked(
    check: Callable[[Any], object], *, optional: bool = False
) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """A field's attrs validator running `check`; its ValueError becomes SettingError naming the
    field. `optional`: None is accepted (the setting is unset)."""

    def validate(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None and optional:
            return
        try:
            check(value)
        except ValueError as exc:
            raise SettingError(attribute.name, str(exc)) from None

    return validate


def about(
    parse: Callable[[str], Any],
    help: str,
    *,
    name: str = "",
    sets: tuple[str, ...] = (),
    text: Callable[[Any], str] = _text,
    empty: bool = False,
) -> dict[str, Option]:
    """A field's metadata declaring it a setting: `attrs.field(..., metadata=about(...))`.
    `name` and `sets` default to the field's own name."""
    return {_KEY: Option(name=name, parse=parse, help=help, fields=sets, text=text, empty=empty)}


def options(cls: type) -> Mapping[str, Option]:
    """Every setting of the attrs class `cls` by name, in field order, names filled in."""
    out: dict[str, Option] = {}
    for field in attrs.fields(cls):
        option = field.metadata.get(_KEY)
        if option is not None:
            option = attrs.evolve(
                option, name=option.name or field.name, fields=option.fields or (field.name,)
            )
            out[option.name] = option
    return out
