"""Accounts (PULSE_AUTH, scrypt-hashed passwords) and owner tokens for anonymous visitors.

``PULSE_AUTH`` is either ``"user:HASH,user2:HASH"`` or the path of a file with one ``user:HASH``
per line (``#`` comments allowed). ``HASH`` is ``scrypt$n$r$p$salt_b64$hash_b64``, made by
``python -m pulse_app hash-password``. Without accounts, each browser gets its own unguessable
owner token (:func:`new_owner_token`), and the store keeps its sessions apart. :class:`SignIn`
puts accounts behind limits on failed attempts, per user name and per address.

>>> accounts = Accounts.parse("ana:" + hash_password("correct horse", n=2**10))
>>> accounts.verify("ana", "correct horse"), accounts.verify("ana", "wrong")
(True, False)
>>> accounts.verify("bob", "correct horse")
False
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from pulse_app.errors import PulseError, ServerBusy

#: scrypt cost: n=2**14, r=8, p=1 takes ~50 ms and 16 MB, the usual interactive-login setting.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES, KEY_BYTES = 16, 32
USERNAME = re.compile(r"[A-Za-z0-9_.@+-]{1,64}")
#: What an owner token from :func:`new_owner_token` looks like (256 bits, URL-safe base64).
OWNER_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")       # fullmatch: no trailing newline
#: Failed sign-ins allowed per user name and per address within :data:`SIGN_IN_WINDOW_S`.
SIGN_IN_FAILURES = 10
SIGN_IN_WINDOW_S = 15 * 60.0


class AuthConfigError(PulseError):
    """PULSE_AUTH (or the users file it names) cannot be used."""

    exit_code = 2


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P,
                  salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$salt_b64$hash_b64`` for ``password`` with a fresh random salt.

    >>> hash_password("pw", n=2**10, salt=b"0" * 16)[:33]
    'scrypt$1024$8$1$MDAwMDAwMDAwMDAwM'
    """
    if not password:
        raise AuthConfigError("the password is empty", hint="type a password")
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=KEY_BYTES,
                         maxmem=256 * 1024 * 1024)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored_hash: str) -> bool:
    """True when ``password`` matches ``stored_hash`` (constant-time comparison)."""
    try:
        kind, n, r, p, salt_b64, key_b64 = stored_hash.split("$")
        if kind != "scrypt":
            return False
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(key_b64)
        key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=int(n), r=int(r), p=int(p),
                             dklen=len(expected), maxmem=256 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(key, expected)


def _check_hash_shape(user: str, stored_hash: str, where: str) -> None:
    parts = stored_hash.split("$")
    ok = len(parts) == 6 and parts[0] == "scrypt" and all(x.isdigit() for x in parts[1:4])
    try:
        ok = ok and len(base64.b64decode(parts[4], validate=True)) >= 8 \
            and len(base64.b64decode(parts[5], validate=True)) >= 16
    except (ValueError, IndexError):
        ok = False
    if not ok:
        raise AuthConfigError(f"the password hash of {user!r} in {where} is not a scrypt hash",
                              hint="make one with: python -m pulse_app hash-password")


@dataclass(frozen=True)
class Accounts:
    """User name -> password hash. Empty = no accounts (one private space per browser)."""

    users: dict

    @classmethod
    def parse(cls, spec: str | None) -> "Accounts":
        """From a PULSE_AUTH value: ``"user:HASH,..."``, or the path of a users file."""
        if spec is None or not spec.strip():
            return cls({})
        spec = spec.strip()
        path = Path(spec).expanduser()
        if ":" not in spec or path.is_file():
            if not path.is_file():
                raise AuthConfigError(f"the users file {spec} does not exist",
                                      hint="set PULSE_AUTH to a file of user:hash lines, or to "
                                           "user:hash,user2:hash")
            entries, where = path.read_text(encoding="utf-8").splitlines(), str(path)
        else:
            entries, where = spec.split(","), "PULSE_AUTH"
        users = {}
        for line in entries:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, stored_hash = line.partition(":")
            user, stored_hash = user.strip(), stored_hash.strip()
            if not sep or not USERNAME.fullmatch(user):
                raise AuthConfigError(f"{where} has an entry that is not user:hash "
                                      f"({line[:20]!r}...)",
                                      hint="one user:hash per entry; names use letters, digits "
                                           "and _ . @ + -")
            _check_hash_shape(user, stored_hash, where)
            users[user] = stored_hash
        return cls(users)

    def __bool__(self) -> bool:
        return bool(self.users)

    def verify(self, user: str, password: str) -> bool:
        """True for a known user with the right password; as slow for unknown users."""
        stored = self.users.get(user or "")
        if stored is None:
            verify_password(password or "", _dummy_hash())      # same work, same timing
            return False
        return verify_password(password or "", stored)


