"""The teaching panel: pick findings, generate a synthetic ECG (simulator + renderer), discuss it
with the model, then reveal the ground truth (labels and measurements).

The ground truth stays on the server until "Reveal" is pressed, so it is not in the page a
student is looking at: it rides in the page's session state under :data:`TRUTH_KEY` and is saved
in the stored session's params when the first question creates it, so a reopened teaching
session can still be revealed.

>>> findings_from_controls(110, "afib", "none", 160, "rbbb", "left", "inferior", 0.2, [],
...                        False, False, False)["st"]
{'inferior': 0.2}
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import gradio as gr

RHYTHMS = [("Sinus", "sinus"), ("Sinus arrhythmia", "sinus_arrhythmia"),
           ("Atrial fibrillation", "afib"), ("Atrial flutter", "aflutter")]
ECTOPY = [("None", "none"), ("Premature ventricular (PVCs)", "pvc"),
          ("Premature atrial (PACs)", "pac")]
QRS = [("Normal", "normal"), ("Right bundle branch block", "rbbb"),
       ("Left bundle branch block", "lbbb")]
AXES = [("Normal", "normal"), ("Left deviation", "left"), ("Right deviation", "right")]
TERRITORIES = [("None", "none"), ("Inferior (II, III, aVF)", "inferior"),
               ("Anterior (V1-V4)", "anterior"), ("Lateral (I, aVL, V5, V6)", "lateral")]
DISTORTIONS = [("Clean printout", "none"), ("Phone photo", "photo"), ("All artefacts", "all")]
MEASUREMENT_NAMES = {"heart_rate_bpm": ("Heart rate", "bpm"), "pr_ms": ("PR", "ms"),
                     "qrs_ms": ("QRS", "ms"), "qt_ms": ("QT", "ms"), "qtc_ms": ("QTc", "ms"),
                     "axis_deg": ("Axis", "°")}
#: Key of the ground truth in the page's session state and in the stored session's params.
TRUTH_KEY = "teaching_truth"
HIDDEN = "*Ground truth hidden: discuss the ECG with the model, then press Reveal.*"


def findings_from_controls(rate, rhythm, ectopy, pr_ms, qrs, axis, st_territory, st_mv,
                           t_inversion, qt_long, low_voltage, lvh) -> dict:
    """The simulator's ``Findings`` (as a dict) from the panel's controls."""
    st = {st_territory: round(float(st_mv), 3)} if st_territory != "none" and st_mv else {}
    return {"rate_bpm": float(rate), "rhythm": rhythm,
            "ectopy": None if ectopy == "none" else ectopy, "pr_ms": float(pr_ms),
            "qrs": qrs, "axis": axis, "st": st, "t_inversion": list(t_inversion or []),
            "qt_long": bool(qt_long), "low_voltage": bool(low_voltage), "lvh": bool(lvh)}


def truth_markdown(truth: dict | None) -> str:
    """Ground truth as a short list a teacher reads out."""
    if not truth:
        return "Generate an ECG first."
    labels = truth.get("labels") or ["(no labelled finding)"]
    lines = ["**Simulated findings:** " + ", ".join(labels), ""]
    for key, value in (truth.get("measurements") or {}).items():
        name, unit = MEASUREMENT_NAMES.get(key, (key, ""))
        shown = "—" if value is None else f"{value:.0f} {unit}".strip()
        lines.append(f"- {name}: {shown}")
    return "\n".join(lines)


def truth_of(record) -> dict:
    """A simulated record's ground truth, JSON-able: labels, measurements (ms, bpm, degrees; None
    where not defined) and the requested findings.

    >>> from pulse_app.ecg.simulate import Findings, ecg_simulate
    >>> sorted(truth_of(ecg_simulate(Findings(), seed=0)))
    ['findings', 'labels', 'measurements']
    """
    return {"labels": [str(label) for label in record.labels],
            "measurements": {str(k): None if v is None else float(v)
                             for k, v in record.measurements.items()},
            "findings": json.loads(json.dumps(record.findings, default=float))}


def reveal(session: dict | None) -> str:
    """The Reveal button: the ground truth of the page's (or the reopened) teaching session."""
    return truth_markdown((session or {}).get(TRUTH_KEY))


