"""`kaleido doctor`: the troubleshooting guide of the original backend, as checks.

Each check turns facts read from Redis and PostgreSQL into findings: ok, a warning (worth
knowing, nothing is being lost) or a problem (data can be lost, or work has stopped). The
command exits 1 when there is a problem. Checks are pure functions of the facts, so each rule
is easy to read and to test; `diagnose` gathers the facts.

How errors behave: a server that cannot be reached is itself a problem finding; the checks that
need it are skipped. Nothing here writes to Redis or PostgreSQL.

Modules: ``findings`` (Finding, Level, the exit code), ``redis_checks``, ``work_checks`` and
``growth_checks`` (the pure judges; growth: sizes against their bounds, docs/bounds.md),
``gather`` (reading the facts: the only I/O), ``report`` (the terminal report).
"""

from kaleido.ops.doctor.findings import Finding, Level, exit_code, on_node
from kaleido.ops.doctor.gather import (
    DLQ_INTERVAL,
    MAX_SCAN_CALLS,
    SAMPLE_SIZE,
    SCAN_COUNT,
    diagnose,
    read_backlog,
    read_pg_growth,
    read_redis_growth,
    sample_keys,
    script_findings,
)
from kaleido.ops.doctor.growth_checks import Measure, check_growth
from kaleido.ops.doctor.redis_checks import (
    LISTPACK_SETTING,
    NOT_CHECKED,
    KeySample,
    check_dedup_memory,
    check_keys,
    check_memory,
    check_persistence,
    check_policy,
    check_scripts,
)
from kaleido.ops.doctor.report import print_report
from kaleido.ops.doctor.work_checks import (
    BacklogFacts,
    check_backlog,
    check_dlq,
    check_outbox,
    check_schema,
    check_streams,
)

__all__ = [
    "DLQ_INTERVAL",
    "LISTPACK_SETTING",
    "MAX_SCAN_CALLS",
    "NOT_CHECKED",
    "SAMPLE_SIZE",
    "SCAN_COUNT",
    "BacklogFacts",
    "Finding",
    "KeySample",
    "Level",
    "Measure",
    "check_backlog",
    "check_dedup_memory",
    "check_dlq",
    "check_growth",
    "check_keys",
    "check_memory",
    "check_outbox",
    "check_persistence",
    "check_policy",
    "check_schema",
    "check_scripts",
    "check_streams",
    "diagnose",
    "exit_code",
    "on_node",
    "print_report",
    "read_backlog",
    "read_pg_growth",
    "read_redis_growth",
    "sample_keys",
    "script_findings",
]
