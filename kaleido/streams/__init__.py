"""The inbound half of the ML pipeline: consumers of the ML service's result streams.

`build_consumers` makes one `StreamConsumer` per inbound stream (docs/CONTRACT.md sections 2 and
2b), with the contract's consumer names; each one's `run` is a supervisor actor.
"""

from __future__ import annotations

from typing import Any

import trio

from kaleido.gateways import Backends
from kaleido.metrics import Metrics
from kaleido.streams.consumer import ConsumerStats, StreamConsumer, consumer_name
from kaleido.streams.dlq import (
    DeadLetter,
    ReplayReport,
    dlq_list,
    dlq_purge,
    dlq_replay,
    dlq_replay_all,
    dlq_size,
)
from kaleido.streams.groups import ensure_group
from kaleido.streams.handlers import (
    FaceDetectionHandler,
    FaceRecognitionHandler,
    Handler,
    InsightsHandler,
    PostInsightsHandler,
    ProfileFaceHandler,
)

__all__ = [
    "ConsumerStats",
    "DeadLetter",
    "FaceDetectionHandler",
    "FaceRecognitionHandler",
    "Handler",
    "InsightsHandler",
    "PostInsightsHandler",
    "ProfileFaceHandler",
    "ReplayReport",
    "StreamConsumer",
    "build_consumers",
    "consumer_name",
    "dlq_list",
    "dlq_purge",
    "dlq_replay",
    "dlq_replay_all",
    "dlq_size",
    "ensure_group",
]


def build_consumers(
    backends: Backends, metrics: Metrics | None, stopping: trio.Event
) -> list[StreamConsumer[Any]]:
    """One consumer per inbound stream, configured from `backends.settings`."""
    settings = backends.settings
    handlers: list[Handler[Any]] = [
        InsightsHandler(embedding_dim=settings.image_embedding_dim),
        FaceDetectionHandler(embedding_dim=settings.face_embedding_dim),
        FaceRecognitionHandler(),
        ProfileFaceHandler(embedding_dim=settings.face_embedding_dim),
        PostInsightsHandler(),
    ]
    return [
        StreamConsumer.over(
            backends.redis,
            backends.postgres,
            backends.keys,
            handler,
            consumer_name(handler.stream, settings.instance),
            stopping,
            metrics,
            max_deliveries=settings.max_deliveries,
        )
        for handler in handlers
    ]
