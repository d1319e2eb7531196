"""The findings vocabulary of the instruction data: :mod:`pulse_app.ecg.vocab`, where the app's
answer checker reads it too (``pulse_app`` never imports ``training``). Its names, for the
instruction builders and their readers.

>>> find_labels("No atrial fibrillation. Left axis deviation.")
{'left axis deviation'}
"""

from pulse_app.ecg.vocab import (AXIS, CONDUCTION, ECTOPY, FINDINGS, GROUPS, NEGATION, OTHER,
                                 PATTERNS, PHRASES, RATE_BUCKETS, RHYTHMS, ST_T, TASK_LABELS,
                                 TERRITORY_LEADS, canonical_labels, find_labels, first_label,
                                 normalise_text, phrase, rate_bucket)

__all__ = ["AXIS", "CONDUCTION", "ECTOPY", "FINDINGS", "GROUPS", "NEGATION", "OTHER", "PATTERNS",
           "PHRASES", "RATE_BUCKETS", "RHYTHMS", "ST_T", "TASK_LABELS", "TERRITORY_LEADS",
           "canonical_labels", "find_labels", "first_label", "normalise_text", "phrase",
           "rate_bucket"]
