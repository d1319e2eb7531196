"""Regenerates the model: instruction data, fine-tuning recipe, evaluation. Imports pulse_app."""
