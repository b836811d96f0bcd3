"""What one inbound entry may carry: caps on sizes, counts and numbers (pure constants)."""

from __future__ import annotations

import re
from typing import Final

# The largest real field, a 1408-float embedding, is ~30 KB of JSON: 1 MiB is ample headroom.
MAX_FIELD_BYTES: Final = 1024 * 1024
# Caps on what one inbound entry may carry (docs/streams.md "What an inbound entry may be"): with
# them a batch's memory is bounded whatever the ML service (or whoever can write to its streams)
# sends.
MAX_ENTRY_BYTES: Final = 2 * 1024 * 1024  # all fields together
# Floats in an embedding (configurable): the ML service's Google platform sends 1408 for both,
# its HuggingFace platform 512 for images and 1408 for faces (CONTRACT 2b).
IMAGE_EMBEDDING_DIM: Final = 1408
FACE_EMBEDDING_DIM: Final = 1408
MAX_FACES: Final = 32  # faces in one face-detection entry
MAX_TAGS: Final = 256  # tags or scenes in one entry
MAX_TAG_CHARS: Final = 256
MAX_CAPTION_CHARS: Final = 4096
MAX_USERNAME_CHARS: Final = 255
# A correlation id follows the HTTP header's rule; any other value is dropped (not logged).
CORRELATION_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
INT64_MAX: Final = 2**63 - 1
# bbox goes to PostgreSQL int[] (int4).
INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1
# Embeddings go to PostgreSQL real[]: asyncpg rejects a finite double beyond float32 range,
# which would fail the whole batch on every retry, so such a value is a decode error instead.
FLOAT32_MAX: Final = 3.4028234663852886e38
# How much of a bad value an error message quotes (DLQ entries stay small).
QUOTE_CHARS: Final = 60
