"""The chat service: the one owner of drafts and stored sessions, for the web app and its API.

A visitor's ECG goes through two stages:

1. a *draft*: the upload read once through :func:`pulse_app.intake.load_upload` (or a teaching
   case drawn by :mod:`pulse_app.teaching`), kept in memory with its edit (rotate, crop) while
   the visitor looks at it; nothing is stored yet;
2. a *stored session*: the first question stores the original and the edited image with the
   edit and its source in ONE transaction (:meth:`ChatService.start_session`); every answer is
   then committed as one turn the moment it ends, so a crash loses at most the answer being
   written. Stored images never change: editing a stored session's picture, or "new chat",
   makes a new draft from it (:meth:`ChatService.new_chat`).

Exports (:meth:`ChatService.prepare_export`) are PDFs made in the export process and kept in
the database for their owner: taken once (:meth:`ChatService.take_export`, by any replica),
gone after ``settings.export_ttl_s`` or when their session is deleted. Nothing of a visitor is
written outside the database.

Several replicas of the app on one PostgreSQL database behave as one: sessions, turns and
exports live in the database, and one answer at a time per session is a lease in the database
(:data:`ANSWER_LEASE_S`, renewed while the answer is written, lapsing if its replica dies), not
a lock of this process. Drafts stay in the memory of the replica that decoded the upload: the
page's events reach that replica (a load balancer in front of Gradio keeps each page on one
replica, as Gradio's queue needs), and another replica says "upload the ECG again".

The digitiser reads a picture once (:mod:`pulse_app.grounding`, :mod:`pulse_app.ecg.reading`):
a draft's when the page shows its evidence (:meth:`ChatService.read_draft`, kept with the draft
and stored with the session it becomes), a session's the first time it is needed
(:meth:`ChatService.reading`: a grounded question, the evidence panel, a signals download),
then stored (summary JSON + overlay PNG). Every answer is checked against it
(:mod:`pulse_app.consistency`) as it is stored, or, written before the reading, when the reading
is stored; a grounded answer gets it as marked context and says so in its label.

Answers come from :func:`pulse_app.answer.stream_answer`, the path every entry point shares.
:meth:`ChatService.ask` is a generator of text chunks; its return value is the stored
:class:`~pulse_app.store.TurnRecord`. Stop it with the ``cancel`` event or by closing it (what
Gradio does on Stop): the partial answer is stored with ``stopped=True``. A backend error
propagates and stores nothing for that question; earlier turns are untouched.

>>> chat = ChatService(Settings.load())                                     # doctest: +SKIP
>>> draft = chat.open_upload("user:ana", ["ecg.jpg"])                       # doctest: +SKIP
>>> session = chat.start_session("user:ana", draft.id, {"rotate90": 1})     # doctest: +SKIP
>>> for chunk in chat.ask("user:ana", session.id, "What is the rhythm?"):   # doctest: +SKIP
...     print(chunk, end="")
"""

from __future__ import annotations

import io
import secrets
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from PIL import Image

from pulse_app.answer import check_flag, check_question, check_text, stream_answer
from pulse_app.consistency import check_answer
from pulse_app.conversation import Turn
from pulse_app.errors import PulseError, SessionNotFound
from pulse_app.grounding import grounded_label, read_image, summary_context
from pulse_app.intake import (  # noqa: F401 - NO_EDIT, clean_edit re-exported for the UI
    NO_EDIT,
    Limits,
    UploadFile,
    apply_edit,
    clean_edit,
    load_upload,
    png_bytes,
    read_files,
)
from pulse_app.memory import BYTES_PER_PIXEL, return_freed_memory
from pulse_app.settings import Settings
from pulse_app.store import (
    TITLE_MAX,
    ExportRecord,
    ReadingRecord,
    SessionRecord,
    SessionSummary,
    Store,
    TurnRecord,
)

if TYPE_CHECKING:
    from pulse_app.decks import Deck
    from pulse_app.engine.backend import Backend, ModelInfo
    from pulse_app.teaching import Case
    from pulse_app.readability import PictureCheck

