"""Accounts from PULSE_AUTH, scrypt hashes, owner tokens, and the hash-password command."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pulse_app.settings import Settings

from pulse_app.auth import (
    Accounts,
    AuthConfigError,
    hash_password,
    is_owner_token,
    new_owner_token,
    verify_password,
)

FAST = {"n": 2**10}          # cheap scrypt for tests; the default cost is checked once below


def test_hash_format_and_verification():
    stored = hash_password("correct horse battery", **FAST)
    kind, n, r, p, salt, key = stored.split("$")
    assert (kind, n, r, p) == ("scrypt", "1024", "8", "1") and salt and key
    assert verify_password("correct horse battery", stored)
    assert not verify_password("correct horse batterY", stored)
    assert not verify_password("", stored)
    assert hash_password("same", **FAST) != hash_password("same", **FAST)        # salted
    assert not verify_password("x", "pbkdf2$1$2$3")                              # malformed
    with pytest.raises(AuthConfigError):
        hash_password("")


def test_default_cost_is_interactive_strength():
    assert hash_password("pw").startswith("scrypt$16384$8$1$")


def test_accounts_from_a_list_and_from_a_file(tmp_path, monkeypatch):
    ana, bob = hash_password("ana-pw", **FAST), hash_password("bob-pw", **FAST)
    inline = Accounts.parse(f"ana:{ana}, bob:{bob}")
    assert set(inline.users) == {"ana", "bob"}
    users_file = tmp_path / "users"
    users_file.write_text(f"# clinic accounts\nana:{ana}\n\nbob:{bob}\n")
    from_file = Accounts.parse(str(users_file))
    assert from_file.users == inline.users
    assert from_file.verify("ana", "ana-pw") and from_file.verify("bob", "bob-pw")
    assert not from_file.verify("ana", "bob-pw") and not from_file.verify("eve", "ana-pw")
    assert not from_file.verify("", "")
    monkeypatch.setenv("PULSE_AUTH", str(users_file))          # read through the settings
    from_env = Accounts.parse(Settings.load().auth)
    assert from_env.verify("ana", "ana-pw") and not from_env.verify("ana", "nope")
    assert not Accounts.parse(None) and not Accounts.parse("  ")


@pytest.mark.parametrize("spec, message", [
    ("ana:plaintext-password", "not a scrypt hash"),
    ("/no/such/users-file", "does not exist"),
    ("ana scrypt$1$2$3$abc$def", "does not exist"),
    ("bad name:scrypt$1024$8$1$MDAwMDAwMDAwMDAwMDAwMA==$" + "A" * 44, "not user:hash"),
])
def test_bad_auth_settings_are_explained(spec, message):
    with pytest.raises(AuthConfigError, match=message) as error:
        Accounts.parse(spec)
    assert error.value.hint


def test_owner_tokens():
    tokens = {new_owner_token() for _ in range(100)}
    assert len(tokens) == 100 and all(is_owner_token(t) for t in tokens)
    for bad in ("", "short", "x" * 42, "x" * 44, "../../etc/passwd" + "a" * 27, None, 42,
                "a" * 42 + "=", "a" * 43 + "\n", "a" * 43 + "\x00"):
        assert not is_owner_token(bad)


def test_hash_password_command_reads_stdin():
    result = subprocess.run([sys.executable, "-m", "pulse_app", "hash-password"],
                            input="s3cret pw\n", capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    stored = result.stdout.strip()
    assert stored.startswith("scrypt$") and verify_password("s3cret pw", stored)
    assert Accounts.parse(f"ana:{stored}").verify("ana", "s3cret pw")
