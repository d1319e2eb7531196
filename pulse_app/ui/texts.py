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

EXAMPLES_NOTE = ("Simulated ECGs drawn by this app's own simulator and renderer "
                 "(`make examples`), clean and photo-like. A deployer can show other pictures: "
                 "set PULSE_EXAMPLES_DIR.")

TEACHING_HELP = ("Choose findings, generate a synthetic 12-lead ECG, discuss it with the model, "
                 "then reveal what was really simulated.")

DECKS_HELP = ("A deck is a lesson's cases: draw them at a difficulty level, or add teaching cases "
              "one by one. **Present** shows them one at a time (large ECG, chat with the model, "
              "Reveal, the model scored against the truth); the handout PDF keeps the answer key "
              "on its last pages. With *Students answer*, students open the class link on their "
              "phones and answer; you see how the class answered after Reveal. Their answers live "
              "only while you present (save them as CSV if you want them).")

CHECK_NOTHING_YET = ("*No answer to score yet: ask the model about this ECG (e.g. a full "
                     "clinical report), then Reveal again to see its answers against the truth.*")

CLASS_LINE = ("**Students:** open [{url}?class={code}](?class={code}) on your phone · class "
              "**{code}** · {answered} answered this case")

STUDENT_TITLE = "### Class {code} · case {number} of {count}\n\nLook at the ECG on the " \
                "presenter's screen and answer; you may change your answers until Reveal."
STUDENT_SENT = "✅ Your answers are in. You may change them until the presenter reveals the case."
STUDENT_CLOSED = "The presenter revealed this case: answers are closed. Wait for the next one."
STUDENT_ENDED = "### This class has ended.\n\nThank you for taking part."

# -- phone: capture, straightening, readability (pulse_app.ui.phone) --

TAKE_PHOTO = "Take a photo"

CAMERA_HELP = ("Hold the camera parallel to the paper, fill the frame with the page, and take the "
               "picture in good light. The picture goes through the same checks as an upload.")

STRAIGHTEN_PROPOSED = ("**Straightening proposed:** {message}. Drag the orange corners onto the "
                       "page's corners if needed, then press *Straighten*, or keep the original.")

STRAIGHT_ALREADY = "*Straightening: {message}.*"

NOTHING_FOUND = ("**Nothing to straighten was found:** {message}. You can still place the "
                 "corners by hand with *Straighten…*.")

STRAIGHTEN_BY_HAND = ("Drag the orange corners onto the page's corners, then press "
                      "*Straighten*.")

STRAIGHTENED = ("**Straightened** ({message}): the model sees the flat page below. "
                "*Straighten…* places the corners again; *Reset* goes back to the photo.")

KEPT = "**Kept as photographed.** *Straighten…* places the corners by hand."

READABILITY = "⚠️ **{message}**: {hint}."

STILL_ASK = "You may still ask; the answer may be less reliable."

ANSWER_DISCLAIMER = "Research tool, not a medical device: answers can be wrong."

EVIDENCE_HELP = ("The digitiser reads the tracing into 12 signals and measures them (lead, "
                 "confidence, flags outside the usual adult range). Grounded answers are given "
                 "these values; every answer that contradicts them is flagged. The digitiser "
                 "can be wrong too: check the overlay.")

#: Signal download formats: kind -> what the link says.
SIGNAL_FORMATS = {"wfdb": "WFDB, zip", "csv": "CSV"}
