"""What a visitor sees when an event fails: the core's message, or a reference, never internals.

:func:`guarded` wraps every event handler and API endpoint: a
:class:`~pulse_app.errors.PulseError` becomes a ``gr.Error`` with its one-line message (what
happened, what to do); any other exception is logged with its traceback under a short reference
and the visitor sees only that reference (library messages and paths stay in the log).

>>> @guarded
... def broken():
...     raise KeyError("/srv/secret/path")
>>> try:
...     broken()
... except gr.Error as error:
...     print(error.message.split(" (reference")[0], "/srv" in error.message)
Something went wrong on the server; it is logged False
"""

from __future__ import annotations

import functools
import inspect
import logging
import secrets
from contextlib import contextmanager
from typing import Iterator

import gradio as gr

from pulse_app.errors import PulseError

log = logging.getLogger("pulse_app.ui")


def user_error(error: PulseError) -> gr.Error:
    return gr.Error(str(error), print_exception=False)


def internal_error(where: str) -> gr.Error:
    """Log the exception being handled under a new reference; the error a visitor sees."""
    reference = secrets.token_hex(4)
    log.exception("internal error %s in %s", reference, where)
    return gr.Error(f"Something went wrong on the server; it is logged (reference {reference}). "
                    "Try again, and give the reference to whoever runs this server if it "
                    "happens again.", print_exception=False)


@contextmanager
def presentable(where: str) -> Iterator[None]:
    """Within the block, a failure becomes a ``gr.Error`` a visitor may see."""
    try:
        yield
    except gr.Error:
        raise
    except PulseError as error:
        raise user_error(error) from None
    except Exception:  # noqa: BLE001 - logged with a reference, never shown
        raise internal_error(where) from None


def guarded(handler):
    """``handler`` (a function or a generator function) with its failures made presentable."""
    where = getattr(handler, "__qualname__", repr(handler))

    if inspect.isgeneratorfunction(handler):
        @functools.wraps(handler)
        def stream(*args, **kwargs):
            with presentable(where):
                return (yield from handler(*args, **kwargs))
        return stream

    @functools.wraps(handler)
    def call(*args, **kwargs):
        with presentable(where):
            return handler(*args, **kwargs)
    return call
