"""The web app's gate: an ASGI middleware in front of Gradio's routes.

- **Owner cookie.** A browser without a valid owner token gets a new one in an HttpOnly cookie
  (``pulse-owner``; SameSite=Lax on http, SameSite=None + Secure + Partitioned on https, where a
  Space shows the app in an iframe) with the page itself, before any event. Page scripts never
  see it; no secret that protects it is ever published (Gradio's ``BrowserState`` sent its key
  in ``/config``). A browser that keeps no cookies is told so by the first event it sends.
- **Gradio's file route serves only the app's own example images.** Uploads wait in Gradio's
  cache until their handler has read them, and are deleted then (:class:`PendingUploads`);
  nothing there is ever served (the picture reaches the page inline, reports through the route
  below).
- **Reports and signal downloads** (``GET <root>/pulse/report/<id>``): a prepared PDF (a
  session's report, a deck's handout), a class's answers (CSV) or a session's digitised signals
  (WFDB zip, CSV), to its owner only, checked on this request (the owner cookie, or the account
  signed in through Gradio's login), once; then it is gone (kept in the database: any replica
  serves it; :meth:`pulse_app.chat.ChatService.take_export`). Anyone else gets the same 404.
- **Sign-in.** ``POST /login`` runs with the client's address in :data:`CLIENT_ADDRESS`, so the
  password check (:class:`pulse_app.auth.SignIn`) limits failures per address as well as per
  user name. Gradio keeps sign-ins in its process; the gate gives it :class:`SharedSignIns`
  (the database) and the database's cookie name instead, so an account signed in through one
  replica is signed in on every replica (and after a restart).

>>> report_id("/pulse/report/abc_DEF-123"), report_id("/pulse/report/../x")
('abc_DEF-123', None)
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import os
import re
import threading
from collections.abc import MutableMapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from pulse_app.auth import SIGN_IN_MAX_AGE_S, is_owner_token, new_owner_token
from pulse_app.errors import PulseError
from pulse_app.ui.owner import OWNER_COOKIE, owner_for

#: The client address of the sign-in being checked (set for ``POST /login`` only).
CLIENT_ADDRESS: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "pulse_client_address", default=None)
#: The owner cookie lives about as long as browsers allow (400 days).
COOKIE_MAX_AGE_S = 400 * 24 * 3600
_REPORT = re.compile(r"(?:^|/)pulse/report/([A-Za-z0-9_-]{1,64})/?\Z")
_LOGIN = re.compile(r"(?:^|/)login/?\Z")
_UPLOAD = re.compile(r"(?:^|/)upload/?\Z")
NOT_THERE = "This report is no longer available (it is kept for one download, for a few minutes)."


class PendingUploads:
    """Files in Gradio's cache and how many events have yet to read each.

    Gradio stores an upload under its content's hash, so two visitors sending the same file at
    once share one path: the gate counts each upload the server acknowledges, each handler
    that has read a file calls :meth:`done`, and the file is deleted when the last one has.
    An upload never read is deleted by Gradio's own cache expiry (``delete_cache``).
    """

    def __init__(self):
        self._waiting: dict[str, int] = {}
        self._lock = threading.Lock()

    def expect(self, paths) -> None:
        with self._lock:
            for path in paths:
                self._waiting[str(path)] = self._waiting.get(str(path), 0) + 1

    def done(self, paths) -> list[str]:
        """Mark ``paths`` as read once more; returns those nobody waits for (to delete)."""
        free = []
        with self._lock:
            for path in map(str, paths):
                left = self._waiting.get(path, 1) - 1
                if left > 0:
                    self._waiting[path] = left
                else:
                    self._waiting.pop(path, None)
                    free.append(path)
        return free


#: The process's pending uploads (Gradio's cache folder is per process too).
UPLOADS = PendingUploads()


class _Digest(str):
    """A key of :class:`SharedSignIns` as it iterates (never what a cookie holds)."""


class SharedSignIns(MutableMapping):
    """Gradio's ``app.tokens`` (sign-in token -> user name) in the database: a sign-in made
    through one replica holds on every replica. Only SHA-256 digests of the tokens are stored;
    a sign-in lasts :data:`~pulse_app.auth.SIGN_IN_MAX_AGE_S`."""

    def __init__(self, store):
        self.store = store

    @staticmethod
    def _digest(token) -> str | None:
        if type(token) is _Digest:
            return str(token)
        if not isinstance(token, str) or not token:
            return None
        return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()

    def __getitem__(self, token) -> str:
        digest = self._digest(token)
        oldest = datetime.now(timezone.utc) - timedelta(seconds=SIGN_IN_MAX_AGE_S)
        user = self.store.signed_in_user(digest, not_before=oldest) if digest else None
        if user is None:
            raise KeyError(token)
        return user

    def __setitem__(self, token, username) -> None:
        self.store.add_sign_in(self._digest(token), username)

    def __delitem__(self, token) -> None:
        self.store.delete_sign_in(self._digest(token))

    def __iter__(self):
        return iter([_Digest(digest) for digest in self.store.sign_ins()])

    def __len__(self) -> int:
        return len(self.store.sign_ins())


def share_sign_ins(app, store) -> None:
    """Make Gradio's app keep its sign-ins in ``store`` under the database's cookie name
    (every replica on the database agrees on both)."""
    if app is not None and hasattr(app, "tokens") and not isinstance(app.tokens, SharedSignIns):
        app.cookie_id = store.app_value("cookie_id") or app.cookie_id
        app.tokens = SharedSignIns(store)


def report_id(path: str) -> str | None:
    """The export id in a report URL path, or None."""
    match = _REPORT.search(path)
    return match.group(1) if match else None


def _is_https(scope) -> bool:
    if scope.get("scheme") == "https":
        return True
    headers = dict(scope.get("headers") or [])
    return headers.get(b"x-forwarded-proto", b"").split(b",")[0].strip() == b"https"


def owner_cookie_header(token: str, https: bool) -> bytes:
    """The ``Set-Cookie`` value that gives a browser its owner token."""
    attributes = (["Secure", "SameSite=None", "Partitioned"] if https else ["SameSite=Lax"])
    return "; ".join([f"{OWNER_COOKIE}={token}", "Path=/", f"Max-Age={COOKIE_MAX_AGE_S}",
                      "HttpOnly", *attributes]).encode("latin-1")


def signed_in_user(request: Request) -> str | None:
    """The account signed in through Gradio's login on this request (its session cookie)."""
    app = request.scope.get("app")
    cookie_id, tokens = getattr(app, "cookie_id", None), getattr(app, "tokens", None) or {}
    if not cookie_id:
        return None
    session = (request.cookies.get(f"access-token-{cookie_id}")
               or request.cookies.get(f"access-token-unsecure-{cookie_id}"))
    return tokens.get(session) if session else None


