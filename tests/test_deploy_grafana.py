"""deploy/grafana/kaleido.json is a Grafana dashboard over the Prometheus input `DS_PROMETHEUS`
with an `instance` variable, and every metric name in it and in deploy/prometheus's rules is one
that a running Kaleido's /metrics really exports (a misspelt name fails here, not on a blank
panel or an alert that can never fire)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from kaleido.app import Running, service_of
from kaleido.messages import INSIGHTS_STREAM

from .conftest import REPO
from .promql_names import metric_names
from .service_helpers import client, ops_client
from .streams_helpers import dlq_len, xadd
from .views_helpers import create_posts
from .waiting import wait_until

DASHBOARD = REPO / "deploy" / "grafana" / "kaleido.json"
RULES = REPO / "deploy" / "prometheus" / "kaleido-rules.yml"
DATASOURCE = "${DS_PROMETHEUS}"
# Series Prometheus makes itself for every target.
PROMETHEUS_OWN = frozenset({"up"})
# The sample names of a family with no sample yet (labelled, none used), by its declared type.
_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}
_LABEL_VALUES = re.compile(r"^label_values\((.*),\s*\w+\s*\)$")


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    out = []
    for panel in dashboard()["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def dashboard_exprs() -> list[str]:
    exprs = [t["expr"] for p in panels() for t in p.get("targets", [])]
    for variable in dashboard()["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        match = _LABEL_VALUES.match(text.strip())
        if match:  # label_values(SELECTOR, LABEL): the label is no metric
            exprs.append(match.group(1))
    return exprs


def rule_exprs() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [str(rule["expr"]) for group in groups for rule in group["rules"]]


def exported_names(exposition: str) -> set[str]:
    """The sample names of a text exposition, and those a declared, still empty family will
    have."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        if family.samples:
            names.update(sample.name for sample in family.samples)
        else:
            names.update(family.name + s for s in _SUFFIXES.get(family.type, ("",)))
    return names


def unknown_names(exprs: list[str], exported: set[str]) -> dict[str, set[str]]:
    """expr → the names in it that are neither exported nor Prometheus's own."""
    out = {}
    for expr in exprs:
        unknown = metric_names(expr) - exported - PROMETHEUS_OWN
        if unknown:
            out[expr] = unknown
    return out


# ---------------------------------------------------------------------------- the extractor


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('up{job="kaleido"} == bool 0', {"up"}),
        (
            'sum by (stream) (rate(kaleido_stream_entries_total{outcome="applied",'
            ' stream=~"$s"}[$__rate_interval]))',
            {"kaleido_stream_entries_total"},
        ),
        ("sum by(le)(rate(a_bucket[5m]))", {"a_bucket"}),
        ("max without (instance) (a / (b > 0)) > 0.8", {"a", "b"}),
        ("x - (x offset 10m) > 0 and ignoring (result) y == 0", {"x", "y"}),
        ('histogram_quantile(0.99, sum by (le) (rate(h_bucket{i=~"$i"}[30m])))', {"h_bucket"}),
        ("time() - last_seconds", {"last_seconds"}),
        ("1e3 * rec:rule:rate5m + 0x1F - Inf", {"rec:rule:rate5m"}),
        ('{__name__="by_name", job="x"}', {"by_name"}),
        ('label_replace(m, "dst", "$1", "src", "(.*) {x}")', {"m"}),
        ("a * on (instance) group_left (node) b unless c or d", {"a", "b", "c", "d"}),
        ("max_over_time(g[1h:5m]) @ end()", {"g"}),
        ("count(a) by (stream) > ${threshold}", {"a"}),
        ("sum(rate(on_call_total[5m]))", {"on_call_total"}),
    ],
)
def test_metric_names_of_an_expression(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_unbalanced_expression_is_an_error() -> None:
    with pytest.raises(ValueError, match="unbalanced"):
        metric_names('rate(a{job="x"[5m])')


def test_a_misspelt_name_is_reported() -> None:
    exported = {"kaleido_views_total", "kaleido_sync_duration_seconds_bucket"}
    exprs = [
        "sum(rate(kaleido_views_total[5m]))",
        "rate(kaleido_view_total[5m])",
        "histogram_quantile(0.5, rate(kaleido_sync_duration_seconds[5m]))",
        "up == 0",
    ]
    assert unknown_names(exprs, exported) == {
        exprs[1]: {"kaleido_view_total"},
        exprs[2]: {"kaleido_sync_duration_seconds"},
    }


def test_exported_names_take_the_real_samples_or_the_declared_type() -> None:
    exposition = (
        "# HELP c_total A counter\n# TYPE c_total counter\nc_total 1.0\nc_created 1.7e9\n"
        "# HELP h A histogram\n# TYPE h histogram\n"
        "# HELP e_total Labelled, no child yet\n# TYPE e_total counter\n"
    )
    assert exported_names(exposition) == {
        "c_total", "c_created", "h_bucket", "h_sum", "h_count", "e_total"
    }  # fmt: skip


# ---------------------------------------------------------------------------- the dashboard


def test_dashboard_shape() -> None:
    board = dashboard()
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["instance"]["datasource"]["uid"] == DATASOURCE
    assert board["panels"][0]["type"] == "row"
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids))
    graphs = [p for p in panels() if p["type"] != "row"]
    assert len(graphs) >= 25
    for panel in graphs:
        title = panel["title"]
        assert panel["datasource"]["uid"] == DATASOURCE, title
        assert panel["fieldConfig"]["defaults"].get("unit"), title
        assert panel["targets"], title
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE, title
            assert '=~"$instance"' in target["expr"], (title, target["expr"])


async def test_every_metric_name_is_exported(running: Running) -> None:
    """Every name of the dashboard and the rules, against /metrics after the service did a bit
    of everything: views, a sync, a dead letter, a reporter sample."""
    backends = service_of(running).backends
    await create_posts(backends, 3)
    await xadd(backends, INSIGHTS_STREAM, {"service": "tagging"})  # undecodable → DLQ
    async with client(running) as http:
        views = [{"userId": 1, "postId": 3}, {"userId": 1, "postId": 3}]
        assert (await http.post("/v1/views", json=views)).status_code == 202
    async with ops_client(running) as ops:
        token = {"Authorization": "Bearer test-admin-token-0123456789"}
        assert (await ops.post("/v1/admin/sync", headers=token)).status_code == 200

    async def dead_lettered() -> bool:
        return await dlq_len(backends, INSIGHTS_STREAM) == 1

    await wait_until(dead_lettered)
    reporter = service_of(running).reporter
    assert reporter is not None and await reporter.sample_once()
    async with ops_client(running) as ops:
        exposition = (await ops.get("/metrics")).text
    exported = exported_names(exposition)
    exprs = dashboard_exprs() + rule_exprs()
    used = set().union(*map(metric_names, exprs))
    assert len(used) >= 30, used
    assert unknown_names(exprs, exported) == {}
