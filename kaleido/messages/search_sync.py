"""The ``es-sync-queue`` codec (CONTRACT 2b): which document of which read model the ML
service's search sync must (re)index from Kaleido's PostgreSQL, or delete.

`INDEXES` maps each index type to its read model table and key column, as the ML service's
sync looks them up (`SELECT * FROM <table> WHERE <key> = <documentId>`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from cattrs.gen import override

from kaleido.errors import Invalid
from kaleido.messages.converter import converter, register
from kaleido.messages.entry import index_fields, structure_entry, text_field
from kaleido.messages.model import Fields, SearchSyncEvent
from kaleido.messages.peer import peer_decode
from kaleido.messages.values import as_is, utc_timestamp

KNOWN_FACES_INDEX: Final = "known_faces_index"
FACE_SEARCH_INDEX: Final = "face_search"
RECOMMENDATIONS_INDEX: Final = "recommendations_knn"
FEED_INDEX: Final = "feed_personalized"

#: index type → (read model table, key column)
INDEXES: Final[Mapping[str, tuple[str, str]]] = MappingProxyType(
    {
        KNOWN_FACES_INDEX: ("read_model_known_faces", "face_id"),
        FACE_SEARCH_INDEX: ("read_model_face_search", "face_id"),
        RECOMMENDATIONS_INDEX: ("read_model_recommendations_knn", "media_id"),
        FEED_INDEX: ("read_model_feed_personalized", "media_id"),
    }
)


def known_face_id(user_id: int) -> str:
    """The known face of a user: ``user-<id>``, which no JSON parser takes for a number (the
    ML service's sync compares it with a text column without a cast)."""
    return f"user-{user_id}"


def encode_search_sync(event: SearchSyncEvent) -> dict[str, str]:
    """Fields of an ``es-sync-queue`` entry, in the backend's order."""
    return {
        "indexType": event.index_type,
        "operation": event.operation,
        "documentId": event.document_id,
        "timestamp": utc_timestamp(event.timestamp),
        "correlationId": event.correlation_id,
    }


def _known_index(text: str) -> str:
    if text not in INDEXES:
        raise Invalid(f"expected one of {', '.join(INDEXES)}, got {text!r:.80}")
    return text


# The timestamp is not read: the stand-in's event is stamped when it reads it.
register(
    SearchSyncEvent,
    index_type=text_field("indexType", _known_index),
    operation=text_field("operation", as_is),
    document_id=text_field("documentId", as_is),
    correlation_id=text_field("correlationId", as_is),
    timestamp=override(omit=True),
)
converter.register_unstructure_hook(SearchSyncEvent, encode_search_sync)


def decode_search_sync(fields: Fields) -> SearchSyncEvent:
    """Read an ``es-sync-queue`` entry (the stand-in ML service's search sync). The document
    id is kept as text; `peer_document_id` gives what the real sync looks it up by."""
    return structure_entry(index_fields(fields), SearchSyncEvent)


def peer_document_id(event: SearchSyncEvent) -> object:
    """The document id as the ML service's sync uses it: JSON-decoded (a media id arrives as
    an int, ``user-7`` stays text)."""
    return peer_decode(event.document_id)
