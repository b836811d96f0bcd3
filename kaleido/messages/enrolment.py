"""Profile face enrolment: the ``user-profile-face-embedding-results`` codec (CONTRACT 2b).

The ML service's enrolment worker answers a ``profile-picture-processing`` request with the
embedding of the most confident face it found (nothing when it found none): ``userId``,
``faceEmbedding`` (a JSON list; all zeros when its provider failed) and the request's
``correlationId``, with no timestamp and no version.
"""

from __future__ import annotations

import functools
import json

from kaleido.messages.converter import StructureFn, converter, structure_fn
from kaleido.messages.entry import index_fields, structure_entry, text_field
from kaleido.messages.limits import FACE_EMBEDDING_DIM
from kaleido.messages.model import Fields, ProfileFaceResult
from kaleido.messages.values import echoed_correlation_id, exact_floats, positive_id


@functools.cache
def _profile_face(dim: int) -> StructureFn:
    return structure_fn(
        ProfileFaceResult,
        user_id=text_field("userId", positive_id),
        embedding=text_field("faceEmbedding", exact_floats(dim)),
        correlation_id=text_field("correlationId", echoed_correlation_id),
    )


def decode_profile_face(
    fields: Fields, *, embedding_dim: int = FACE_EMBEDDING_DIM
) -> ProfileFaceResult:
    """Decode a ``user-profile-face-embedding-results`` entry: the embedding has exactly
    `embedding_dim` floats; raises :class:`DecodeError`."""
    return structure_entry(index_fields(fields), ProfileFaceResult, _profile_face(embedding_dim))


def encode_profile_face(result: ProfileFaceResult) -> dict[str, str]:
    """The entry exactly as the ML service's enrolment worker writes it."""
    return {
        "userId": str(result.user_id),
        "faceEmbedding": json.dumps(list(result.embedding)),
        "correlationId": result.correlation_id,
    }


converter.register_unstructure_hook(ProfileFaceResult, encode_profile_face)
