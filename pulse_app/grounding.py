"""Grounded answers: the digitiser's measurements given to the model as marked context.

:func:`measurement_context` is the one context builder: the app (web app, CLI ``ask
--grounded``, ``/ask``, ``serve-openai``) puts it before the question through
:func:`pulse_app.answer.stream_answer`, and the mini model's training questions import it from
here, so the model learns the exact words it will be given. The context says plainly that the
values were measured from the image by the digitiser, not by the model; an answer given with it
is labelled :func:`grounded_label`.

Measurements come as the stored dictionary (``Measurements.to_dict()["measurements"]``: name ->
fields) so a stored session's reading, a fresh reading and a record's measurements read alike.

>>> ctx = measurement_context({"heart_rate": {"name": "heart_rate", "value": 72.0,
...     "unit": "bpm", "lead": "II", "confidence": 0.9, "flag": None, "note": ""},
...     "qrs": {"name": "qrs", "value": None, "unit": "ms", "lead": None, "confidence": 0.0,
...     "flag": None, "note": "no clean beat"}})
>>> ctx.startswith("Measured from the image by the digitiser (not by the model): ")
True
>>> print(ctx.removeprefix(CONTEXT_HEAD + " "))
heart rate 72 bpm (lead II, high confidence); QRS duration not measurable.
>>> print(grounded_question("What is the rate?", ctx).splitlines()[-1])
What is the rate?
"""

from __future__ import annotations

from pulse_app.ecg.measure import IRREGULAR_CV, LABELS

#: The first words of the context: what it is and who measured it.
CONTEXT_HEAD = "Measured from the image by the digitiser (not by the model):"
#: What the label of a grounded answer adds to the model's label.
GROUNDED_MARK = "grounded on the digitiser's measurements"
#: Below this confidence a value is not given to the model (it would mislead more than help).
MIN_CONFIDENCE = 0.4
NO_ECG_CONTEXT = f"{CONTEXT_HEAD} no ECG trace could be read on this image."


def _value_text(name: str, m: dict) -> str:
    if name == "rr_regularity":
        return "irregular" if m["value"] > IRREGULAR_CV else "regular"
    return f"{m['value']:.0f} {m.get('unit') or ''}".strip()


def measurement_context(measurements: dict | None, *, found_ecg: bool = True) -> str:
    """One line of marked context: each measurement with its lead and confidence, its range
    flag, or "not measurable" (values under :data:`MIN_CONFIDENCE` count as not measurable)."""
    if not found_ecg or not measurements:
        return NO_ECG_CONTEXT
    parts = []
    for name, m in measurements.items():
        label = LABELS.get(name, name)
        if not label[:2].isupper():                 # "heart rate", but "QRS duration"
            label = label[0].lower() + label[1:]
        if m.get("value") is None or float(m.get("confidence") or 0) < MIN_CONFIDENCE:
            parts.append(f"{label} not measurable")
            continue
        confidence = "high" if m["confidence"] >= 0.7 else "medium"
        flag = f", {m['flag']}" if m.get("flag") else ""
        lead = str(m.get("lead"))
        where = lead if lead.startswith(("median", "leads")) else f"lead {lead}"
        parts.append(f"{label} {_value_text(name, m)} ({where}, {confidence} confidence{flag})")
    return f"{CONTEXT_HEAD} " + "; ".join(parts) + "."


def grounded_question(question: str, context: str | None) -> str:
    """The question as the model gets it: the context, a blank line, then the question."""
    return f"{context}\n\n{question}" if context else question


def split_grounded(text: str) -> tuple[str | None, str]:
    """(context or None, question) of a question :func:`grounded_question` made.

    >>> split_grounded(grounded_question("Rate?", NO_ECG_CONTEXT)) == (NO_ECG_CONTEXT, "Rate?")
    True
    >>> split_grounded("Rate?")
    (None, 'Rate?')
    """
    if text.startswith(CONTEXT_HEAD) and "\n\n" in text:
        context, question = text.split("\n\n", 1)
        return context, question
    return None, text


def grounded_label(label: str) -> str:
    """A model's label for an answer it gave with the measurements as context."""
    return f"{label} · {GROUNDED_MARK}"


def reading_summary(reading) -> dict:
    """What is stored of an :class:`~pulse_app.ecg.reading.EcgReading` (plain JSON):
    its :meth:`~pulse_app.ecg.reading.EcgReading.to_json` and ``"lines"``, the evidence as the
    panel and the report print it."""
    import json

    from pulse_app.ecg.reading import _jsonable

    summary = json.loads(json.dumps(reading.to_json(), default=_jsonable))
    summary["lines"] = reading.summary_lines()
    return summary


def summary_context(summary: dict | None) -> str:
    """:func:`measurement_context` of a stored reading summary."""
    summary = summary or {}
    return measurement_context(summary.get("measurements"),
                               found_ecg=bool(summary.get("found_ecg")))


def read_image(image) -> tuple[object, dict]:
    """Digitise and measure one upright page image (:func:`pulse_app.ecg.reading.read_ecg_image`,
    the one core path): the reading and its summary."""
    from pulse_app.ecg.reading import read_ecg_image

    reading = read_ecg_image(image)
    return reading, reading_summary(reading)
