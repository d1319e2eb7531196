"""The phone-first parts of the web app: taking the photo, straightening it, and saying when it
cannot be read.

- **Capture.** A *Take a photo* button whose file input asks phones for the rear camera
  (``capture="environment"``, set by :mod:`pulse_app.ui.style`'s script), and a *Camera* tab with
  the browser's webcam where it offers one. Both go through the upload handler
  (:meth:`pulse_app.ui.handlers.PulseUI.upload`): the same intake (EXIF, metadata stripped,
  limits), and the file is deleted from Gradio's cache once read (a webcam frame is uploaded
  like any file; :class:`~pulse_app.ui.components.CameraImage` hands its path over
  without opening it).
- **Straightening, proposed and never forced.** After every new picture :meth:`PhoneUI.check`
  asks the core (:meth:`pulse_app.chat.ChatService.check_draft`) for a proposal and the
  readability findings, from one look. When straightening would change the picture, the
  original is shown in the corner editor (:mod:`pulse_app.ui.corners`) with the page outline;
  *Straighten* stores the corners (as proposed, or as dragged) as the draft's edit, *Keep
  original* leaves the picture as it is. *Straighten…* under the picture reopens the corners
  at any time (the whole picture when nothing was found). The fine angle, quarter turns and
  crop still apply after straightening.
- **Readability.** The findings are shown as warnings with what to do; asking stays possible.

The page's state is still only ``view`` (ids and the draft edit); proposals and findings stay
with the draft in the core.
"""

from __future__ import annotations

import base64
import binascii
from types import SimpleNamespace

import gradio as gr

from pulse_app.errors import ImageRejected
from pulse_app.intake import NO_EDIT
from pulse_app.ui import texts
from pulse_app.ui.components import CameraImage
from pulse_app.ui.corners import corner_editor, corner_update, whole_picture
from pulse_app.ui.guard import guarded
from pulse_app.ui.handlers import EMPTY_VIEW

#: Picture types the Take-a-photo button accepts (phones then offer their camera).
PHOTO_TYPES = ["image"]


# -- layout ---------------------------------------------------------------------------------------

def build_take_photo() -> gr.UploadButton:
    """The Take-a-photo button (inside the Upload tab, above the file box)."""
    return gr.UploadButton(texts.TAKE_PHOTO, file_types=PHOTO_TYPES, file_count="single",
                           type="filepath", variant="primary", elem_id="capture")


def build_camera() -> CameraImage:
    """The webcam (inside a Camera tab): the rear camera where there is one, not mirrored."""
    camera = CameraImage(sources=["webcam"], type="filepath", label="Camera",
                         webcam_options=gr.WebcamOptions(
                             mirror=False, constraints={"video": {
                                 "facingMode": "environment",
                                 "width": {"ideal": 1920}, "height": {"ideal": 1080}}}),
                         elem_id="webcam")
    gr.Markdown(texts.CAMERA_HELP)
    return camera


def build_check_note() -> gr.Markdown:
    """What was found about the picture (straightening, readability), above it."""
    return gr.Markdown(visible=False, elem_id="picture-check")


def build_straighten_card() -> SimpleNamespace:
    """The proposal over the original, with Straighten / Keep original (hidden until needed)."""
    card = SimpleNamespace()
    with gr.Column(visible=False, elem_id="straighten") as card.box:
        card.editor = corner_editor(elem_id="corners")
        with gr.Row(elem_id="straighten-buttons"):
            card.accept = gr.Button("Straighten", variant="primary", elem_id="straighten-accept")
            card.keep = gr.Button("Keep original", elem_id="straighten-keep")
    return card


def build_adjust_button() -> gr.Button:
    """Straighten… (under the picture): place the corners again."""
    return gr.Button("Straighten…", size="sm", elem_id="straighten-adjust")


# -- handlers -------------------------------------------------------------------------------------

def check_markdown(check, decided: str | None = None) -> str:
    """The note above the picture for a :class:`pulse_app.readability.PictureCheck`:
    the proposal (or what was ``decided``: ``"straightened"``, ``"kept"``), then the
    readability findings with what to do."""
    proposal = check.proposal
    if decided == "straightened":
        lines = [texts.STRAIGHTENED.format(
            message=proposal.message if proposal.found else "corners placed by hand")]
    elif decided == "kept":
        lines = [texts.KEPT]
    elif proposal.changes:
        lines = [texts.STRAIGHTEN_PROPOSED.format(message=proposal.message)]
    elif proposal.found:
        lines = [texts.STRAIGHT_ALREADY.format(message=proposal.message)]
    else:
        lines = [texts.NOTHING_FOUND.format(message=proposal.message)]
    lines += [texts.READABILITY.format(message=f.message[:1].upper() + f.message[1:],
                                       hint=f.hint) for f in check.findings]
    if check.findings:
        lines.append(texts.STILL_ASK)
    return "\n\n".join(lines)