def _count_uploads(body: bytes) -> None:
    """The paths of an upload Gradio acknowledged (a JSON list): each waits for its event."""
    try:
        paths = json.loads(body or b"null")
    except ValueError:
        return
    if isinstance(paths, list):
        UPLOADS.expect(p for p in paths if isinstance(p, str))


class PulseGate:
    """The middleware (see the module docstring). ``chat`` is the app's ChatService;
    ``served`` the folders Gradio's file route may serve (the example images)."""

    def __init__(self, app, *, chat, served: list[str | Path]):
        self.app, self.chat = app, chat
        self.served = [os.path.realpath(p) for p in served]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        share_sign_ins(scope.get("app"), self.chat.store)
        path = scope.get("path", "")
        if "/file=" in path or "/proxy=" in path:
            if not self._servable(path):
                return await PlainTextResponse("Not found.", 404)(scope, receive, send)
        token = Request(scope).cookies.get(OWNER_COOKIE)
        new_token = None if is_owner_token(token) else new_owner_token()
        export_id = report_id(path)
        if export_id is not None:
            response = self._report(Request(scope), export_id)
            return await self._send_with_cookie(response, new_token, scope, receive, send)
        if scope.get("method") == "POST" and _LOGIN.search(path):
            client = scope.get("client") or ("unknown", 0)
            CLIENT_ADDRESS.set(str(client[0]))
        uploaded = [] if scope.get("method") == "POST" and _UPLOAD.search(path) else None

        async def send_with_cookie(message):
            if new_token and message["type"] == "http.response.start":
                message = {**message, "headers": [
                    *message.get("headers", []),
                    (b"set-cookie", owner_cookie_header(new_token, _is_https(scope)))]}
            if uploaded is not None and message["type"] == "http.response.body":
                uploaded.append(message.get("body", b""))
                if not message.get("more_body"):
                    _count_uploads(b"".join(uploaded))
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _servable(self, path: str) -> bool:
        """Gradio's file route may serve a file inside :attr:`served` only."""
        target = path.split("/file=", 1)[1] if "/file=" in path else ""
        if not target or "://" in target:
            return False
        real = os.path.realpath(target)
        return any(real == root or real.startswith(root + os.sep) for root in self.served)

    def _report(self, request: Request, export_id: str) -> Response:
        if request.method != "GET":
            return PlainTextResponse("Use GET.", 405)
        try:
            owner = owner_for(signed_in_user(request), request.cookies.get(OWNER_COOKIE))
            if getattr(request.scope.get("app"), "auth", None) and not owner.startswith("user:"):
                raise PulseError("sign in first")
            export = self.chat.take_export(owner, export_id)
        except PulseError:
            return PlainTextResponse(NOT_THERE, 404, headers={"Cache-Control": "no-store"})
        return Response(export.data, media_type=export.media_type, headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(export.filename)}",
            "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})

    @staticmethod
    async def _send_with_cookie(response: Response, new_token, scope, receive, send):
        if new_token:
            response.raw_headers.append((b"set-cookie",
                                         owner_cookie_header(new_token, _is_https(scope))))
        await response(scope, receive, send)
