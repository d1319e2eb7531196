"""Fixtures for the engine tests (registered in conftest.py)."""
