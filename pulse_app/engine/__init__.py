"""Talking to a model: the Backend interface and its local, space and openai implementations.

Nothing heavy is imported here: :func:`make_backend` imports the chosen backend's module (and so
torch or gradio_client) only when it is called.

>>> from pulse_app.settings import Settings
>>> backend = make_backend(Settings.load(backend="local"))     # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from pulse_app.engine.backend import Backend
    from pulse_app.settings import Settings

#: backend name -> (module, class). Each class is built with ``Class.from_settings(settings)``.
BACKENDS = {
    "local": ("pulse_app.engine.local", "LocalBackend"),
    "space": ("pulse_app.engine.space", "SpaceBackend"),
    "openai": ("pulse_app.engine.openai_compat", "OpenAIBackend"),
}


def make_backend(settings: "Settings", *, progress: Callable[[str], None] | None = None
                 ) -> "Backend":
    """The backend ``settings.backend`` names, configured from ``settings`` (nothing loaded yet).

    ``progress`` receives one-line status messages while a local model downloads, converts and
    loads (the UI shows them); remote backends ignore it.
    """
    import importlib

    module_name, class_name = BACKENDS[settings.backend]
    cls = getattr(importlib.import_module(module_name), class_name)
    if settings.backend == "local":
        return cls.from_settings(settings, progress=progress)
    return cls.from_settings(settings)
