"""Sharing cases, decks, the presenter view and the students' answers: layout and wiring only.

The core does the work: cases and their codes (:mod:`pulse_app.teaching`), decks
(:mod:`pulse_app.decks`), the handout (:mod:`pulse_app.handout`), the model-vs-truth check
(:mod:`pulse_app.answer_check` through :class:`~pulse_app.chat.ChatService`) and live classes
(:mod:`pulse_app.classroom`). The page keeps codes and ids only: the deck code, and the presenter
state ``{"deck": code, "index": i, "views": [view of each case or None], "revealed": [i...],
"class": class code or None}`` where a view is the main page's ``{"draft", "session", ...}``.

Links: ``/?case=CODE`` opens a case in the Teaching tab, ``/?deck=CODE`` a deck in the Decks tab,
``/?class=CODE`` the students' page of a live class (the rest of the page is hidden there). Codes
hold only findings, seeds and picture styles; a class code is six random letters.

As on the rest of the page (:mod:`pulse_app.ui.handlers`): the owner is the signed-in user or the
browser's HttpOnly cookie (a student's answers are counted per browser by it), every handler is
:func:`~pulse_app.ui.guard.guarded`, the presenter's picture travels inline
(:class:`~pulse_app.ui.components.PrivateImage`), its chat is plain text, and the handout PDF and
the class's answers (CSV) are kept in memory for one download by their owner through the gate
(``pulse/report/<id>``), never written to a file.

>>> presenter_title(1, 5)
'### Case 2 of 5'
"""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from pulse_app.classroom import Classrooms
from pulse_app.decks import LEVELS, MAX_CASES, Deck
from pulse_app.errors import PulseError
from pulse_app.quiz import KINDS
from pulse_app.teaching import Case, truth_markdown
from pulse_app.ui import texts
from pulse_app.ui.components import PrivateImage, RawTextbox, shown_scale
from pulse_app.ui.guard import guarded

#: Query parameters the page reads on load.
CASE_PARAM, DECK_PARAM, CLASS_PARAM = "case", "deck", "class"
#: How often a student's page looks for the presenter's current case, and the presenter's page
#: for the number of answers (seconds).
STUDENT_POLL_S, PRESENTER_POLL_S = 2.0, 3.0


def presenter_title(index: int, count: int) -> str:
    return f"### Case {index + 1} of {count}"


def _given(value) -> bool:
    """Something was typed or sent (anything but nothing or blanks: the core reads the rest)."""
    return value is not None and not (isinstance(value, str) and not value.strip())


def share_markdown(code: str | None, param: str = CASE_PARAM) -> str:
    """The share line of a case or deck: its code and a link relative to this page."""
    if not code:
        return ""
    what = "case" if param == CASE_PARAM else "deck"
    return (f"**Share this {what}:** code `{code}` · [link](?{param}={code}) — anyone who opens "
            f"it sees the same ECG (no account, nothing personal in the code).")


# -- layout ----------------------------------------------------------------------------------------

def build_decks_tab() -> SimpleNamespace:
    """The Decks tab's controls (inside the caller's Tab)."""
    d = SimpleNamespace()
    gr.Markdown(texts.DECKS_HELP)
    with gr.Row():
        d.level = gr.Dropdown([(v, k) for k, v in LEVELS.items()], value="single",
                              label="Difficulty", elem_id="deck-level")
        d.count = gr.Slider(1, MAX_CASES, value=5, step=1, label="Cases", elem_id="deck-count")
        d.seed = gr.Number(value=0, precision=0, label="Seed", elem_id="deck-seed")
    d.students = gr.Checkbox(label="Students answer multiple-choice questions (from their own "
                             "browsers)", elem_id="deck-students")
    with gr.Row():
        d.draw = gr.Button("Draw a deck", variant="primary", elem_id="deck-draw")
        d.add = gr.Button("Add the current teaching case", elem_id="deck-add")
    with gr.Row():
        d.code = RawTextbox(label="Deck code (paste one to open it)", elem_id="deck-code",
                            scale=4)
        d.open = gr.Button("Open", elem_id="deck-open", scale=1)
    d.info = gr.Markdown(elem_id="deck-info")
    with gr.Row():
        d.present = gr.Button("Present", variant="primary", elem_id="deck-present")
        d.handout = gr.Button("Handout PDF (answer key at the end)", elem_id="deck-handout")
    d.handout_file = gr.HTML(elem_id="deck-handout-file")            # a one-download link
    return d


