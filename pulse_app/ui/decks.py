"""Sharing cases, decks, the presenter view and the students' answers: layout and wiring only.

The core does the work: cases and their codes (:mod:`pulse_app.teaching`), decks
(:mod:`pulse_app.decks`), the handout (:mod:`pulse_app.handout`), the model-vs-truth check
(:mod:`pulse_app.answer_check` through :class:`~pulse_app.chat.ChatService`) and live classes
(:mod:`pulse_app.classroom`). The page keeps codes and ids only: the deck code, and the presenter
state ``{"deck": code, "index": i, "views": [view of each case or None], "revealed": [i...],
"class": class code or None}`` where a view is the main page's ``{"draft", "session", ...}``.

Links: ``/?case=CODE`` opens a case in the Teaching tab, ``/?deck=CODE`` a deck in the Decks tab,
``/?class=CODE`` the students' page of a live class (the rest of the page is hidden there).

>>> presenter_title(1, 5)
'### Case 2 of 5'
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from pulse_app.classroom import Classrooms
from pulse_app.decks import LEVELS, MAX_CASES, Deck
from pulse_app.errors import PulseError
from pulse_app.quiz import KINDS
from pulse_app.teaching import Case, truth_markdown
from pulse_app.ui import texts

#: Query parameters the page reads on load.
CASE_PARAM, DECK_PARAM, CLASS_PARAM = "case", "deck", "class"
#: How often a student's page looks for the presenter's current case, and the presenter's page
#: for the number of answers (seconds).
STUDENT_POLL_S, PRESENTER_POLL_S = 2.0, 3.0


def presenter_title(index: int, count: int) -> str:
    return f"### Case {index + 1} of {count}"


def _error(error: PulseError) -> gr.Error:
    return gr.Error(str(error), print_exception=False)


def _file(data: bytes, name: str) -> str:
    path = Path(tempfile.mkdtemp(prefix="pulse-deck-")) / name
    path.write_bytes(data)
    return str(path)


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
        d.code = gr.Textbox(label="Deck code (paste one to open it)", elem_id="deck-code",
                            scale=4)
        d.open = gr.Button("Open", elem_id="deck-open", scale=1)
    d.info = gr.Markdown(elem_id="deck-info")
    with gr.Row():
        d.present = gr.Button("Present", variant="primary", elem_id="deck-present")
        d.handout = gr.Button("Handout PDF (answer key at the end)", elem_id="deck-handout")
    d.handout_file = gr.File(label="Handout", interactive=False, elem_id="deck-handout-file")
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
                p.picture = gr.Image(type="pil", format="png", interactive=False, height=720,
                                     show_label=False, elem_id="present-picture")
            with gr.Column(scale=4):
                p.chat = gr.Chatbot(label="Conversation", height=420, elem_id="present-chat")
                p.question = gr.Textbox(label="Question", placeholder="Ask the model…",
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
            p.saved = gr.File(label="Class answers", interactive=False, elem_id="present-saved")
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

    def teaching_notes(self, token, view, request: gr.Request):
        """After the picture changed: its share line (a teaching case's code), no check yet."""
        try:
            code = self.case_code(self.ui.owner(request, token), view)
        except PulseError:
            code = None
        return share_markdown(code), ""

    def check_view(self, token, view, request: gr.Request) -> str:
        """After Reveal: the model's answers in this case against the truth."""
        owner = self.ui.owner(request, token)
        view = view or {}
        try:
            if not view.get("session"):
                return texts.CHECK_NOTHING_YET if self.case_code(owner, view) else ""
            rows = self.chat.check_teaching_answers(owner, view["session"])
        except PulseError as error:
            raise _error(error) from None
        return "" if rows is None else self._check_markdown(rows)

    @staticmethod
    def _check_markdown(rows) -> str:
        from pulse_app.answer_check import checks_markdown

        return checks_markdown(rows) if rows else texts.CHECK_NOTHING_YET

    def open_code(self, token, code, request: gr.Request):
        """The Teaching tab's code box: a case opens in the picture; a deck in the Decks tab."""
        owner = self.ui.owner(request, token)
        try:
            case = Case.from_code(code)
        except PulseError as case_error:
            try:
                deck = Deck.from_code(code)
            except PulseError:
                raise _error(case_error) from None
            return (*[gr.skip()] * 7, gr.Tabs(selected="decks"), deck.code,
                    self.deck_info(deck))
        try:
            draft = self.chat.open_case(owner, case)
        except PulseError as error:
            raise _error(error) from None
        from pulse_app.ui.handlers import HIDDEN

        return (*self.ui.show_draft(draft), gr.update(value=HIDDEN), gr.Tabs(selected="teaching"),
                gr.skip(), gr.skip())

    def open_query(self, token, request: gr.Request):
        """Page load with ``?case=`` or ``?deck=``: open it (a bad code: a clear message)."""
        params = dict(getattr(request, "query_params", {}) or {})
        code = params.get(CASE_PARAM) or params.get(DECK_PARAM)
        if not code or params.get(CLASS_PARAM):
            return (gr.skip(),) * 10
        if params.get(DECK_PARAM) and not params.get(CASE_PARAM):
            try:
                deck = Deck.from_code(code)
            except PulseError as error:
                raise _error(error) from None
            return (*[gr.skip()] * 7, gr.Tabs(selected="decks"), deck.code,
                    self.deck_info(deck))
        return self.open_code(token, code, request)

    # -- decks -------------------------------------------------------------------------------------
    @staticmethod
    def deck_info(deck: Deck) -> str:
        return f"**{deck.title()}**\n\n{share_markdown(deck.code, DECK_PARAM)}"

    @staticmethod
    def _deck(code) -> Deck:
        if not (code or "").strip():
            raise _error(PulseError("there is no deck yet",
                                    hint="draw a deck, add cases, or paste a deck code"))
        try:
            return Deck.from_code(code)
        except PulseError as error:
            raise _error(error) from None

    def draw(self, level, count, seed, students):
        try:
            deck = Deck.draw(level, int(count), seed=int(seed or 0), students=bool(students))
        except PulseError as error:
            raise _error(error) from None
        return deck.code, self.deck_info(deck)

    def add_case(self, token, view, deck_code, students, request: gr.Request):
        """Append the teaching case shown in the picture to the deck (a deck of chosen cases)."""
        owner = self.ui.owner(request, token)
        code = self.case_code(owner, view)
        if not code:
            raise _error(PulseError("the picture is not a teaching case",
                                    hint="generate one in the Teaching tab first"))
        cases = list(self._deck(deck_code).cases) if (deck_code or "").strip() else []
        try:
            deck = Deck.of([*cases, Case.from_code(code)], students=bool(students))
        except PulseError as error:
            raise _error(error) from None
        return deck.code, self.deck_info(deck)

    def open_deck(self, deck_code):
        deck = self._deck(deck_code)
        return deck.code, self.deck_info(deck)

    def handout(self, deck_code, request: gr.Request):
        from pulse_app.handout import deck_pdf

        deck = self._deck(deck_code)
        try:
            pdf = deck_pdf(deck, base_url=self._base_url(request))
        except PulseError as error:
            raise _error(error) from None
        return _file(pdf, f"pulse-deck-{deck.code}.pdf")

    @staticmethod
    def _base_url(request) -> str:
        headers = getattr(request, "headers", None) or {}
        host = headers.get("x-forwarded-host") or headers.get("host")
        scheme = headers.get("x-forwarded-proto") or "http"
        return f"{scheme}://{host}/" if host else ""

    # -- the presenter view ------------------------------------------------------------------------
    def present(self, token, deck_code, request: gr.Request):
        """Enter the presenter view on the deck's first case (and open a class for students)."""
        owner = self.ui.owner(request, token)
        deck = self._deck(deck_code)
        room = self.classrooms.open(owner, deck) if deck.students else None
        state = {"deck": deck.code, "index": 0, "views": [None] * len(deck.cases),
                 "revealed": [], "class": room.id if room else None,
                 "url": self._base_url(request)}
        return (gr.update(visible=False), gr.update(visible=False), gr.update(visible=True),
                gr.Timer(active=bool(room)), *self._shown(owner, state, None, 0))

    def go(self, token, state, view, step: int, request: gr.Request):
        """Previous / Next: the current case's ids are kept, the other case is shown."""
        owner = self.ui.owner(request, token)
        if not state:
            raise _error(PulseError("no deck is being presented", hint="press Present"))
        index = min(max(state["index"] + step, 0), len(state["views"]) - 1)
        return self._shown(owner, state, view, index)

    def _shown(self, owner: str, state: dict, view: dict | None, index: int):
        try:
            return self._show(owner, state, view, index)
        except PulseError as error:
            raise _error(error) from None

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
        new_view = {**EMPTY_VIEW, "draft": kept.get("draft"), "session": kept.get("session")}
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

    def present_reveal(self, token, state, view, request: gr.Request):
        """Reveal in the presenter view: truth, model-vs-truth table, the class's answers (and
        their closing), the deck summary."""
        owner = self.ui.owner(request, token)
        if not state:
            raise _error(PulseError("no deck is being presented", hint="press Present"))
        state = {**state, "views": list(state["views"])}
        state["views"][state["index"]] = {"draft": (view or {}).get("draft"),
                                          "session": (view or {}).get("session")}
        state["revealed"] = sorted(set(state["revealed"]) | {state["index"]})
        room = self._room(owner, state)
        if room is not None:
            room.revealed.add(state["index"])
        try:
            truth = truth_markdown(self._case(owner, view)[0])
            check = self._check_markdown(self._rows(owner, view or {}) or [])
            summary = self._summary(owner, state)
        except PulseError as error:
            raise _error(error) from None
        answers = room.distribution_markdown(state["index"]) if room is not None else ""
        return state, truth, check, answers, summary

    def poll_presenter(self, token, state, request: gr.Request):
        """The class line (how many answered) and, once revealed, the live distribution."""
        owner = self.ui.owner(request, token)
        room = self._room(owner, state or {})
        if room is None:
            return gr.skip(), gr.skip()
        index = state["index"]
        answers = room.distribution_markdown(index) if index in state["revealed"] else gr.skip()
        return self._class_line(room, index, state.get("url", "")), answers

    def save_answers(self, token, state, request: gr.Request):
        owner = self.ui.owner(request, token)
        room = self._room(owner, state or {})
        if room is None:
            raise _error(PulseError("this deck has no class answers",
                                    hint="draw a deck with 'Students answer' ticked"))
        return _file(room.results_csv(), f"pulse-class-{room.id}.csv")

    def exit(self, token, state, request: gr.Request):
        """Leave the presenter view; the class ends (its answers are gone unless saved)."""
        owner = self.ui.owner(request, token)
        if state and state.get("class"):
            try:
                self.classrooms.end(owner, state["class"])
            except PulseError:
                pass
        return (gr.update(visible=True), gr.update(visible=True), gr.update(visible=False),
                gr.Timer(active=False), {})

    # -- students ----------------------------------------------------------------------------------
    def open_class_query(self, token, request: gr.Request):
        """Page load with ``?class=CODE``: the students' page instead of the workbench."""
        code = dict(getattr(request, "query_params", {}) or {}).get(CLASS_PARAM)
        if not code:
            return (gr.skip(),) * (7 + len(KINDS))
        try:
            room = self.classrooms.get(code)
        except PulseError as error:
            raise _error(error) from None
        return (gr.update(visible=False), gr.update(visible=False), gr.update(visible=True),
                gr.Timer(active=True),
                *self._student_case(room, owner=self.ui.owner(request, token)))

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

    def poll_student(self, token, state, request: gr.Request):
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
        return self._student_case(room, owner=self.ui.owner(request, token))

    def send_answers(self, token, state, q0, q1, q2, q3, q4, request: gr.Request):
        """Send this browser's answers to the current case (changing them is allowed until
        the presenter reveals it)."""
        letters = [q0, q1, q2, q3, q4][:len(KINDS)]
        owner = self.ui.owner(request, token)
        if not state:
            raise _error(PulseError("this page is not in a class", hint="open the class link"))
        try:
            room = self.classrooms.get(state["class"])
            questions = room.questions(state["case"])
            chosen = [(q, letter) for q, letter in zip(questions, letters) if letter]
            if not chosen:
                raise PulseError("no answer chosen yet", hint="pick an option first")
            for q, letter in chosen:
                room.answer(owner, state["case"], q.kind, letter)
        except PulseError as error:
            raise _error(error) from None
        return texts.STUDENT_SENT


def wire(d: SimpleNamespace, p: SimpleNamespace, s: SimpleNamespace, teach: SimpleNamespace,
         dui: DecksUI, *, token, view, image_outputs: list, tabs, sidebar, workspace, sessions,
         generation: list, loaded, private: dict, chat_event: dict) -> None:
    """Every event of this module; ``loaded`` is the page's load event (the owner is known)."""
    ui = dui.ui
    view.change(dui.teaching_notes, [token, view], [teach.share, teach.check], **private)
    teach.reveal.click(dui.check_view, [token, view], teach.check, **private)
    open_outputs = [*image_outputs, teach.truth_view, tabs, d.code, d.info]
    teach.open_code.click(dui.open_code, [token, teach.code_in], open_outputs, **private)
    loaded.then(dui.open_query, [token], open_outputs, **private)

    d.draw.click(dui.draw, [d.level, d.count, d.seed, d.students], [d.code, d.info], **private)
    d.add.click(dui.add_case, [token, view, d.code, d.students], [d.code, d.info], **private)
    gr.on([d.open.click, d.code.submit], dui.open_deck, [d.code], [d.code, d.info], **private)
    d.handout.click(dui.handout, [d.code], d.handout_file, **private)

    shown = [p.state, p.view, p.title, p.class_line, p.picture, p.chat, p.truth, p.check,
             p.answers, p.summary]
    d.present.click(dui.present, [token, d.code], [workspace, sidebar, p.column, p.timer, *shown],
                    **private)

    def step(by):
        def handler(token_value, state, view_value, request: gr.Request):
            return dui.go(token_value, state, view_value, by, request)
        return handler

    p.previous.click(step(-1), [token, p.state, p.view], shown, **private)
    p.next.click(step(1), [token, p.state, p.view], shown, **private)
    p.reveal.click(dui.present_reveal, [token, p.state, p.view],
                   [p.state, p.truth, p.check, p.answers, p.summary], **private)
    p.timer.tick(dui.poll_presenter, [token, p.state], [p.class_line, p.answers], **private)
    p.save.click(dui.save_answers, [token, p.state], p.saved, **private)
    p.exit.click(dui.exit, [token, p.state], [workspace, sidebar, p.column, p.timer, p.state],
                 **private)
    ask_inputs = [token, p.view, p.question, p.chat, *generation]
    ask_outputs = [p.chat, p.view, p.question, sessions]
    gr.on([p.ask.click, p.question.submit], ui.ask, ask_inputs, ask_outputs, **chat_event)
    for button, text in p.prompts:
        button.click(lambda t=text: t, None, p.question, queue=False, **private).then(
            ui.ask, ask_inputs, ask_outputs, **chat_event)

    student = [s.state, s.title, *s.radios, s.status]
    loaded.then(dui.open_class_query, [token], [workspace, sidebar, s.column, s.timer, *student],
                **private)
    s.timer.tick(dui.poll_student, [token, s.state], student, **private)
    s.send.click(dui.send_answers, [token, s.state, *s.radios], s.status, **private)
