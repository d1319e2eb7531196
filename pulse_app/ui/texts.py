"""Words the web app shows: the notice, one-click prompts, help lines. No logic here.

>>> sorted(PROMPTS)[0]
'Axis and intervals'
"""

NOTICE = ("**Research tool, not a medical device.** Answers come from a language model and can be "
          "wrong; never use them alone for a clinical decision.")

UNTRAINED = ("**The model answering here is untrained** (a tiny demonstration model with random "
             "weights): its answers are random text, not a reading of the ECG. Start the app with "
             "`--model PULSE-ECG/PULSE-7B` on a GPU for real answers.")

DEMONSTRATION = ("**The model answering here is a small demonstration model** ({note}). It "
                 "was trained on synthetic ECGs on a CPU and does not reliably read real ECGs. "
                 "Start the app with `--model PULSE-ECG/PULSE-7B` on a GPU for real answers.")

#: One-click prompts: button text -> question sent to the model.
PROMPTS = {
    "Full clinical report": "Please write a complete clinical report for this 12-lead ECG: rhythm, "
                            "rate, axis, intervals, morphology and the final interpretation.",
    "Rhythm": "What is the heart rhythm in this ECG?",
    "Axis and intervals": "What are the QRS axis, the PR, QRS and QT/QTc intervals in this ECG?",
    "Is this normal?": "Is this ECG normal? If not, what are the abnormal findings?",
}

UPLOAD_HELP = ("An ECG image (PNG, JPEG, WebP, TIFF, BMP, HEIC phone photo), a PDF, or a signal "
               "record: WFDB `.hea` together with its `.dat`/`.mat`, or DICOM `.dcm`.")

CROP_HELP = ("Crop: click two opposite corners of the part to keep. Rotate with the buttons and "
             "the slider (tilted photos). Reset starts over from the upload.")

EXAMPLES_NOTE = ("Simulated ECGs drawn by this app's own simulator and renderer (`make examples`), "
                 "clean and photo-like. A deployer can show other pictures: set PULSE_EXAMPLES_DIR.")

TEACHING_HELP = ("Choose findings, generate a synthetic 12-lead ECG, discuss it with the model, "
                 "then reveal what was really simulated.")

EVIDENCE_HELP = ("The digitiser reads the tracing into 12 signals and measures them (lead, "
                 "confidence, flags outside the usual adult range). Grounded answers are given "
                 "these values; every answer that contradicts them is flagged. The digitiser "
                 "can be wrong too: check the overlay.")

#: Signal download formats: kind -> what the link says.
SIGNAL_FORMATS = {"wfdb": "WFDB, zip", "csv": "CSV"}
