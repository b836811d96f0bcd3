"""Kaleido's Lua scripts as the gateway runs them: a `Script`, and the two ways to run one
(`KALEIDO_REDIS_SCRIPTS`): `FCALL` of the function library an admin loaded, or `EVALSHA`."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import attrs

# `KALEIDO_REDIS_SCRIPTS`: FCALL of the admin-loaded library, or EVALSHA (the weaker mode).
FUNCTIONS, EVAL = "functions", "eval"
SCRIPT_MODES = (FUNCTIONS, EVAL)
# Every function of the library is called `kaleido_<script name>_<first hex of its SHA1>`:
# a process still running an older version finds no function rather than a changed one.
FUNCTION_PREFIX = "kaleido_"
_SCRIPT_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


@attrs.frozen
class Script:
    """One of Kaleido's Lua scripts. Every `Script` assigned at the top level of a module of
    the `kaleido` package is part of the function library (`kaleido.redis_functions`).

    Its source names its keys in KEYS and its arguments in ARGV, as an EVAL script does; keys
    built inside the script are allowed only for scripts that never run on a cluster.
    `read_only`: it writes nothing (`FCALL_RO`, the function flag `no-writes`). `allow_oom`:
    Redis runs it even past maxmemory (flag `allow-oom`), for scripts that free or move memory
    (an EVAL script is refused only at its first write that may grow memory; a function
    without the flag, before it starts).
    """

    name: str = attrs.field()
    source: str
    read_only: bool = attrs.field(default=False, kw_only=True)
    allow_oom: bool = attrs.field(default=False, kw_only=True)
    sha: str = attrs.field(init=False)
    function: str = attrs.field(init=False)

    @name.validator
    def _check_name(self, _attribute: object, value: str) -> None:
        if not _SCRIPT_NAME.fullmatch(value):
            raise ValueError(f"script name {value!r}: expected a-z, 0-9 and _ (a Lua name)")

    @sha.default
    def _sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()

    @function.default
    def _function(self) -> str:
        return f"{FUNCTION_PREFIX}{self.name}_{self.sha[:10]}"

    @property
    def flags(self) -> tuple[str, ...]:
        """The flags of its function in the library."""
        return ("no-writes",) * self.read_only + ("allow-oom",) * self.allow_oom

    def command(self, mode: str, keys: Sequence[Any], args: Sequence[Any]) -> tuple[Any, ...]:
        """The command that runs it in `mode` (`functions` or `eval`)."""
        if mode == EVAL:
            return ("EVALSHA", self.sha, len(keys), *keys, *args)
        call = "FCALL_RO" if self.read_only else "FCALL"
        return (call, self.function, len(keys), *keys, *args)
