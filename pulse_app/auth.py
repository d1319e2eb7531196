"""Accounts (PULSE_AUTH, scrypt-hashed passwords) and owner tokens for anonymous visitors.

``PULSE_AUTH`` is either ``"user:HASH,user2:HASH"`` or the path of a file with one ``user:HASH``
per line (``#`` comments allowed). ``HASH`` is ``scrypt$n$r$p$salt_b64$hash_b64``, made by
``python -m pulse_app hash-password``. Without accounts, each browser gets its own unguessable
owner token (:func:`new_owner_token`), and the store keeps its sessions apart.

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
from dataclasses import dataclass
from pathlib import Path

from pulse_app.errors import PulseError

#: scrypt cost: n=2**14, r=8, p=1 takes ~50 ms and 16 MB, the usual interactive-login setting.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES, KEY_BYTES = 16, 32
USERNAME = re.compile(r"[A-Za-z0-9_.@+-]{1,64}")
#: What an owner token from :func:`new_owner_token` looks like (256 bits, URL-safe base64).
OWNER_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")       # fullmatch: no trailing newline


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