def hidden_note(session: dict | None) -> str:
    """What the truth box shows until Reveal: a hint for a teaching session, else nothing."""
    return HIDDEN if (session or {}).get(TRUTH_KEY) else ""


def build_panel() -> SimpleNamespace:
    """The controls (inside the caller's Tab)."""
    from pulse_app.ui import texts

    p = SimpleNamespace()
    gr.Markdown(texts.TEACHING_HELP)
    with gr.Row():
        p.rate = gr.Slider(30, 180, value=75, step=1, label="Rate (bpm)", elem_id="teach-rate")
        p.rhythm = gr.Dropdown(RHYTHMS, value="sinus", label="Rhythm", elem_id="teach-rhythm")
    with gr.Row():
        p.ectopy = gr.Dropdown(ECTOPY, value="none", label="Ectopic beats")
        p.pr = gr.Slider(100, 400, value=160, step=10, label="PR interval (ms; >200 = "
                         "first-degree AV block)")
    with gr.Row():
        p.qrs = gr.Dropdown(QRS, value="normal", label="QRS / conduction")
        p.axis = gr.Dropdown(AXES, value="normal", label="Axis")
    with gr.Row():
        p.st_territory = gr.Dropdown(TERRITORIES, value="none", label="ST shift territory")
        p.st_mv = gr.Slider(-0.4, 0.4, value=0.2, step=0.05,
                            label="ST shift (mV; + elevation, - depression)")
    p.t_inversion = gr.CheckboxGroup([t for t in TERRITORIES if t[1] != "none"],
                                     label="T-wave inversion")
    with gr.Row():
        p.qt_long = gr.Checkbox(label="Long QT")
        p.low_voltage = gr.Checkbox(label="Low QRS voltage")
        p.lvh = gr.Checkbox(label="LV hypertrophy (voltage)")
    with gr.Row():
        p.distort = gr.Dropdown(DISTORTIONS, value="none", label="Picture")
        p.seed = gr.Number(value=0, precision=0, label="Seed")
    with gr.Row():
        p.generate = gr.Button("Generate ECG", variant="primary", elem_id="teach-generate")
        p.reveal = gr.Button("Reveal ground truth", elem_id="teach-reveal")
    p.truth_view = gr.Markdown(elem_id="teach-truth")
    return p


def generate(rate, rhythm, ectopy, pr_ms, qrs, axis, st_territory, st_mv, t_inversion, qt_long,
             low_voltage, lvh, distort, seed):
    """A rendered synthetic ECG and its ground truth."""
    from pulse_app.ecg.render import render_ecg
    from pulse_app.ecg.simulate import Findings, ecg_simulate

    findings = Findings(**findings_from_controls(rate, rhythm, ectopy, pr_ms, qrs, axis,
                                                 st_territory, st_mv, t_inversion, qt_long,
                                                 low_voltage, lvh))
    seed = int(seed or 0)
    record = ecg_simulate(findings, seed=seed, noise_mV=0.01)
    image = render_ecg(record, distort=distort, seed=seed).image
    return image, truth_of(record)


def wire(p: SimpleNamespace, ui, image_outputs: list, session, private: dict) -> None:
    """Generate fills the shared picture and starts a new chat that carries the truth (in
    ``session``); Reveal shows the truth of the session on the page."""
    from pulse_app.errors import PulseError

    def on_generate(*controls):
        try:
            image, truth = generate(*controls)
        except PulseError as error:
            raise gr.Error(str(error), print_exception=False) from None
        outputs = ui.show_image(image, session={"id": None, TRUTH_KEY: truth})
        return (*outputs, gr.update(value=HIDDEN))

    controls = [p.rate, p.rhythm, p.ectopy, p.pr, p.qrs, p.axis, p.st_territory, p.st_mv,
                p.t_inversion, p.qt_long, p.low_voltage, p.lvh, p.distort, p.seed]
    p.generate.click(on_generate, controls, [*image_outputs, p.truth_view], **private)
    p.reveal.click(reveal, [session], p.truth_view, queue=False, **private)
