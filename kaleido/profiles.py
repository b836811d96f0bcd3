"""Profile pictures: a user's latest picture request, recorded and announced together.

Each request gets a correlation id of its own (a new UUID; the log line that records it carries
the caller's too), recorded as the user's latest in `profile_picture_requests` in the
transaction that announces `profile-picture-processing` (kaleido.outbox). The ML service's
enrolment answer names the request by that id, so an answer to an older picture is told apart
(kaleido.streams.handlers.profile). The username and department the request carries are what
the user's known face shows (the ML face matcher returns that username).
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from kaleido.gateways import PostgresGateway
from kaleido.logs import get_logger, new_correlation_id
from kaleido.messages import ProfilePictureEvent
from kaleido.outbox import announce_profile_picture

log = get_logger("kaleido.profiles")

# A username as the Kaleidoscope backend stores it; a department is a short label.
MAX_USERNAME_CHARS = 255
MAX_DEPARTMENT_CHARS = 255

_RECORD = """
INSERT INTO profile_picture_requests AS r (
    user_id, correlation_id, image_url, username, department, requested_at)
VALUES ($1, $2, $3, $4, $5, now())
ON CONFLICT (user_id) DO UPDATE SET
    correlation_id = EXCLUDED.correlation_id, image_url = EXCLUDED.image_url,
    username = EXCLUDED.username, department = EXCLUDED.department,
    requested_at = EXCLUDED.requested_at
"""


def _check_label(limit: int) -> Callable[[object, attrs.Attribute[str | None], str | None], None]:
    def check(_: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
        if value is None:
            return
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{attribute.name}: expected a non-empty string")
        if len(value) > limit or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError(f"{attribute.name}: at most {limit} characters, no control characters")

    return check


@attrs.frozen
class ProfilePicture:
    """A new profile picture of `user_id` (`image_url` already checked by the caller)."""

    user_id: int
    image_url: str
    username: str | None = attrs.field(default=None, validator=_check_label(MAX_USERNAME_CHARS))
    department: str | None = attrs.field(default=None, validator=_check_label(MAX_DEPARTMENT_CHARS))


def _nothing() -> None:
    pass


@attrs.define
class Profiles:
    """Records and announces profile pictures (routes, demo traffic, embedding programs)."""

    postgres: PostgresGateway
    # Called after each commit that announced something (the relay's kick).
    announced: Callable[[], None] = _nothing

    async def change_picture(self, picture: ProfilePicture) -> ProfilePictureEvent:
        """Record the picture as the user's latest request and announce it; return the event
        (its correlation id names the request). Raises the backend error; nothing is recorded
        or announced then."""
        event = ProfilePictureEvent(picture.user_id, picture.image_url, new_correlation_id())
        async with self.postgres.transaction() as tx:
            await tx.execute(
                _RECORD,
                picture.user_id,
                event.correlation_id,
                picture.image_url,
                picture.username,
                picture.department,
            )
            await announce_profile_picture(tx, event)
        self.announced()
        log.info(
            "profile.picture_requested",
            user_id=picture.user_id,
            request_correlation_id=event.correlation_id,
        )
        return event
