"""`user-profile-face-embedding-results` → the user's face, and their known face.

Only the answer to the user's latest profile-picture request counts: its correlation id must be
the one `profile_picture_requests` holds (kaleido.profiles records it when announcing the
picture). An answer to an older picture, or to no request of Kaleido's, is stale: recorded,
counted, and it changes nothing. The valid answers of a batch are applied one after the other,
in stream order, as they would be one by one (a handful per picture: nothing to merge).

An applied answer stores `user_face_embeddings` and, in the same transaction, the ML service's
`read_model_known_faces` row `user-<id>` with the username and department the request carried,
announced on `es-sync-queue`. An all-zero vector (no usable face) is recorded inactive in both,
so it enrols nothing and deactivates a face enrolled for an older picture. Of two answers to
one request, the newer in the stream is kept, whatever order they are applied in.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from kaleido.gateways import Transaction
from kaleido.messages import (
    FACE_EMBEDDING_DIM,
    PROFILE_FACE_STREAM,
    Fields,
    ProfileFaceResult,
    decode_profile_face,
)
from kaleido.streams.handlers.base import Stale, answers_to_latest, position

_LATEST = """
SELECT user_id, correlation_id FROM profile_picture_requests
WHERE user_id = ANY($1::bigint[]) ORDER BY user_id FOR UPDATE
"""

# Of two answers to one request (a repeat), the newer in the stream is the one kept.
_STORE = """
INSERT INTO user_face_embeddings AS u (
    user_id, embedding, active, correlation_id, updated_at, entry)
VALUES ($1, $2::real[], $3, $4, now(), $5::numeric)
ON CONFLICT (user_id) DO UPDATE SET
    embedding = EXCLUDED.embedding, active = EXCLUDED.active,
    correlation_id = EXCLUDED.correlation_id, updated_at = now(), entry = EXCLUDED.entry
WHERE u.correlation_id IS DISTINCT FROM EXCLUDED.correlation_id
   OR kaleido_newer(u.entry, EXCLUDED.entry)
RETURNING user_id
"""

# Enrol the active ones with what their request said; deactivate a known face of the others.
# The user's known face shows the stored answer with what its request said: active, or (an
# all-zero vector: no usable face) recorded inactive, which the ML face matcher never matches.
_ENROL = """
WITH known AS (
    INSERT INTO read_model_known_faces AS k (
        face_id, user_id, username, department, profile_pic_url, face_embedding, enrolled_at,
        is_active)
    SELECT 'user-' || u.user_id, u.user_id, r.username, r.department, r.image_url,
           u.embedding, now(), u.active
    FROM user_face_embeddings u JOIN profile_picture_requests r ON r.user_id = u.user_id
    WHERE u.user_id = $1
    ON CONFLICT (face_id) DO UPDATE SET
        username = EXCLUDED.username, department = EXCLUDED.department,
        profile_pic_url = EXCLUDED.profile_pic_url, face_embedding = EXCLUDED.face_embedding,
        enrolled_at = EXCLUDED.enrolled_at, is_active = EXCLUDED.is_active
    RETURNING k.user_id
)
SELECT kaleido_announce_document('known_faces_index', 'user-' || known.user_id, 'index',
                                 u.correlation_id)
FROM known JOIN user_face_embeddings u ON u.user_id = known.user_id
"""


@attrs.frozen
class ProfileFaceHandler:
    """`user-profile-face-embedding-results` → `user_face_embeddings`, `read_model_known_faces`."""

    stream: str = PROFILE_FACE_STREAM
    embedding_dim: int = FACE_EMBEDDING_DIM

    def decode(self, fields: Fields) -> ProfileFaceResult:
        return decode_profile_face(fields, embedding_dim=self.embedding_dim)

    async def apply(
        self, tx: Transaction, messages: Sequence[tuple[str, ProfileFaceResult]]
    ) -> Stale:
        answers, stale = await answers_to_latest(
            tx, _LATEST, "user_id", messages, lambda answer: answer.user_id
        )
        for entry_id, answer in answers:
            stored = await tx.fetchval(
                _STORE,
                answer.user_id,
                list(answer.embedding),
                answer.usable,
                answer.correlation_id,
                str(position(entry_id)),
            )
            if stored is not None:
                await tx.execute(_ENROL, answer.user_id)
        return stale