class PhoneUI:
    """Handlers of the capture inputs and the straightening card, on the app's
    :class:`~pulse_app.ui.handlers.PulseUI` (its owner, its core)."""

    def __init__(self, ui):
        self.ui = ui
        self.chat = ui.chat

    @guarded
    def take_photo(self, file, request: gr.Request):
        """The Take-a-photo button: an upload like any other."""
        return self.ui.upload([file] if file else [], 1, request)

    @guarded
    def from_webcam(self, frame, request: gr.Request):
        """A webcam frame: uploaded as a file (read, then deleted from Gradio's cache); a
        ``data:`` URL is decoded here. The webcam is cleared (back to its live view)."""
        if isinstance(frame, str) and frame.startswith("data:"):
            try:
                data = base64.b64decode(frame.split(",", 1)[1], validate=True)
            except (IndexError, binascii.Error) as error:
                raise ImageRejected("the camera sent no picture",
                                    hint="take the photo again") from error
            owner = self.ui.owner(request)
            draft = self.chat.open_upload(owner, [("camera.png", data)])
            return (*self.ui.show_draft(draft), None)
        return (*self.ui.upload([frame] if frame else [], 1, request), None)

    @guarded
    def check(self, view, request: gr.Request):
        """After a new picture: the note (proposal, readability), and the corner editor over
        the original when straightening would change it (the picture and its tools hidden
        meanwhile)."""
        view = view or EMPTY_VIEW
        if not view.get("draft"):
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        owner = self.ui.owner(request)
        check = self.chat.check_draft(owner, view["draft"])
        note = gr.update(value=check_markdown(check), visible=True)
        if not check.proposal.changes:
            return note, gr.update(visible=False), gr.skip(), gr.update(visible=True)
        editor = corner_update(self.chat.draft_original(owner, view["draft"]),
                               check.proposal.corners)
        return note, gr.update(visible=True), editor, gr.update(visible=False)

    @guarded
    def adjust(self, view, request: gr.Request):
        """Straighten…: the corners on the original again: the current straightening, else the
        proposal, else the whole picture. A stored session's picture is reopened as a draft
        (its conversation stays until the picture is changed)."""
        owner = self.ui.owner(request)
        view = view or EMPTY_VIEW
        draft_id = view.get("draft")
        if draft_id is None and view.get("session"):
            draft = self.chat.new_chat(owner, view["session"])
            draft_id, view = draft.id, {**view, "draft": draft.id, "edit": draft.edit}
        if draft_id is None:
            gr.Warning("Upload an ECG first.")
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        check = self.chat.check_draft(owner, draft_id)
        original = self.chat.draft_original(owner, draft_id)
        corners = (view["edit"].get("corners")
                   or (check.proposal.corners if check.proposal.found else None)
                   or whole_picture(original.size))
        note = check_markdown(check) if check.proposal.found else texts.STRAIGHTEN_BY_HAND
        return (view, gr.update(value=note, visible=True), gr.update(visible=True),
                corner_update(original, corners), gr.update(visible=False))

    @guarded
    def accept(self, view, corners, request: gr.Request):
        """Straighten: the corners shown (proposed or dragged) become the draft's edit; the
        quarter turns, fine angle and crop start over."""
        owner = self.ui.owner(request)
        view = view or EMPTY_VIEW
        if not view.get("draft"):
            gr.Warning("Upload an ECG first.")
            return (gr.skip(),) * 7
        draft_id = view["draft"]
        edit = self.chat.straightening_edit(owner, draft_id, corners)
        picture, view, history = self.ui._edited(owner, view, edit)
        note = check_markdown(self.chat.check_draft(owner, draft_id), "straightened")
        return (picture, view, history, gr.update(visible=False), gr.update(visible=True),
                gr.update(value=0.0), gr.update(value=note, visible=True))

    @guarded
    def keep(self, view, request: gr.Request):
        """Keep original: the card closes; a straightened picture goes back to the original."""
        owner = self.ui.owner(request)
        view = view or EMPTY_VIEW
        if not view.get("draft"):
            return (gr.skip(),) * 3 + (gr.update(visible=False), gr.update(visible=True),
                                       gr.skip(), gr.skip())
        note = gr.update(value=check_markdown(self.chat.check_draft(owner, view["draft"]),
                                              "kept"), visible=True)
        if not (view.get("edit") or {}).get("corners"):
            return (gr.skip(),) * 3 + (gr.update(visible=False), gr.update(visible=True),
                                       gr.skip(), note)
        picture, view, history = self.ui._edited(owner, view, dict(NO_EDIT))
        return (picture, view, history, gr.update(visible=False), gr.update(visible=True),
                gr.update(value=0.0), note)

    @staticmethod
    def close():
        """Another picture is shown (a reopened session): no card, no note."""
        return gr.update(visible=False), gr.update(visible=False), gr.update(visible=True)


# -- wiring ---------------------------------------------------------------------------------------

def wire(p: SimpleNamespace, ui, new_picture_events: list, image_outputs: list, view,
         picture, chatbot, angle, private: dict, then: dict | None = None) -> None:
    """Events of the capture inputs and the card. ``p``: ``take_photo``, ``camera``, ``note``,
    ``card`` (:func:`build_straighten_card`), ``tools`` (the picture and its edit controls),
    ``adjust``, ``reopened`` (events that show a stored session's picture);
    ``new_picture_events``: the events that make a new draft (each is followed by the check);
    ``then``: an event (keyword arguments of ``.then``) that follows every new picture and
    every decided straightening (the evidence reading)."""
    phone = PhoneUI(ui)
    checked = [p.note, p.card.box, p.card.editor, p.tools]
    new_picture_events = [*new_picture_events,
                          p.take_photo.upload(phone.take_photo, [p.take_photo], image_outputs,
                                              **private),
                          p.camera.upload(phone.from_webcam, [p.camera],
                                          [*image_outputs, p.camera], **private)]
    for event in new_picture_events:
        event.success(phone.check, [view], checked, **private)
        if then:
            event.then(**then)
    for event in p.reopened:
        event.then(phone.close, None, [p.note, p.card.box, p.tools], **private)
    p.adjust.click(phone.adjust, [view], [view, p.note, p.card.box, p.card.editor, p.tools],
                   **private)
    decided = [picture, view, chatbot, p.card.box, p.tools, angle, p.note]
    accepted = p.card.accept.click(phone.accept, [view, p.card.editor], decided, **private)
    kept = p.card.keep.click(phone.keep, [view], decided, **private)
    for event in (accepted, kept) if then else ():
        event.then(**then)
