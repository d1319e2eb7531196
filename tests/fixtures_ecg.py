"""Fixtures for the ecg tests (registered in conftest.py)."""