@functools.cache
def _dummy_hash() -> str:
    return hash_password("not a password", salt=b"\0" * SALT_BYTES)


def new_owner_token() -> str:
    """A fresh owner token for an anonymous browser: 256 random bits, URL-safe (43 characters)."""
    return secrets.token_urlsafe(32)


def is_owner_token(token) -> bool:
    """True when ``token`` has the shape of a :func:`new_owner_token` token (input from a browser
    is checked with this before it is used as an owner)."""
    return isinstance(token, str) and OWNER_TOKEN.fullmatch(token) is not None


class FailureWindow:
    """Failures per key (a user name, an address) within the last ``window_s`` seconds."""

    def __init__(self, max_failures: int, window_s: float):
        self.max_failures, self.window_s = max_failures, window_s
        self._times: dict[str, deque] = {}
        self._lock = threading.Lock()

    def wait_s(self, key: str) -> float:
        """Seconds until ``key`` may try again (0 = now)."""
        with self._lock:
            times = self._recent(key)
            if len(times) < self.max_failures:
                return 0.0
            return max(0.0, times[0] + self.window_s - time.monotonic())

    def failed(self, key: str) -> None:
        with self._lock:
            self._recent(key)
            self._times.setdefault(key, deque()).append(time.monotonic())

    def _recent(self, key: str) -> deque:
        """``key``'s failures within the window; idle keys are forgotten (bounded memory)."""
        times = self._times.get(key)
        if times is None:
            return deque()
        while times and time.monotonic() - times[0] > self.window_s:
            times.popleft()
        if not times:
            del self._times[key]
        return times


class SignIn:
    """Password checks behind limits: after ``max_failures`` failed attempts within
    ``window_s`` for one user name, or from one address, further attempts are refused
    (:class:`~pulse_app.errors.ServerBusy`, even with the right password) until the oldest
    failure is ``window_s`` old.

    >>> sign_in = SignIn(Accounts.parse("ana:" + hash_password("pw", n=2**10)), max_failures=2)
    >>> sign_in.verify("ana", "guess", "10.0.0.1"), sign_in.verify("ana", "guess", "10.0.0.2")
    (False, False)
    >>> sign_in.verify("ana", "pw", "10.0.0.3")
    Traceback (most recent call last):
    ...
    pulse_app.errors.ServerBusy: too many failed sign-ins for this account. wait 15 minutes, then try again
    """

    def __init__(self, accounts: Accounts, *, max_failures: int = SIGN_IN_FAILURES,
                 window_s: float = SIGN_IN_WINDOW_S):
        self.accounts = accounts
        self.users = FailureWindow(max_failures, window_s)
        self.addresses = FailureWindow(max_failures, window_s)

    def verify(self, user, password, address: str | None = None) -> bool:
        """True for the right password; False for a wrong one (and it counts)."""
        user = user if isinstance(user, str) else ""
        for window, key, what in ((self.users, f"user:{user}", "this account"),
                                  (self.addresses, f"address:{address}", "this address")):
            wait = window.wait_s(key)
            if wait > 0:
                raise ServerBusy(f"too many failed sign-ins for {what}",
                                 hint=f"wait {max(1, round(wait / 60))} minutes, then try again")
        if self.accounts.verify(user, password if isinstance(password, str) else ""):
            return True
        self.users.failed(f"user:{user}")
        self.addresses.failed(f"address:{address}")
        return False
