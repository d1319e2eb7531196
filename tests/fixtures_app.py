"""Fixtures for the app tests (registered in conftest.py)."""
