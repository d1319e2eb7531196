"""Who is asking: the owner string every core call is scoped to.

With accounts (``--auth``) the owner is the signed-in user name. Without accounts each browser
gets an unguessable token (:func:`pulse_app.auth.new_owner_token`) in an HttpOnly cookie that
the server sets on its first request (:mod:`pulse_app.ui.web`): page scripts cannot read it,
and no secret that protects it is ever sent to a browser. Programmatic clients (gradio_client)
pass a token of their own to the session API; knowing a token is the same as owning it.

>>> owner_for(None, "x" * 43)
'browser:xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'
>>> owner_for("ana", None)
'user:ana'
>>> owner_for(None, "x" * 43 + "\\n")
Traceback (most recent call last):
...
pulse_app.errors.PulseError: this browser has no private space yet. reload the page (and allow this site to keep cookies)
"""

from __future__ import annotations

from pulse_app.auth import USERNAME, is_owner_token
from pulse_app.errors import PulseError

#: The cookie that holds an anonymous browser's owner token (HttpOnly, SameSite=Lax).
OWNER_COOKIE = "pulse-owner"


def owner_for(username: str | None, token) -> str:
    """``user:<name>`` when signed in, else ``browser:<token>``; a malformed token is refused."""
    if username:
        if not isinstance(username, str) or not USERNAME.fullmatch(username):
            raise PulseError("this account name is not valid", hint="sign in again")
        return f"user:{username}"
    if not is_owner_token(token):
        raise PulseError("this browser has no private space yet",
                         hint="reload the page (and allow this site to keep cookies)")
    return f"browser:{token}"


def cookie_token(request) -> str | None:
    """The owner token in a request's cookie (a ``gr.Request`` or a Starlette request)."""
    cookies = getattr(request, "cookies", None) or {}
    token = cookies.get(OWNER_COOKIE)
    return token if is_owner_token(token) else None


def request_owner(request) -> str:
    """The owner of a page event: the signed-in user, else the browser's cookie."""
    return owner_for(getattr(request, "username", None), cookie_token(request))


def owner_label(owner: str) -> str:
    """What the PDF report prints as the owner (never the secret token)."""
    return owner.split(":", 1)[1] if owner.startswith("user:") else "anonymous browser session"
