"""The admin token of a dev start (`make run` with no admin credential set): kept in
`STATE_DIR/admin-token` (mode 0600, never logged) and the same across starts of one state
folder, so a signed-in console and a saved `curl` keep working after a restart."""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path

from kaleido.private_files import write_private
from kaleido.settings import Settings

FILE_NAME = "admin-token"
# Shorter text in the file (edited by hand, truncated) is replaced by a new token.
_MIN_LENGTH = 32


def token_path(state_dir: Path) -> Path:
    return state_dir / FILE_NAME


def dev_admin_token(state_dir: Path) -> str:
    """The token in the state folder, made (random, 0600) when there is none yet."""
    path = token_path(state_dir)
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    if len(token) >= _MIN_LENGTH and not any(c.isspace() for c in token):
        path.chmod(0o600)
        return token
    token = secrets.token_urlsafe(32)
    write_private(path, token + "\n")
    return token


def dev_token_file(settings: Settings) -> Path | None:
    """The state folder's token file when it holds the configured admin token (a dev start),
    else None: where the console's sign-in page tells a developer to look."""
    if settings.admin_token is None:
        return None
    path = token_path(settings.state_dir)
    try:
        stored = path.read_text().strip()
    except OSError:
        return None
    return path if hmac.compare_digest(stored, settings.admin_token) else None
