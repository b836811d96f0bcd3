"""Faces for the stand-in ML service (pure): deterministic face vectors per user, and the face
matcher's index of known faces (what the ML service's sync reads from Kaleido's
`read_model_known_faces`).

A user's profile face is a fixed unit vector seeded by the user id; a face of that user in a
post is the same vector with a little noise, so the matcher finds it (cosine well above the
real matcher's 0.85), while an unknown face is a random vector that matches nobody.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Sequence

import attrs

# Face ids are UUIDs derived from (mediaId, face index), so a re-run gives the same ids.
FACE_NAMESPACE = uuid.UUID("5b0c3f0e-6a53-4f4e-9a57-6b616c656964")
# The real face matcher's threshold on the cosine similarity.
MATCH_THRESHOLD = 0.85
# Users whose profile picture shows no usable face: their answer is all zeros.
NO_FACE_EVERY = 13


def face_id(media_id: int, index: int) -> str:
    return str(uuid.uuid5(FACE_NAMESPACE, f"{media_id}:{index}"))


def _unit(values: Sequence[float]) -> tuple[float, ...]:
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return tuple(round(v / norm, 6) for v in values)


def user_face(user_id: int, dim: int) -> tuple[float, ...]:
    """The face of `user_id`'s profile picture (all zeros when it shows none)."""
    if user_id % NO_FACE_EVERY == 0:
        return (0.0,) * dim
    rng = random.Random(f"face:{user_id}")
    return _unit([rng.gauss(0, 1) for _ in range(dim)])


def seen_face(user_id: int, dim: int, rng: random.Random) -> tuple[float, ...]:
    """`user_id`'s face as a post shows it: the profile face with a little noise."""
    return _unit([v + rng.gauss(0, 0.01) for v in user_face(user_id, dim)])


def stranger_face(dim: int, rng: random.Random) -> tuple[float, ...]:
    return _unit([rng.gauss(0, 1) for _ in range(dim)])


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b, strict=False)) / norm if norm else 0.0


@attrs.frozen
class KnownFace:
    user_id: int
    username: str | None
    embedding: tuple[float, ...]
    active: bool


@attrs.frozen
class Match:
    user_id: int
    username: str | None
    score: float


@attrs.define
class KnownFaces:
    """The matcher's index: document id → known face, as the search sync last indexed it."""

    faces: dict[str, KnownFace] = attrs.Factory(dict)

    def best_match(self, embedding: Sequence[float]) -> Match | None:
        """The nearest active known face scoring at least MATCH_THRESHOLD, or None."""
        best: Match | None = None
        for face in self.faces.values():
            if not face.active or not any(face.embedding):
                continue
            score = cosine(embedding, face.embedding)
            if score >= MATCH_THRESHOLD and (best is None or score > best.score):
                best = Match(face.user_id, face.username, round(min(score, 1.0), 4))
        return best
