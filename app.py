"""Hugging Face Space entry point: settings from PULSE_* variables, then the web app.

On a Space (``SPACE_ID`` set) the app listens on 0.0.0.0; see ``spaces.yaml`` for the card.
Locally ``python app.py`` is the same as ``python -m pulse_app serve`` without flags.
"""

from pulse_app.settings import Settings
from pulse_app.ui.app import launch

if __name__ == "__main__":
    settings = Settings.load()
    launch(Settings.load(host="0.0.0.0") if settings.space_id else settings)
