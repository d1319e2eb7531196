"""The teaching panel's controls: pick findings, generate a synthetic ECG, reveal its truth.

The simulation, the page and the ground truth are the core's (:mod:`pulse_app.teaching`,
:meth:`pulse_app.chat.ChatService.open_teaching_case`); the truth never reaches the page until
Reveal is pressed. This module only lays out the controls and maps them to findings.

>>> findings_from_controls(110, "afib", "none", 160, "rbbb", "left", "inferior", 0.2, [],
...                        False, False, False)["st"]
{'inferior': 0.2}
"""

from __future__ import annotations

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


def findings_from_controls(rate, rhythm, ectopy, pr_ms, qrs, axis, st_territory, st_mv,
                           t_inversion, qt_long, low_voltage, lvh) -> dict:
    """The simulator's ``Findings`` (as a dict) from the panel's controls."""
    st = {st_territory: round(float(st_mv), 3)} if st_territory != "none" and st_mv else {}
    return {"rate_bpm": float(rate), "rhythm": rhythm,
            "ectopy": None if ectopy == "none" else ectopy, "pr_ms": float(pr_ms),
            "qrs": qrs, "axis": axis, "st": st, "t_inversion": list(t_inversion or []),
            "qt_long": bool(qt_long), "low_voltage": bool(low_voltage), "lvh": bool(lvh)}


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


def wire(p: SimpleNamespace, ui, image_outputs: list, view, private: dict,
         then: dict | None = None) -> None:
    """Generate fills the shared picture with a new teaching draft (then runs the ``then``
    event, e.g. the evidence reading); Reveal asks the core for the truth of what is shown."""

    def on_generate(rate, rhythm, ectopy, pr_ms, qrs, axis, st_territory, st_mv,
                    t_inversion, qt_long, low_voltage, lvh, distort, seed,
                    request: gr.Request):
        findings = findings_from_controls(rate, rhythm, ectopy, pr_ms, qrs, axis, st_territory,
                                          st_mv, t_inversion, qt_long, low_voltage, lvh)
        return ui.teaching_case(findings, distort, seed, request)

    controls = [p.rate, p.rhythm, p.ectopy, p.pr, p.qrs, p.axis, p.st_territory, p.st_mv,
                p.t_inversion, p.qt_long, p.low_voltage, p.lvh, p.distort, p.seed]
    event = p.generate.click(on_generate, controls, [*image_outputs, p.truth_view], **private)
    if then:
        event.then(**then)
    p.reveal.click(ui.reveal, [view], p.truth_view, **private)