#: Full readings (signals, page and overlay images) kept in memory for the signal downloads
#: (each holds two page-sized images: few; an older session's signals are read again).
READINGS_KEPT = 2
#: Signal downloads: WFDB (zip of .hea + .dat + the reading's JSON) or CSV.
SIGNAL_KINDS = ("wfdb", "csv")
#: Entries of a stored session's params that belong to the ECG itself, so a new chat or an edit
#: of it keeps them (a teaching case's ground truth).
CARRIED = ("teaching_truth",)
#: Seconds an answer's lease on its session lasts without renewal; it is renewed every third of
#: that while the answer is written, so another answer can start this long after its replica
#: died (on SQLite, one process, a restart frees it at once).
ANSWER_LEASE_S = 30.0


class SessionBusy(PulseError):
    """An answer is already being written for this session."""


class DraftExpired(PulseError):
    """The draft (an upload not yet asked about) is gone: too old, or the server restarted."""


@dataclass
class Draft:
    """An ECG being looked at before its first question: the clean original, where it came
    from, and what belongs to it (e.g. a teaching case's truth)."""

    id: str
    owner: str
    image: Image.Image
    source: dict
    title: str
    extra: dict = field(default_factory=dict)
    edit: dict = field(default_factory=lambda: dict(NO_EDIT))
    created: float = field(default_factory=time.monotonic)
    #: the uploaded files of a multi-page PDF, so another page can be opened after the upload
    #: itself is deleted (in memory only, like the draft)
    files: list[tuple[str, bytes]] | None = None
    #: the straightening proposal and readability findings, once looked for (check_draft)
    check: "PictureCheck | None" = None
    #: the digitiser's reading of the picture with ``edit`` (``(edit, EcgReading, summary)``)
    reading: tuple | None = None
    #: the session this draft last became (a reading finished later is stored with it)
    session_id: str | None = None

    @property
    def nbytes(self) -> int:
        read = 2 * image_bytes(self.reading[1].overlay) if self.reading else 0  # + page copy
        return image_bytes(self.image) + sum(len(data) for _, data in self.files or ()) + read


def image_bytes(image: Image.Image) -> int:
    """Memory a decoded image holds (Pillow keeps 4 bytes a pixel for RGB)."""
    return image.width * image.height * BYTES_PER_PIXEL


class Drafts:
    """Drafts by id, scoped to their owner; the oldest go first when there are more than
    ``max_count`` or their images hold more than ``max_bytes`` or they are older than
    ``max_age_s``."""

    def __init__(self, max_count: int = 256, max_bytes: int = 512_000_000,
                 max_age_s: float = 6 * 3600):
        self.max_count, self.max_bytes, self.max_age_s = max_count, max_bytes, max_age_s
        self._items: OrderedDict[str, Draft] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, draft: Draft) -> Draft:
        with self._lock:
            self._items[draft.id] = draft
            self._trim()
        return draft

    def get(self, owner: str, draft_id: str | None) -> Draft:
        with self._lock:
            draft = self._items.get(str(draft_id or ""))
            if draft is None or draft.owner != owner:
                raise DraftExpired("this picture is no longer open (the page was left too long "
                                   "or the server restarted)", hint="upload the ECG again")
            self._items.move_to_end(draft.id)
            return draft

    def drop(self, draft_id: str | None) -> None:
        with self._lock:
            self._items.pop(str(draft_id or ""), None)

    def _trim(self) -> None:
        now = time.monotonic()
        for key in [k for k, d in self._items.items() if now - d.created > self.max_age_s]:
            del self._items[key]
        while len(self._items) > 1 and (
                len(self._items) > self.max_count
                or sum(d.nbytes for d in self._items.values()) > self.max_bytes):
            self._items.popitem(last=False)


