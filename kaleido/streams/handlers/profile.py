"""`user-profile-face-embedding-results` → the user's face, and their known face.

Only the answer to the user's latest profile-picture request counts: its correlation id must be
the one `profile_picture_requests` holds (kaleido.profiles records it when announcing the
picture). An answer to an older picture, or to no request of Kaleido's, is stale: recorded,
counted, and it changes nothing. The valid answers of a batch are applied one after the other,
in stream order, as they would be one by one (a handful per picture: nothing to merge).

An applied answer stores `user_face_embeddings` (an all-zero vector is recorded inactive) and,
in the same transaction, the ML service's `read_model_known_faces` row `user-<id>` with the
username and department the request carried, announced on `es-sync-queue`. An all-zero answer
enrols nothing; a face enrolled before for an older picture is deactivated.
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
from kaleido.streams.handlers.base import Stale

_LATEST = """
SELECT user_id, correlation_id FROM profile_picture_requests
WHERE user_id = ANY($1::bigint[]) ORDER BY user_id FOR UPDATE
"""

_STORE = """
INSERT INTO user_face_embeddings AS u (user_id, embedding, active, correlation_id, updated_at)
VALUES ($1, $2::real[], $3, $4, now())
ON CONFLICT (user_id) DO UPDATE SET
    embedding = EXCLUDED.embedding, active = EXCLUDED.active,
    correlation_id = EXCLUDED.correlation_id, updated_at = now()
"""

# Enrol the active ones with what their request said; deactivate a known face of the others.
_ENROL = """
WITH enrolled AS (
    INSERT INTO read_model_known_faces AS k (
        face_id, user_id, username, department, profile_pic_url, face_embedding, enrolled_at,
        is_active)
    SELECT 'user-' || u.user_id, u.user_id, r.username, r.department, r.image_url,
           u.embedding, now(), true
    FROM user_face_embeddings u JOIN profile_picture_requests r ON r.user_id = u.user_id
    WHERE u.user_id = $1 AND u.active
    ON CONFLICT (face_id) DO UPDATE SET
        username = EXCLUDED.username, department = EXCLUDED.department,
        profile_pic_url = EXCLUDED.profile_pic_url, face_embedding = EXCLUDED.face_embedding,
        enrolled_at = EXCLUDED.enrolled_at, is_active = true
    RETURNING k.user_id
), deactivated AS (
    UPDATE read_model_known_faces k SET is_active = false
    FROM user_face_embeddings u
    WHERE u.user_id = $1 AND NOT u.active AND k.user_id = u.user_id
      AND k.is_active
    RETURNING k.user_id
)
SELECT kaleido_announce_document('known_faces_index', 'user-' || changed.user_id, 'index',
                                 u.correlation_id)
FROM (SELECT user_id FROM enrolled UNION ALL SELECT user_id FROM deactivated) AS changed
JOIN user_face_embeddings u ON u.user_id = changed.user_id
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
        users = sorted({m.user_id for _, m in messages})
        latest = {row["user_id"]: row["correlation_id"] for row in await tx.fetch(_LATEST, users)}
        stale = set()
        for entry_id, answer in messages:
            if not answer.correlation_id or latest.get(answer.user_id) != answer.correlation_id:
                stale.add(entry_id)
                continue
            await tx.execute(
                _STORE, answer.user_id, list(answer.embedding), answer.usable, answer.correlation_id
            )
            await tx.execute(_ENROL, answer.user_id)
        return frozenset(stale)