def build_presenter() -> SimpleNamespace:
    """The presenter view: hidden until Present."""
    from pulse_app.ui.handlers import EMPTY_VIEW

    p = SimpleNamespace()
    with gr.Column(visible=False, elem_id="presenter") as p.column:
        p.state = gr.State({})
        p.view = gr.State(dict(EMPTY_VIEW))
        with gr.Row(equal_height=True):
            p.title = gr.Markdown(elem_id="present-title")
            p.previous = gr.Button("◀ Previous", size="sm", elem_id="present-previous")
            p.next = gr.Button("Next ▶", size="sm", elem_id="present-next")
            p.exit = gr.Button("Exit presenter view", size="sm", elem_id="present-exit")
        p.class_line = gr.Markdown(elem_id="present-class")
        with gr.Row():
            with gr.Column(scale=7):
                p.picture = PrivateImage(type="pil", interactive=False, height=720,
                                         show_label=False, elem_id="present-picture")
            with gr.Column(scale=4):
                # plain text, as the main chat (pulse_app.ui.handlers.literal)
                p.chat = gr.Chatbot(label="Conversation", height=420, elem_id="present-chat",
                                    render_markdown=False, latex_delimiters=[],
                                    sanitize_html=True)
                p.question = RawTextbox(label="Question", placeholder="Ask the model…",
                                        elem_id="present-question", submit_btn=False)
                with gr.Row():
                    p.ask = gr.Button("Ask", variant="primary", elem_id="present-ask")
                    p.reveal = gr.Button("Reveal", elem_id="present-reveal")
                with gr.Row():
                    p.prompts = [(gr.Button(label, size="sm", elem_id=f"present-prompt-{i}"), text)
                                 for i, (label, text) in enumerate(texts.PROMPTS.items())]
                p.truth = gr.Markdown(elem_id="present-truth")
                p.check = gr.Markdown(elem_id="present-check")
                p.answers = gr.Markdown(elem_id="present-answers")
        with gr.Accordion("The model over the deck", open=False, elem_id="present-summary-box"):
            p.summary = gr.Markdown(elem_id="present-summary")
        with gr.Row():
            p.save = gr.Button("Save the class's answers (CSV)", size="sm", elem_id="present-save")
            p.saved = gr.HTML(elem_id="present-saved")                  # a one-download link
        p.timer = gr.Timer(PRESENTER_POLL_S, active=False)
    return p


def build_student() -> SimpleNamespace:
    """The students' page of a live class: hidden unless opened with ``?class=CODE``."""
    s = SimpleNamespace()
    with gr.Column(visible=False, elem_id="student") as s.column:
        s.state = gr.State({})
        s.title = gr.Markdown(elem_id="student-title")
        s.radios = [gr.Radio([], label="", visible=False, elem_id=f"student-q{i}")
                    for i in range(len(KINDS))]
        s.send = gr.Button("Send my answers", variant="primary", elem_id="student-send")
        s.status = gr.Markdown(elem_id="student-status")
        s.timer = gr.Timer(STUDENT_POLL_S, active=False)
    return s


# -- handlers --------------------------------------------------------------------------------------