class ChatService:
    """Drafts, sessions and streamed answers for many owners at once (thread-safe).

    ``store`` defaults to ``Store.from_settings(settings)``; ``backend`` to the one
    ``settings.backend`` names, made on first use (so the app starts before the model loads).
    Decoded images kept in memory stay within ``settings.image_memory_mb``: open drafts at
    most half of it, the cache of edited images that saves a PNG decode per answer an eighth.
    """

    def __init__(self, settings: Settings, store: Store | None = None,
                 backend: "Backend | None" = None,
                 progress: Callable[[str], None] | None = None):
        self.settings = settings
        self.store = store if store is not None else Store.from_settings(settings)
        budget = int(settings.image_memory_mb) * 1_000_000
        self.drafts = Drafts(max_bytes=budget // 2)
        self.image_cache_bytes = budget // 8
        self._backend = backend
        self._progress = progress
        self._backend_lock = threading.Lock()
        self._images: OrderedDict[str, Image.Image] = OrderedDict()
        self._images_lock = threading.Lock()
        # the digitiser's readings (signals included) of recent sessions, and one lock per
        # session so that a session's image is read once however many ask at the same time
        self._readings: OrderedDict[str, object] = OrderedDict()
        self._reading_locks: dict[str, threading.Lock] = {}
        self._readings_lock = threading.Lock()

    # -- the model ---------------------------------------------------------------------------------

    @property
    def backend(self) -> "Backend":
        """The model backend, created on first use."""
        if self._backend is None:
            with self._backend_lock:
                if self._backend is None:
                    from pulse_app.engine import make_backend

                    self._backend = make_backend(self.settings, progress=self._progress)
        return self._backend

    def model_info(self) -> "ModelInfo":
        """Which model answers (the UI shows its label before the first answer)."""
        return self.backend.info()

    # -- drafts: a picture before its first question ----------------------------------------------

    def open_upload(self, owner: str, files: UploadFile | list[UploadFile], *,
                    page: int = 1) -> Draft:
        """Read an upload (image, PDF page, WFDB or DICOM record) once, as a new draft. A PDF
        of several pages keeps its file in the draft, for :meth:`open_page`."""
        limits = Limits.from_settings(self.settings)
        upload = load_upload(files, limits, page=page)
        stem = Path(upload.filename).stem or "ECG"
        title = (f"{stem} (page {upload.page} of {upload.pages})" if upload.pages > 1
                 else stem)
        draft = self._new_draft(owner, upload.image, upload.describe(), title)
        if upload.pages > 1:
            draft.files = read_files(files, limits)
        return draft

    def open_page(self, owner: str, draft_id: str, page: int) -> Draft:
        """Another page of a draft's PDF, as a new draft."""
        draft = self.drafts.get(owner, draft_id)
        if not draft.files:
            raise PulseError("this picture has a single page",
                             hint="upload a PDF to choose among its pages")
        return self.open_upload(owner, draft.files, page=page)

    def open_teaching_case(self, owner: str, findings: dict, *, distort: str = "none",
                          seed: int = 0) -> Draft:
        """A simulated ECG with ``findings`` as a new draft; its ground truth stays with it,
        its code (``source["case"]``) opens the same page for anyone."""
        from pulse_app.teaching import Case

        return self.open_case(owner, Case.make(findings, seed=int(seed), distort=distort))

    def open_case(self, owner: str, case: "Case | str") -> Draft:
        """A teaching case (a :class:`~pulse_app.teaching.Case` or its code) as a new draft."""
        from pulse_app.teaching import TRUTH_KEY, Case, case_page

        case = Case.from_code(case) if isinstance(case, str) else case
        image, truth = case_page(case)
        return self._new_draft(owner, image, {"filename": None, "format": "simulated",
                                              "page": 1, "pages": 1, "seed": case.seed,
                                              "distort": case.distort, "case": case.code},
                               "Teaching ECG", {TRUTH_KEY: truth})

    def new_chat(self, owner: str, session_id: str) -> Draft:
        """A draft on a stored session's picture (new chat, or editing a stored picture): it
        keeps the edit and what belongs to the ECG (:data:`CARRIED`)."""
        session = self.store.get_session(owner, session_id, turns=False)
        image = Image.open(io.BytesIO(session.original_png)).convert("RGB")
        params = session.params or {}
        draft = self._new_draft(owner, image, dict(params.get("source") or {}), session.title,
                                {k: params[k] for k in CARRIED if params.get(k) is not None})
        draft.edit = clean_edit(params.get("edit"))
        return draft

    def preview(self, owner: str, draft_id: str, edit: dict | None) -> Image.Image:
        """The draft's picture with ``edit`` applied (what the model will see); the edit is
        remembered with the draft."""
        draft = self.drafts.get(owner, draft_id)
        image = apply_edit(draft.image, edit)
        draft.edit = clean_edit(edit)
        return image

    def draft_original(self, owner: str, draft_id: str) -> Image.Image:
        """A draft's picture as uploaded (before its edit)."""
        return self.drafts.get(owner, draft_id).image

    def check_draft(self, owner: str, draft_id: str) -> "PictureCheck":
        """What to tell the user about a draft's picture before the first question: the
        straightening proposal and the readability findings, from one look at the original
        (:func:`pulse_app.readability.check_picture`), remembered with the draft."""
        from pulse_app.readability import check_picture   # numpy + OpenCV: on first use

        draft = self.drafts.get(owner, draft_id)
        if draft.check is None:
            draft.check = check_picture(draft.image)
        return draft.check

    def straightening_edit(self, owner: str, draft_id: str, corners=None) -> dict:
        """The edit that straightens a draft's picture: to the proposal's corners (``None``;
        no edit when nothing was found or the page is already straight), or to ``corners``
        (TL, TR, BR, BL in original pixels, e.g. dragged by the user). Corners that are the
        proposal's or the current edit's keep their flat page size; others get theirs from
        their sides (:func:`pulse_app.straighten.flat_size`)."""
        from pulse_app.straighten import flat_size

        proposal = self.check_draft(owner, draft_id).proposal
        if corners is None:
            return clean_edit(proposal.edit() if proposal.changes else None)
        corners = clean_edit({"corners": corners})["corners"]
        for known in (clean_edit(proposal.edit()), self.drafts.get(owner, draft_id).edit):
            if known["corners"] and known["page_size"] and all(
                    abs(a - b) <= 0.5 for p, q in zip(known["corners"], corners)
                    for a, b in zip(p, q)):
                return clean_edit({"corners": corners, "page_size": known["page_size"]})
        return clean_edit({"corners": corners, "page_size": flat_size(corners)})

    def _new_draft(self, owner: str, image: Image.Image, source: dict, title: str,
                   extra: dict | None = None) -> Draft:
        _check_owner(owner)
        return self.drafts.add(Draft(id=secrets.token_urlsafe(12), owner=owner, image=image,
                                     source=source, title=title, extra=dict(extra or {})))

    # -- stored sessions ---------------------------------------------------------------------------

    def start_session(self, owner: str, draft_id: str, edit: dict | None = None, *,
                      title: str | None = None) -> SessionRecord:
        """Store a draft as a session: original and edited image, the edit, its source and
        extras, in one transaction. ``edit`` None = the draft's last previewed edit."""
        draft = self.drafts.get(owner, draft_id)
        edit = clean_edit(draft.edit if edit is None else edit)
        edited = apply_edit(draft.image, edit)
        original_png = png_bytes(draft.image)
        edited_png = original_png if edited is draft.image else png_bytes(edited)
        model_id, revision = self._session_model()
        title = title or f"{draft.title} · {datetime.now():%Y-%m-%d %H:%M}"
        session = self.store.create_session(
            owner, title=title, model_id=model_id, model_revision=revision,
            original_png=original_png, edited_png=edited_png,
            params={"source": draft.source, "edit": edit,
                    "generation": self.settings.generation_params().as_dict(), **draft.extra})
        self._remember_image(session.id, edited)
        draft.session_id = session.id if edit == clean_edit(draft.edit) else None
        if draft.reading is not None and draft.reading[0] == edit:   # read while looked at
            self._store_reading(owner, session.id, draft.reading[1], draft.reading[2])
        return_freed_memory()                       # the PNG encodes' buffers
        return session

    def start_session_from_upload(self, owner: str, files: UploadFile | list[UploadFile], *,
                                  page: int = 1, title: str | None = None,
                                  straighten: bool = False) -> SessionRecord:
        """Upload and store in one call (the ``/session_start`` API); ``straighten``: the
        proposed straightening is stored as the session's edit (the original is kept)."""
        straighten = check_flag(straighten, "straighten")
        draft = self.open_upload(owner, files, page=page)
        try:
            edit = self.straightening_edit(owner, draft.id) if straighten else None
            return self.start_session(owner, draft.id, edit, title=title)
        finally:
            self.drafts.drop(draft.id)
            return_freed_memory()

    def open_session(self, owner: str, session_id: str) -> SessionRecord:
        """A stored session with its images and turns."""
        return self.store.get_session(owner, session_id)

    def list_sessions(self, owner: str, search: str | None = None) -> list[SessionSummary]:
        search = check_text(search, "search", TITLE_MAX) if search is not None else ""
        return self.store.list_sessions(owner, search=search.strip() or None)

    def session_params(self, owner: str, session_id: str) -> dict:
        """A stored session's params (no images loaded)."""
        return dict(self.store.get_session(owner, session_id, turns=False,
                                           images=False).params)

    def teaching_case(self, owner: str, *, draft_id: str | None = None,
                      session_id: str | None = None) -> tuple[dict | None, str | None]:
        """(truth, case code) of the teaching case shown as a stored session or else a draft;
        (None, None) for anything else."""
        from pulse_app.teaching import TRUTH_KEY

        if session_id:
            params = self.session_params(owner, session_id)
        elif draft_id:
            draft = self.drafts.get(owner, draft_id)
            params = {**draft.extra, "source": draft.source}
        else:
            return None, None
        return params.get(TRUTH_KEY), (params.get("source") or {}).get("case")

    def check_teaching_answers(self, owner: str, session_id: str) -> list | None:
        """The model's answers in a stored teaching session checked against its truth
        (:func:`pulse_app.answer_check.check_case`); None for a session without a truth."""
        from pulse_app.answer_check import check_case
        from pulse_app.teaching import TRUTH_KEY

        session = self.store.get_session(owner, session_id, images=False)
        truth = (session.params or {}).get(TRUTH_KEY)
        if not truth:
            return None
        return check_case([(t.answer, t.model_label) for t in session.turns], truth)

    def rename(self, owner: str, session_id: str, title: str) -> None:
        self.store.rename(owner, session_id, check_text(title, "title", TITLE_MAX))

    def delete(self, owner: str, session_id: str) -> None:
        """Delete a stored session, its reports not yet downloaded and its cached image."""
        self.store.delete(owner, session_id)
        with self._images_lock:
            self._images.pop(str(session_id), None)
        with self._readings_lock:
            self._readings.pop(str(session_id), None)

    def export_pdf(self, owner: str, session_id: str, note: str | None = None,
                   owner_label: str | None = None) -> bytes:
        """The session as a PDF report (bytes), made in the export process; the note is
        checked (text, no NUL, at most ``settings.max_note_chars``)."""
        from pulse_app.report import render_pdf

        if note is not None:
            note = check_text(note, "note", self.settings.max_note_chars).strip() or None
        session = self.store.get_session(owner, session_id)
        return render_pdf(session, note=note, owner_label=owner_label,
                          reading=self.store.get_reading(owner, session_id))

    def prepare_export(self, owner: str, session_id: str, note: str | None = None,
                       owner_label: str | None = None) -> ExportRecord:
        """Make the report and keep it in the database for one download by ``owner`` (through
        any replica) within ``settings.export_ttl_s``."""
        pdf = self.export_pdf(owner, session_id, note, owner_label)
        filename = f"pulse-session-{session_id}.pdf"
        export_id = self.store.add_export(owner, session_id, filename, pdf)
        return ExportRecord(id=export_id, owner=owner, session_id=str(session_id),
                            filename=filename, data=pdf, created_at=datetime.now(timezone.utc))

    def prepare_handout(self, owner: str, deck: "Deck", *, base_url: str = "") -> ExportRecord:
        """The deck's handout PDF (made in the export process), kept for one download by
        ``owner``; ``base_url`` prints a link that opens the deck."""
        from pulse_app.handout import render_handout

        pdf = render_handout(deck, base_url=base_url)
        return self.keep_download(owner, f"deck:{deck.code}", f"pulse-deck-{deck.code}.pdf", pdf,
                                  "application/pdf")

    def keep_download(self, owner: str, key: str, filename: str, data: bytes,
                      media_type: str) -> ExportRecord:
        """Bytes made elsewhere (a handout, a class's answers as CSV) kept in the database for
        one download by ``owner``; ``key`` names what they were made from (``deck:CODE``)."""
        export_id = self.store.add_export(owner, key, filename, data, media_type)
        return ExportRecord(id=export_id, owner=owner, session_id=key, filename=filename,
                            data=data, created_at=datetime.now(timezone.utc),
                            media_type=media_type)

    def take_export(self, owner: str, export_id: str) -> ExportRecord:
        """A prepared report, once, for its owner only; :class:`SessionNotFound` when it is not
        ``owner``'s, was already downloaded, or is too old (all three look the same)."""
        oldest = datetime.now(timezone.utc) - timedelta(seconds=self.settings.export_ttl_s)
        export = self.store.take_export(owner, export_id, not_before=oldest)
        if export is None:
            raise SessionNotFound("this report is no longer available (it is kept for one "
                                  "download, for a few minutes)", hint="export it again")
        return export

    @staticmethod
    def image_of(session: SessionRecord, *, original: bool = False) -> Image.Image:
        """The session's edited (or original) image as a PIL RGB image."""
        data = session.original_png if original else session.edited_png
        return Image.open(io.BytesIO(data)).convert("RGB")

    # -- answers -----------------------------------------------------------------------------------

    def ask(self, owner: str, session_id: str, question: str, params: dict | None = None,
            cancel: threading.Event | None = None, *,
            grounded: bool | None = None) -> Iterator[str]:
        """Stream the answer to ``question``; the turn is committed when the stream ends and is
        the generator's return value. Bad questions and parameters are refused at once.

        ``grounded`` (default ``settings.grounded``): the model gets the digitiser's
        measurements as marked context and the answer's label says so. Every answer is held
        against the measurements (:func:`pulse_app.consistency.check_answer`) and what
        contradicts them is stored with the turn (``params["consistency"]``): at once when the
        picture was already read (the web app reads what it shows, two at a time; a grounded
        question reads it first), else when it is read (never in the way of the answer, and
        never on ``session_start``: many large uploads at once would each need the digitiser's
        working memory)."""
        question = check_question(question)
        generation = self.settings.generation_params(**(params or {}))
        return self._stream(owner, session_id, question, generation, cancel, regenerate=False,
                            grounded=self._grounded(grounded))

    def regenerate(self, owner: str, session_id: str, params: dict | None = None,
                   cancel: threading.Event | None = None, *,
                   grounded: bool | None = None) -> Iterator[str]:
        """Stream a new answer to the last question; it replaces the last answer when done."""
        generation = self.settings.generation_params(**(params or {}))
        return self._stream(owner, session_id, None, generation, cancel, regenerate=True,
                            grounded=self._grounded(grounded))

    def _grounded(self, grounded) -> bool:
        if grounded is None:
            return bool(self.settings.grounded)
        return check_flag(grounded, "grounded")

    def _stream(self, owner, session_id, question, generation, cancel, *, regenerate,
                grounded=False):
        turns = [Turn(t.question, t.answer)
                 for t in self.store.get_session(owner, session_id, images=False).turns]
        if regenerate:
            if not turns:
                raise PulseError("there is no answer to regenerate yet",
                                 hint="ask a question first")
            question, turns = turns[-1].question, turns[:-1]
        return self._answer(owner, str(session_id), turns, question, generation, cancel,
                            regenerate, grounded)

    def _answer(self, owner, session_id, history, question, generation, cancel, regenerate,
                grounded=False):
        with self._answer_lease(owner, session_id) as lease:
            backend = self.backend
            info = backend.info()
            image = self._image(owner, session_id)
            context = summary_context(self.reading(owner, session_id).summary) if grounded \
                else None
            parts: list[str] = []
            stream = stream_answer(backend, image, history, question, generation, cancel,
                                   context=context)
            try:
                for chunk in stream:
                    parts.append(chunk)
                    yield chunk
            except GeneratorExit:                  # the caller closed us: the user pressed Stop
                stream.close()
                self._save(owner, session_id, question, parts, info, generation, True,
                           regenerate, lease, grounded)
                raise
            finally:
                stream.close()
            stopped = cancel is not None and cancel.is_set()
            return self._save(owner, session_id, question, parts, info, generation, stopped,
                              regenerate, lease, grounded)

    def _save(self, owner, session_id, question, parts, info, generation, stopped,
              regenerate, lease: "_Lease", grounded=False) -> TurnRecord:
        answer = "".join(parts).strip().replace("\x00", "\ufffd")    # storable everywhere
        params = {**generation.as_dict(), "backend": info.backend,
                  "model_revision": info.revision, "grounded": bool(grounded)}
        reading = self.store.get_reading(owner, session_id, overlay=False)
        if reading is not None:             # else checked when the picture is read
            params["consistency"] = [c.to_dict() for c in check_answer(answer,
                                                                       reading.measurements)]
        save = self.store.replace_last_turn if regenerate else self.store.add_turn
        extra = {} if regenerate else {"question": question}
        label = grounded_label(info.label) if grounded else info.label
        turn = save(owner, session_id, answer=answer, model_id=info.model_id,
                    model_label=label, params=params, stopped=stopped,
                    model_revision=info.revision, holder=lease.holder, **extra)
        lease.held = False                         # ended in the turn's own commit
        return turn

    # -- the digitiser's reading: evidence, grounding, the consistency check -------------------

    def read_draft(self, owner: str, draft_id: str):
        """The digitiser's reading of a draft's picture with its current edit (read once per
        edit; kept with the draft and stored with the session it becomes)."""
        draft = self.drafts.get(owner, draft_id)
        edit = clean_edit(draft.edit)
        cached = draft.reading
        if cached is not None and cached[0] == edit:
            return cached[1]
        reading, summary = read_image(apply_edit(draft.image, edit))
        draft.reading = (edit, reading, summary)
        if draft.session_id is not None and draft.edit == edit:   # asked before this ended
            try:
                if self.store.get_reading(owner, draft.session_id, overlay=False) is None:
                    self._store_reading(owner, draft.session_id, reading, summary)
            except SessionNotFound:                                 # deleted meanwhile
                draft.session_id = None
        return reading

    def draft_reading_summary(self, owner: str, draft_id: str) -> dict:
        """:meth:`read_draft` as the stored summary (``"lines"``, ``"measurements"`` ...)."""
        self.read_draft(owner, draft_id)
        return self.drafts.get(owner, draft_id).reading[2]

    def reading(self, owner: str, session_id: str) -> ReadingRecord:
        """The stored reading of a session's picture, read and stored the first time it is
        asked for (once, however many ask at the same time)."""
        session_id = str(session_id)
        stored = self.store.get_reading(owner, session_id)
        if stored is not None:
            return stored
        with self._readings_lock:
            lock = self._reading_locks.setdefault(session_id, threading.Lock())
        with lock:
            stored = self.store.get_reading(owner, session_id)
            if stored is None:
                reading, summary = read_image(self._image(owner, session_id))
                stored = self._store_reading(owner, session_id, reading, summary)
        with self._readings_lock:
            self._reading_locks.pop(session_id, None)
        return stored

    def _store_reading(self, owner, session_id, reading, summary) -> ReadingRecord:
        """Store a session's reading, and check the answers written before it."""
        record = self.store.save_reading(owner, session_id, summary=summary,
                                         overlay_png=png_bytes(reading.overlay))
        unchecked = {t.index: [c.to_dict() for c in check_answer(t.answer, record.measurements)]
                     for t in self.store.get_session(owner, session_id, images=False).turns
                     if "consistency" not in (t.params or {})}
        if unchecked:
            self.store.set_turn_checks(owner, session_id, unchecked)
        with self._readings_lock:
            self._readings[str(session_id)] = reading
            while len(self._readings) > READINGS_KEPT:
                self._readings.popitem(last=False)
        return record

    def _ecg_reading(self, owner: str, session_id: str):
        """The full reading (signals) of a session: kept in memory for recent sessions, else
        read again from the stored picture (the digitiser is deterministic)."""
        self.store.get_session(owner, session_id, turns=False, images=False)   # owner check
        with self._readings_lock:
            reading = self._readings.get(str(session_id))
        if reading is None:
            reading, summary = read_image(self._image(owner, session_id))
            self._store_reading(owner, session_id, reading, summary)
        return reading

    def prepare_signals(self, owner: str, session_id: str, kind: str) -> ExportRecord:
        """The digitised signals of a session for one download by ``owner``: ``"wfdb"`` (a
        zip of the ``.hea`` and ``.dat``) or ``"csv"`` (see
        :func:`pulse_app.ecg.reading.write_reading`); written in a private temporary folder
        that is deleted at once, then kept in the database like a report
        (:meth:`keep_download`, deleted with the session)."""
        import tempfile
        import zipfile

        from pulse_app.ecg.reading import write_reading

        if kind not in SIGNAL_KINDS:
            raise PulseError(f"unknown signals format {kind!r}", hint="choose wfdb or csv")
        reading = self._ecg_reading(owner, session_id)
        name = f"pulse-ecg-{session_id}"
        with tempfile.TemporaryDirectory(prefix="pulse-signals-") as folder:
            paths = write_reading(reading, folder, name)
            if kind == "csv":
                data = paths["csv"].read_bytes()
                return self.keep_download(owner, str(session_id), f"{name}.csv", data,
                                          "text/csv")
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                for key in ("hea", "dat", "json"):
                    archive.write(paths[key], paths[key].name)
        return self.keep_download(owner, str(session_id), f"{name}-wfdb.zip",
                                  buffer.getvalue(), "application/zip")

    def _image(self, owner: str, session_id: str) -> Image.Image:
        """The edited image of a session (cached; the owner was checked by the caller's read)."""
        with self._images_lock:
            image = self._images.get(session_id)
            if image is not None:
                self._images.move_to_end(session_id)
                return image
        session = self.store.get_session(owner, session_id, turns=False)
        image = self.image_of(session)
        self._remember_image(session_id, image)
        return image

    def _remember_image(self, session_id: str, image: Image.Image) -> None:
        with self._images_lock:
            self._images[str(session_id)] = image
            while len(self._images) > 1 and (
                    sum(image_bytes(i) for i in self._images.values()) > self.image_cache_bytes):
                self._images.popitem(last=False)

    @contextmanager
    def _answer_lease(self, owner: str, session_id: str):
        """One answer at a time per session, across every replica on the database."""
        lease = _Lease(self.store, owner, session_id)
        if not self.store.claim_answer(owner, session_id, lease.holder, ANSWER_LEASE_S):
            raise SessionBusy("an answer is still being written for this session",
                              hint="wait for it to finish or press Stop (if its server "
                                   f"stopped, the session is free within "
                                   f"{ANSWER_LEASE_S:.0f} seconds)")
        lease.start()
        try:
            yield lease
        finally:
            lease.stop()
            if lease.held:
                self.store.release_answer(owner, session_id, lease.holder)

    def _session_model(self) -> tuple[str | None, str | None]:
        """Model id + revision recorded on a new session (the backend's, once it exists)."""
        if self._backend is not None:
            info = self._backend.info()
            return info.model_id, info.revision
        return self.settings.model, self.settings.revision


class _Lease:
    """An answer's lease on its session (see :meth:`ChatService._answer_lease`), renewed every
    third of :data:`ANSWER_LEASE_S` by a thread of its own while the answer is written (a long
    prefill yields no chunk for a while)."""

    def __init__(self, store: Store, owner: str, session_id: str):
        self.store, self.owner, self.session_id = store, owner, session_id
        self.holder = secrets.token_urlsafe(18)
        self.held = False
        self._done = threading.Event()

    def start(self) -> None:
        self.held = True
        threading.Thread(target=self._renew, name="pulse-answer-lease", daemon=True).start()

    def stop(self) -> None:
        self._done.set()

    def _renew(self) -> None:
        while not self._done.wait(ANSWER_LEASE_S / 3):
            try:
                self.store.claim_answer(self.owner, self.session_id, self.holder,
                                        ANSWER_LEASE_S, renew=True)
            except PulseError:
                return                          # the session was deleted meanwhile


def _check_owner(owner: str) -> None:
    if not isinstance(owner, str) or not owner.strip():
        raise ValueError("every chat call needs a non-empty owner")
