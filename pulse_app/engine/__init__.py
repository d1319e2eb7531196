"""Talking to a model: the Backend interface and its local, space and openai implementations."""
