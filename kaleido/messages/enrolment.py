"""Profile face enrolment: the ``user-profile-face-embedding-results`` codec (CONTRACT 2b).

The ML service's enrolment worker answers a ``profile-picture-processing`` request with the
embedding of the most confident face it found (nothing when it found none): ``userId``,
``faceEmbedding`` (a JSON list; all zeros when its provider failed) and the request's
``correlationId``, with no timestamp and no version.
"""

from __future__ import annotations

import json

from kaleido.messages.fields import (
    entry_correlation_id,
    exact_floats,
    index_fields,
    required,
)
from kaleido.messages.limits import FACE_EMBEDDING_DIM
from kaleido.messages.model import Fields, ProfileFaceResult
from kaleido.messages.values import positive_id


def decode_profile_face(
    fields: Fields, *, embedding_dim: int = FACE_EMBEDDING_DIM
) -> ProfileFaceResult:
    """Decode a ``user-profile-face-embedding-results`` entry: the embedding has exactly
    `embedding_dim` floats; raises :class:`DecodeError`."""
    entry = index_fields(fields)
    return ProfileFaceResult(
        user_id=required(entry, "userId", positive_id),
        embedding=required(entry, "faceEmbedding", exact_floats(embedding_dim)),
        correlation_id=entry_correlation_id(entry),
    )


def encode_profile_face(result: ProfileFaceResult) -> dict[str, str]:
    """The entry exactly as the ML service's enrolment worker writes it."""
    return {
        "userId": str(result.user_id),
        "faceEmbedding": json.dumps(list(result.embedding)),
        "correlationId": result.correlation_id,
    }
