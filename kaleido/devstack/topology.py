"""How the nodes of a Redis Cluster see it, parsed (``CLUSTER NODES``, ``INFO``), and whether they
form a healthy cluster: pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

_SLOTS = 16384


def _info_fields(text: str) -> dict[str, str]:
    """``name:value`` lines of ``INFO`` or ``CLUSTER INFO``."""
    fields = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            fields[name.strip()] = value.strip()
    return fields


@attrs.frozen
class ClusterNodeView:
    """One line of ``CLUSTER NODES``: a node of the cluster as some node sees it."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None  # None for a master
    slots: tuple[tuple[int, int], ...]  # inclusive ranges, in the order listed

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failing(self) -> bool:
        """Flagged as failing (``fail``) or suspected (``fail?``) by the node that reported it."""
        return bool(self.flags & {"fail", "fail?"})

    @property
    def slot_count(self) -> int:
        return sum(last - first + 1 for first, last in self.slots)

    def owns(self, slot: int) -> bool:
        return any(first <= slot <= last for first, last in self.slots)


def parse_cluster_nodes(text: str) -> tuple[ClusterNodeView, ...]:
    """Parse a ``CLUSTER NODES`` reply (slots being migrated, ``[...]``, are left out)."""
    views = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        node_id, address, flags, master = fields[:4]
        # ip:port@cport[,hostname]; ":0@0" while the address is unknown
        port = int(address.split("@", 1)[0].rpartition(":")[2] or 0)
        slots = []
        for token in fields[8:]:
            if token.startswith("["):
                continue
            first, _, last = token.partition("-")
            slots.append((int(first), int(last or first)))
        views.append(
            ClusterNodeView(
                node_id=node_id,
                port=port,
                flags=frozenset(flags.split(",")),
                master_id=None if master == "-" else master,
                slots=tuple(slots),
            )
        )
    return tuple(sorted(views, key=lambda v: v.port))


def _shape(
    view: Sequence[ClusterNodeView],
) -> list[tuple[str, int, bool, str | None, tuple[tuple[int, int], ...]]]:
    """What every node must agree on: who is master of which slots, who replicates whom."""
    return [(v.node_id, v.port, v.is_master, v.master_id, v.slots) for v in view]


@attrs.frozen
class _Survey:
    """A cluster's health: the first problem found (None: healthy), and the agreed view."""

    problem: str | None
    view: tuple[ClusterNodeView, ...] = ()


@attrs.frozen
class _NodeReport:
    """What one running node says: ``CLUSTER INFO``, ``CLUSTER NODES``, ``INFO replication``."""

    port: int
    cluster_info: dict[str, str]
    view: tuple[ClusterNodeView, ...]
    replication: dict[str, str]


def _judge_cluster(reports: Sequence[_NodeReport], node_count: int) -> _Survey:
    """Whether the running nodes (one report each) form a healthy cluster of ``node_count``.

    Healthy: each reports ``cluster_state:ok`` with all 16384 slots served and every node known;
    all agree on masters, slots and replicas; none sees a running node as failing; every
    replica's link to its master is up.
    """
    if not reports:
        return _Survey("no node runs")
    running = {report.port for report in reports}
    first = reports[0]
    for report in reports:
        for name, want in [
            ("cluster_state", "ok"),
            ("cluster_slots_ok", str(_SLOTS)),
            ("cluster_known_nodes", str(node_count)),
        ]:
            have = report.cluster_info.get(name)
            if have != want:
                return _Survey(f"node {report.port} reports {name}:{have}")
        if _shape(report.view) != _shape(first.view):
            return _Survey(f"nodes {first.port} and {report.port} disagree on the cluster")
        failing = [v.port for v in report.view if v.port in running and v.failing]
        if failing:
            return _Survey(f"node {report.port} sees running nodes {failing} as failing")
        link = report.replication.get("master_link_status")
        if report.replication.get("role") == "slave" and link != "up":
            return _Survey(f"replica {report.port} has its master link {link}")
    return _Survey(None, first.view)
