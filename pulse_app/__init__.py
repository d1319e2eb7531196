"""PULSE app: read ECG images with PULSE-7B. The core here imports neither gradio nor torch."""

__version__ = "0.1.0"
