"""Who is asking: the owner string every core call is scoped to.

With accounts (``--auth``) the owner is the signed-in user name. Without accounts each browser
gets an unguessable token (:func:`pulse_app.auth.new_owner_token`), created on its first visit and
kept in its localStorage (encrypted with a server secret stored in the data directory, so it
survives restarts). Programmatic clients (gradio_client) pass a token of their own; knowing a
token is the same as owning it.

>>> owner_for(None, "x" * 43)
'browser:xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'
>>> owner_for("ana", None)
'user:ana'
"""

from __future__ import annotations

import secrets
from pathlib import Path

from pulse_app.auth import is_owner_token
from pulse_app.errors import PulseError


def owner_for(username: str | None, token: str | None) -> str:
    """``user:<name>`` when signed in, else ``browser:<token>``; a malformed token is refused."""
    if username:
        return f"user:{username}"
    if not is_owner_token(token):
        raise PulseError("this browser has no private space yet",
                         hint="reload the page (and allow this site to store data)")
    return f"browser:{token}"


def owner_label(owner: str) -> str:
    """What the PDF report prints as the owner (never the secret token)."""
    return owner.split(":", 1)[1] if owner.startswith("user:") else "anonymous browser session"


def browser_secret(data_dir: str | Path) -> str:
    """The key that encrypts browser tokens in localStorage; created once per data directory."""
    path = Path(data_dir) / "browser-state.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    return path.read_text().strip()