class DecksUI:
    """Handlers for sharing, decks, presenting and classes; ``ui`` is the app's
    :class:`~pulse_app.ui.handlers.PulseUI` (owner, chat service, shared handlers)."""

    def __init__(self, ui):
        self.ui = ui
        self.chat = ui.chat
        self.classrooms = Classrooms()

    # -- cases: share line, model check, codes -----------------------------------------------------
    def case_code(self, owner: str, view: dict) -> str | None:
        return self._case(owner, view)[1]

    def _case(self, owner: str, view: dict) -> tuple:
        view = view or {}
        return self.chat.teaching_case(owner, draft_id=view.get("draft"),
                                       session_id=view.get("session"))

    @guarded
    def teaching_notes(self, view, request: gr.Request):
        """After the picture changed: its share line (a teaching case's code), no check yet."""
        try:
            code = self.case_code(self.ui.owner(request), view)
        except PulseError:
            code = None
        return share_markdown(code), ""

    @guarded
    def check_view(self, view, request: gr.Request) -> str:
        """After Reveal: the model's answers in this case against the truth."""
        owner = self.ui.owner(request)
        view = view or {}
        if not view.get("session"):
            return texts.CHECK_NOTHING_YET if self.case_code(owner, view) else ""
        rows = self.chat.check_teaching_answers(owner, view["session"])
        return "" if rows is None else self._check_markdown(rows)

    @staticmethod
    def _check_markdown(rows) -> str:
        from pulse_app.answer_check import checks_markdown

        return checks_markdown(rows) if rows else texts.CHECK_NOTHING_YET

    @guarded
    def open_code(self, code, request: gr.Request):
        """The Teaching tab's code box: a case opens in the picture; a deck in the Decks tab."""
        owner = self.ui.owner(request)
        try:
            case = Case.from_code(code)
        except PulseError as case_error:
            try:
                deck = Deck.from_code(code)
            except PulseError:
                raise case_error from None
            return (*[gr.skip()] * 7, gr.Tabs(selected="decks"), deck.code,
                    self.deck_info(deck))
        draft = self.chat.open_case(owner, case)
        from pulse_app.ui.handlers import HIDDEN

        return (*self.ui.show_draft(draft), gr.update(value=HIDDEN), gr.Tabs(selected="teaching"),
                gr.skip(), gr.skip())

    @guarded
    def open_query(self, request: gr.Request):
        """Page load with ``?case=`` or ``?deck=``: open it (a bad code: a clear message)."""
        params = dict(getattr(request, "query_params", {}) or {})
        code = params.get(CASE_PARAM) or params.get(DECK_PARAM)
        if not code or params.get(CLASS_PARAM):
            return (gr.skip(),) * 10
        if params.get(DECK_PARAM) and not params.get(CASE_PARAM):
            deck = Deck.from_code(code)
            return (*[gr.skip()] * 7, gr.Tabs(selected="decks"), deck.code,
                    self.deck_info(deck))
        return self.open_code(code, request)

    # -- decks -------------------------------------------------------------------------------------
    @staticmethod
    def deck_info(deck: Deck) -> str:
        return f"**{deck.title()}**\n\n{share_markdown(deck.code, DECK_PARAM)}"

    @staticmethod
    def _deck(code) -> Deck:
        if not _given(code):
            raise PulseError("there is no deck yet",
                             hint="draw a deck, add cases, or paste a deck code")
        return Deck.from_code(code)

    @guarded
    def draw(self, level, count, seed, students):
        deck = Deck.draw(level, int(count), seed=int(seed or 0), students=bool(students))
        return deck.code, self.deck_info(deck)

    @guarded
    def add_case(self, view, deck_code, students, request: gr.Request):
        """Append the teaching case shown in the picture to the deck (a deck of chosen cases)."""
        owner = self.ui.owner(request)
        code = self.case_code(owner, view)
        if not code:
            raise PulseError("the picture is not a teaching case",
                             hint="generate one in the Teaching tab first")
        cases = list(self._deck(deck_code).cases) if _given(deck_code) else []
        deck = Deck.of([*cases, Case.from_code(code)], students=bool(students))
        return deck.code, self.deck_info(deck)

    @guarded
    def open_deck(self, deck_code):
        deck = self._deck(deck_code)
        return deck.code, self.deck_info(deck)

    @guarded
    def handout(self, deck_code, request: gr.Request) -> str:
        """The deck's handout PDF: a link that downloads it once, for this owner only."""
        from pulse_app.ui.handlers import report_link

        export = self.chat.prepare_handout(self.ui.owner(request), self._deck(deck_code),
                                           base_url=self._base_url(request))
        return report_link(export, "Download the handout PDF")

    @staticmethod
    def _base_url(request) -> str:
        headers = getattr(request, "headers", None) or {}
        host = headers.get("x-forwarded-host") or headers.get("host")
        scheme = headers.get("x-forwarded-proto") or "http"
        return f"{scheme}://{host}/" if host else ""

    # -- the presenter view ------------------------------------------------------------------------
    @guarded
    def present(self, deck_code, request: gr.Request):
        """Enter the presenter view on the deck's first case (and open a class for students)."""
        owner = self.ui.owner(request)
        deck = self._deck(deck_code)
        room = self.classrooms.open(owner, deck) if deck.students else None
        state = {"deck": deck.code, "index": 0, "views": [None] * len(deck.cases),
                 "revealed": [], "class": room.id if room else None,
                 "url": self._base_url(request)}
        return (gr.update(visible=False), gr.update(visible=False), gr.update(visible=True),
                gr.Timer(active=bool(room)), *self._show(owner, state, None, 0))

    @guarded
    def go(self, state, view, step: int, request: gr.Request):
        """Previous / Next: the current case's ids are kept, the other case is shown."""
        owner = self.ui.owner(request)
        if not state:
            raise PulseError("no deck is being presented", hint="press Present")
        index = min(max(state["index"] + step, 0), len(state["views"]) - 1)
        return self._show(owner, state, view, index)

    def _show(self, owner: str, state: dict, view: dict | None, index: int):
        """Outputs for case ``index``: state, view, title, class line, picture, chat, truth,
        check, class answers, summary."""
        from pulse_app.ui.handlers import EMPTY_VIEW, HIDDEN, turn_messages

        state = {**state, "views": list(state["views"])}
        if view and (view.get("draft") or view.get("session")):
            state["views"][state["index"]] = {"draft": view.get("draft"),
                                              "session": view.get("session")}
        deck = Deck.from_code(state["deck"])
        kept = state["views"][index] or {}
        picture, history = None, []
        try:
            if kept.get("session"):
                stored = self.chat.open_session(owner, kept["session"])
                picture, history = self.chat.image_of(stored), turn_messages(stored)
            elif kept.get("draft"):
                picture = self.chat.preview(owner, kept["draft"], None)
        except PulseError:                         # a draft left too long: draw the case again
            kept = {}
        if picture is None:
            draft = self.chat.open_case(owner, deck.cases[index])
            kept, picture = {"draft": draft.id, "session": None}, draft.image
        state["views"][index] = kept
        state["index"] = index
        room = self._room(owner, state)
        if room is not None:
            room.current = index
        revealed = index in state["revealed"]
        new_view = {**EMPTY_VIEW, "draft": kept.get("draft"), "session": kept.get("session"),
                    "scale": shown_scale(picture)}
        truth = truth_markdown(self._case(owner, new_view)[0]) if revealed else HIDDEN
        check = self._check_markdown(self._rows(owner, new_view) or []) if revealed else ""
        answers = room.distribution_markdown(index) if room is not None and revealed else ""
        return (state, new_view, presenter_title(index, len(deck.cases)),
                self._class_line(room, index, state.get("url", "")), picture, history, truth,
                check, answers, self._summary(owner, state))

    def _rows(self, owner: str, view: dict):
        if not view.get("session"):
            return None
        return self.chat.check_teaching_answers(owner, view["session"])

    def _room(self, owner: str, state: dict):
        if not state.get("class"):
            return None
        try:
            return self.classrooms.presented_by(owner, state["class"])
        except PulseError:
            return None

    @staticmethod
    def _class_line(room, index: int, url: str = "") -> str:
        if room is None:
            return ""
        return texts.CLASS_LINE.format(code=room.id, answered=room.answered(index), url=url)

    def _summary(self, owner: str, state: dict) -> str:
        from pulse_app.decks import deck_summary

        return deck_summary({index + 1: self._rows(owner, state["views"][index] or {}) or []
                             for index in state.get("revealed", [])})

    @guarded
    def present_reveal(self, state, view, request: gr.Request):
        """Reveal in the presenter view: truth, model-vs-truth table, the class's answers (and
        their closing), the deck summary."""
        owner = self.ui.owner(request)
        if not state:
            raise PulseError("no deck is being presented", hint="press Present")
        state = {**state, "views": list(state["views"])}
        state["views"][state["index"]] = {"draft": (view or {}).get("draft"),
                                          "session": (view or {}).get("session")}
        state["revealed"] = sorted(set(state["revealed"]) | {state["index"]})
        room = self._room(owner, state)
        if room is not None:
            room.revealed.add(state["index"])
        truth = truth_markdown(self._case(owner, view)[0])
        check = self._check_markdown(self._rows(owner, view or {}) or [])
        summary = self._summary(owner, state)
        answers = room.distribution_markdown(state["index"]) if room is not None else ""
        return state, truth, check, answers, summary

    @guarded
    def poll_presenter(self, state, request: gr.Request):
        """The class line (how many answered) and, once revealed, the live distribution."""
        owner = self.ui.owner(request)
        room = self._room(owner, state or {})
        if room is None:
            return gr.skip(), gr.skip()
        index = state["index"]
        answers = room.distribution_markdown(index) if index in state["revealed"] else gr.skip()
        return self._class_line(room, index, state.get("url", "")), answers

    @guarded
    def save_answers(self, state, request: gr.Request) -> str:
        """The class's answers as CSV: a link that downloads them once, for the presenter."""
        from pulse_app.ui.handlers import report_link

        owner = self.ui.owner(request)
        room = self._room(owner, state or {})
        if room is None:
            raise PulseError("this deck has no class answers",
                             hint="draw a deck with 'Students answer' ticked")
        export = self.chat.keep_download(owner, f"class:{room.id}", f"pulse-class-{room.id}.csv",
                                         room.results_csv(), "text/csv")
        return report_link(export, "Download the class's answers (CSV)")

    @guarded
    def exit(self, state, request: gr.Request):
        """Leave the presenter view; the class ends (its answers are gone unless saved)."""
        owner = self.ui.owner(request)
        if state and state.get("class"):
            try:
                self.classrooms.end(owner, state["class"])
            except PulseError:
                pass
        return (gr.update(visible=True), gr.update(visible=True), gr.update(visible=False),
                gr.Timer(active=False), {})

    # -- students ----------------------------------------------------------------------------------
    @guarded
    def open_class_query(self, request: gr.Request):
        """Page load with ``?class=CODE``: the students' page instead of the workbench."""
        code = dict(getattr(request, "query_params", {}) or {}).get(CLASS_PARAM)
        if not code:
            return (gr.skip(),) * (7 + len(KINDS))
        room = self.classrooms.get(code)
        return (gr.update(visible=False), gr.update(visible=False), gr.update(visible=True),
                gr.Timer(active=True), *self._student_case(room, owner=self.ui.owner(request)))

    def _student_case(self, room, *, owner: str):
        """State, title, radios (question, options, this browser's answers), status."""
        index = room.current
        questions = room.questions(index)
        mine = room.mine(owner, index)
        radios = []
        for i in range(len(KINDS)):
            if i < len(questions):
                q = questions[i]
                radios.append(gr.Radio(q.choices(), value=mine.get(q.kind), label=q.text,
                                       visible=True, interactive=index not in room.revealed))
            else:
                radios.append(gr.Radio(visible=False))
        status = texts.STUDENT_CLOSED if index in room.revealed else (
            texts.STUDENT_SENT if mine else "")
        title = texts.STUDENT_TITLE.format(code=room.id, number=index + 1,
                                           count=len(room.deck.cases))
        return ({"class": room.id, "case": index, "revealed": index in room.revealed},
                title, *radios, status)

    @guarded
    def poll_student(self, state, request: gr.Request):
        """Follow the presenter: a new case (or its reveal) replaces the questions."""
        if not state:
            return (gr.skip(),) * (3 + len(KINDS))
        try:
            room = self.classrooms.get(state["class"])
        except PulseError:
            return ({}, texts.STUDENT_ENDED, *[gr.Radio(visible=False)] * len(KINDS), "")
        if room.current == state["case"] and (room.current in room.revealed) == \
                state.get("revealed"):
            return (gr.skip(),) * (3 + len(KINDS))
        return self._student_case(room, owner=self.ui.owner(request))

    @guarded
    def send_answers(self, state, q0, q1, q2, q3, q4, request: gr.Request):
        """Send this browser's answers to the current case (changing them is allowed until
        the presenter reveals it)."""
        letters = [q0, q1, q2, q3, q4][:len(KINDS)]
        owner = self.ui.owner(request)
        if not state:
            raise PulseError("this page is not in a class", hint="open the class link")
        room = self.classrooms.get(state["class"])
        questions = room.questions(state["case"])
        chosen = [(q, letter) for q, letter in zip(questions, letters) if letter]
        if not chosen:
            raise PulseError("no answer chosen yet", hint="pick an option first")
        for q, letter in chosen:
            room.answer(owner, state["case"], q.kind, letter)
        return texts.STUDENT_SENT


