"""One handler per inbound stream: how to decode an entry and how to apply a batch of them
(`base` says what a handler is and why a batch means the same as its entries one by one)."""

from kaleido.streams.handlers.base import (
    NOTHING_STALE,
    Handler,
    Stale,
    Statement,
    StatementHandler,
)
from kaleido.streams.handlers.enriched import PostInsightsHandler
from kaleido.streams.handlers.faces import FaceDetectionHandler, FaceRecognitionHandler
from kaleido.streams.handlers.insights import InsightsHandler
from kaleido.streams.handlers.profile import ProfileFaceHandler

__all__ = [
    "NOTHING_STALE",
    "FaceDetectionHandler",
    "FaceRecognitionHandler",
    "Handler",
    "InsightsHandler",
    "PostInsightsHandler",
    "ProfileFaceHandler",
    "Stale",
    "Statement",
    "StatementHandler",
]
