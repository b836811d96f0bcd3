"""View ingest on a private Redis Cluster (3 masters, a replica each) beside the run's single
Redis, with the same workload and the same client in the same run.

On a cluster every record call carries one partition (its keys share a slot), so a batch of
views becomes up to 64 pipelined calls instead of one; the masters share the work.

Run alone: `python -m benchmarks.bench_cluster [--quick]` (or `python -m benchmarks --only
cluster`).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import attrs

from kaleido.devstack import dev_stack
from kaleido.gateways import open_backends

from .bench_views import INGEST_VIEWS, tracker_rate, workload
from .common import ROOT, Context, Outcome, Row, rate, run_alone


async def cluster_ingest(ctx: Context) -> Outcome:
    n = INGEST_VIEWS[ctx.quick]
    views = workload(n)
    single = await tracker_rate(ctx.backends, views)
    with tempfile.TemporaryDirectory(prefix="kaleido-bench-cluster-") as tmp:
        with dev_stack(Path(tmp), ROOT / "redis.conf", fast=True, cluster=True) as stack:
            settings = attrs.evolve(ctx.settings, redis_url=stack.redis_url)
            async with open_backends(settings) as backends:
                await backends.redis.execute("FLUSHALL")
                on_cluster = await tracker_rate(backends, views)
    ratio = on_cluster["views_per_s"] / single["views_per_s"]
    scenario = f"ingest {n // 1000}k views, 3-master cluster"
    return Outcome(
        "cluster",
        [
            Row(
                scenario,
                "views/s, ViewTracker → Redis Cluster (a call per partition)",
                rate(on_cluster["views_per_s"]),
                f"single Redis {rate(single['views_per_s'])}",
                f"{ratio:.2f}×",
                "report",
            ),
        ],
        {"views": n, "single": single, "cluster": on_cluster, "ratio": ratio},
        notes=["the three masters, their replicas and this process share the machine's two cores"],
    )


if __name__ == "__main__":
    run_alone("cluster", cluster_ingest, quick="--quick" in sys.argv)
