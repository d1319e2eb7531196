"""Errors a user can act on: one line saying what went wrong, one saying what to do.

Every module raises a :class:`PulseError` subclass for conditions a clinician or operator can
fix; the CLI prints ``str(err)`` to stderr and exits non-zero, the web app shows it in the chat.
Anything else is a bug and is logged with its traceback (never shown to the user).

>>> str(ModelUnavailable("cannot download PULSE-ECG/PULSE-7B", hint="check the network"))
'cannot download PULSE-ECG/PULSE-7B. check the network'
"""

from __future__ import annotations


class PulseError(Exception):
    """Base class. ``message`` says what happened, ``hint`` what to do about it."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message.rstrip(".")
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}. {self.hint}" if self.hint else f"{self.message}."


class ImageRejected(PulseError):
    """The uploaded file is not an image we can use (type, size, corrupt, encrypted...)."""

    exit_code = 3


class ModelUnavailable(PulseError):
    """Weights cannot be found, downloaded, or are incomplete / not the expected layout."""

    exit_code = 4


class HardwareError(PulseError):
    """The requested device or precision cannot be used here (no CUDA, out of memory...)."""

    exit_code = 5


class BackendUnreachable(PulseError):
    """A remote backend (Space, OpenAI-compatible server) is down, slow or refused us."""

    exit_code = 6


class SessionNotFound(PulseError):
    """No session with that id exists for this owner (also when it exists for another owner)."""

    exit_code = 7


class RecordUnreadable(PulseError):
    """An ECG signal file cannot be read (unknown format, missing .dat/.mat, corrupt, no leads...)."""

    exit_code = 8


class FindingsInvalid(PulseError, ValueError):
    """A simulator request that cannot be drawn (unknown choice, out of range, contradictory)."""

    exit_code = 9


class ServerBusy(PulseError):
    """The server is at a limit it keeps on purpose (memory for images, sign-in attempts);
    trying again later works."""

    exit_code = 10


class InvalidParameter(PulseError, ValueError):
    """A request value out of its range or of the wrong type (temperature, top_p, a question...).
    The same check answers every entry point: HTTP 400, a message in the page, exit code 2."""

    exit_code = 2