def wire(d: SimpleNamespace, p: SimpleNamespace, s: SimpleNamespace, teach: SimpleNamespace,
         dui: DecksUI, *, demo, view, image_outputs: list, tabs, sidebar, workspace, sessions,
         generation: list, private: dict, chat_event: dict, export_event: dict,
         evidence_event: dict | None = None) -> None:
    """Every event of this module; ``demo`` is the app's Blocks (its page-load events read the
    link's code); PDF handouts run in ``export_event``'s group, the presenter's questions in
    ``chat_event``'s (``generation``: the sliders and the grounded checkbox, as the chat's ask
    takes them); a case opened from its code is followed by ``evidence_event`` (the evidence
    reading of the shared picture)."""
    ui = dui.ui
    view.change(dui.teaching_notes, [view], [teach.share, teach.check], **private)
    teach.reveal.click(dui.check_view, [view], teach.check, **private)
    open_outputs = [*image_outputs, teach.truth_view, tabs, d.code, d.info]
    opened = [teach.open_code.click(dui.open_code, [teach.code_in], open_outputs, **private),
              demo.load(dui.open_query, None, open_outputs, **private)]
    for event in opened if evidence_event else ():
        event.then(**evidence_event)

    d.draw.click(dui.draw, [d.level, d.count, d.seed, d.students], [d.code, d.info], **private)
    d.add.click(dui.add_case, [view, d.code, d.students], [d.code, d.info], **private)
    gr.on([d.open.click, d.code.submit], dui.open_deck, [d.code], [d.code, d.info], **private)
    d.handout.click(dui.handout, [d.code], d.handout_file, **export_event)

    shown = [p.state, p.view, p.title, p.class_line, p.picture, p.chat, p.truth, p.check,
             p.answers, p.summary]
    d.present.click(dui.present, [d.code], [workspace, sidebar, p.column, p.timer, *shown],
                    **private)

    def step(by):
        def handler(state, view_value, request: gr.Request):
            return dui.go(state, view_value, by, request)
        return handler

    p.previous.click(step(-1), [p.state, p.view], shown, **private)
    p.next.click(step(1), [p.state, p.view], shown, **private)
    p.reveal.click(dui.present_reveal, [p.state, p.view],
                   [p.state, p.truth, p.check, p.answers, p.summary], **private)
    p.timer.tick(dui.poll_presenter, [p.state], [p.class_line, p.answers], **private)
    p.save.click(dui.save_answers, [p.state], p.saved, **private)
    p.exit.click(dui.exit, [p.state], [workspace, sidebar, p.column, p.timer, p.state],
                 **private)
    ask_inputs = [p.view, p.question, p.chat, *generation]
    ask_outputs = [p.chat, p.view, p.question, sessions]
    gr.on([p.ask.click, p.question.submit], ui.ask, ask_inputs, ask_outputs, **chat_event)
    for button, text in p.prompts:
        button.click(lambda t=text: t, None, p.question, queue=False, **private).then(
            ui.ask, ask_inputs, ask_outputs, **chat_event)

    student = [s.state, s.title, *s.radios, s.status]
    demo.load(dui.open_class_query, None, [workspace, sidebar, s.column, s.timer, *student],
              **private)
    s.timer.tick(dui.poll_student, [s.state], student, **private)
    s.send.click(dui.send_answers, [s.state, *s.radios], s.status, **private)
