"""The mini model (``assets/pulse-mini``): PULSE-7B's classes at toy size, trained from scratch on
a CPU, so that a fresh machine without a GPU or network shows the whole workflow with a model
that went through the project's whole training path. Not PULSE-7B, not for clinical use.

The recipe is ``__main__.py`` (``python -m training.mini_model``, read it top to bottom); the
settings of each stage are ``training/configs/mini/<stage>.yaml``; the parts:

- ``config.py``      the stages' settings: one YAML per stage, ``stage.key=value`` overrides
- ``data.py``        simulated records -> pages (``training.render``), questions, warm-up targets
- ``model.py``       the untrained model: sizes, tokenizer, zero-mean patch filters
- ``targets.py``     the warm-up's per-token and per-image targets from the renderer's sidecar
- ``warmup.py``      the vision tower's supervised warm-up and its CNN teacher
- ``evaluation.py``  held-out scores (``training.evaluate``) and image dependence
- ``card.py``        the model card: the scores, in sentences that follow the numbers
"""
