"""The digitiser's reading in the product: stored once per session, grounded answers (marked
context, labelled), the consistency check, signal downloads and the report.

Real pieces throughout: the tiny model (a spy records what it was asked), a real SQLite file,
real digitising of a rendered page, WFDB read back with wfdb, the PDF parsed back with pypdf.
The one crafted thing is an answer: :class:`CraftedBackend` writes a fixed text through the same
Backend interface, so that the real check has a known contradiction to find."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from pulse_app.chat import ChatService
from pulse_app.consistency import check_answer, flag_text
from pulse_app.errors import PulseError, SessionNotFound
from pulse_app.grounding import CONTEXT_HEAD, GROUNDED_MARK, measurement_context
from pulse_app.settings import Settings

SHORT = {"temperature": 0, "max_new_tokens": 8}
CRAFTED = "Atrial fibrillation with a rapid ventricular response at 150 bpm; QRS 200 ms."


class SpyBackend:
    """A real backend (the tiny model), remembering the questions it was sent."""

    name = "local"

    def __init__(self, backend):
        self.backend, self.questions = backend, []

    def info(self):
        return self.backend.info()

    def stream(self, image, history, question, params, cancel=None):
        self.questions.append(question)
        return self.backend.stream(image, history, question, params, cancel)


class CraftedBackend(SpyBackend):
    """Same interface and model info as the tiny model; writes :data:`CRAFTED`."""

    def stream(self, image, history, question, params, cancel=None):
        self.questions.append(question)
        yield CRAFTED


MEASURED = {"heart_rate": {"value": 72.0, "unit": "bpm", "lead": "II", "confidence": 0.9},
            "rr_regularity": {"value": 0.02, "unit": "", "lead": "II", "confidence": 0.9},
            "qrs": {"value": 90.0, "unit": "ms", "lead": "median of 9 leads",
                    "confidence": 0.8},
            "qt": {"value": None, "unit": "ms", "lead": None, "confidence": 0.0,
                   "note": "no T wave end"}}


@pytest.mark.parametrize("answer, names", [
    ("Sinus rhythm at 75 bpm, regular, QRS 96 ms.", []),
    ("Rate 120 bpm.", ["heart_rate"]),
    ("Sinus tachycardia.", ["heart_rate"]),
    ("No tachycardia; irregularly irregular rhythm.", ["rr_regularity"]),
    ("QRS duration 160 ms, QT 600 ms.", ["qrs"]),          # QT not measurable: never flagged
    ("The rhythm is not irregular.", []),
])
def test_the_check_flags_what_contradicts_the_measurements(answer, names):
    assert [c.name for c in check_answer(answer, MEASURED)] == names


def test_low_confidence_measurements_flag_nothing_and_are_not_given_to_the_model():
    unsure = {k: {**v, "confidence": 0.2} for k, v in MEASURED.items()}
    assert check_answer("Rate 150 bpm, irregular, QRS 200 ms.", unsure) == []
    assert "72 bpm" not in measurement_context(unsure)
    assert "heart rate not measurable" in measurement_context(unsure)
    assert flag_text([]) == ""


@pytest.fixture(scope="module")
def page_png(tmp_path_factory):
    from pulse_app.ecg.render import render_ecg
    from pulse_app.ecg.simulate import ecg_simulate

    path = tmp_path_factory.mktemp("page") / "sinus-75.png"
    render_ecg(ecg_simulate({"rate_bpm": 75}, seed=2)).image.save(path)
    return path


@pytest.fixture
def settings(tmp_path):
    return Settings.load(data_dir=str(tmp_path / "data"), temperature=0.0, max_new_tokens=8)


def test_grounded_answer_gets_marked_context_label_and_stored_reading(settings, tiny_backend,
                                                                     page_png):
    spy = SpyBackend(tiny_backend)
    chat = ChatService(settings, backend=spy)
    draft = chat.open_upload("user:ana", [str(page_png)])
    summary = chat.draft_reading_summary("user:ana", draft.id)       # the evidence panel
    assert summary["found_ecg"] and round(summary["measurements"]["heart_rate"]["value"]) == 75
    session = chat.start_session("user:ana", draft.id)
    stored = chat.store.get_reading("user:ana", session.id)        # the draft's reading, kept
    assert stored is not None and stored.overlay_png.startswith(b"\x89PNG")
    assert stored.summary["lines"] == summary["lines"]

    stream = chat.ask("user:ana", session.id, "What is the rate?", SHORT, grounded=True)
    for _ in stream:
        pass
    grounded_turn = chat.store.get_session("user:ana", session.id).turns[-1]
    assert spy.questions[-1].startswith(CONTEXT_HEAD)
    assert "heart rate 75 bpm (lead II" in spy.questions[-1]
    assert spy.questions[-1].endswith("\n\nWhat is the rate?")
    assert grounded_turn.question == "What is the rate?"           # stored as asked
    assert grounded_turn.model_label.endswith(GROUNDED_MARK)
    assert grounded_turn.params["grounded"] is True

    for _ in chat.ask("user:ana", session.id, "And the rhythm?", SHORT, grounded=False):
        pass
    plain = chat.store.get_session("user:ana", session.id).turns[-1]
    assert spy.questions[-1] == "And the rhythm?"
    assert GROUNDED_MARK not in plain.model_label and plain.params["grounded"] is False
    assert plain.params["consistency"] == []       # checked at once: the reading was there
    assert chat.store.get_reading("user:ana", session.id).created_at == stored.created_at
    with pytest.raises(SessionNotFound):
        chat.store.get_reading("user:bob", session.id)
    with pytest.raises(PulseError):
        chat.ask("user:ana", session.id, "Rate?", SHORT, grounded="yes")
    chat.store.close()


def test_contradiction_is_stored_shown_in_the_report_and_signals_download(settings, tiny_backend,
                                                                          page_png):
    import pypdf
    import wfdb

    chat = ChatService(settings, backend=CraftedBackend(tiny_backend))
    session = chat.start_session_from_upload("user:ana", [str(page_png)])
    assert chat.store.get_reading("user:ana", session.id) is None       # read when needed
    for _ in chat.ask("user:ana", session.id, "Rate and rhythm?", SHORT):
        pass
    turn = chat.store.get_session("user:ana", session.id).turns[-1]
    assert "consistency" not in turn.params        # not read yet: never in the answer's way
    chat.reading("user:ana", session.id)           # e.g. the evidence panel: checked then
    turn = chat.store.get_session("user:ana", session.id).turns[-1]
    assert {c["name"] for c in turn.params["consistency"]} == {"heart_rate", "rr_regularity",
                                                               "qrs"}
    assert "150 bpm; the digitiser measured 75 bpm" in flag_text(turn.params["consistency"])

    text = "".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(
        chat.export_pdf("user:ana", session.id))).pages)
    assert "Measurements (read from the image by the digitiser" in " ".join(text.split())
    assert "Heart rate: 75 bpm (lead II" in text
    assert "Contradicts the digitiser's measurements" in " ".join(text.split())

    wfdb_export = chat.prepare_signals("user:ana", session.id, "wfdb")
    with pytest.raises(SessionNotFound):
        chat.take_export("user:bob", wfdb_export.id)
    archive = zipfile.ZipFile(io.BytesIO(chat.take_export("user:ana", wfdb_export.id).data))
    folder = settings.data_dir + "/unzipped"
    archive.extractall(folder)
    stem = wfdb_export.filename.removesuffix("-wfdb.zip")
    record = wfdb.rdrecord(f"{folder}/{stem}")
    assert record.fs == 500 and len(record.sig_name) == 12 and record.units[0] == "mV"
    with pytest.raises(SessionNotFound):                              # one download
        chat.take_export("user:ana", wfdb_export.id)
    csv_export = chat.prepare_signals("user:ana", session.id, "csv")
    assert csv_export.media_type == "text/csv"
    assert csv_export.data.decode().splitlines()[0].startswith("time_s,I,II,III")
    with pytest.raises(SessionNotFound):
        chat.prepare_signals("user:bob", session.id, "csv")
    chat.delete("user:ana", session.id)                               # the reading goes too
    with chat.store.engine.connect() as db:
        assert db.exec_driver_sql("SELECT count(*) FROM readings").scalar() == 0
    chat.store.close()


def test_one_shot_entry_points_ground_through_prepare(tiny_backend, page_png, ui_cache, capsys,
                                                      monkeypatch):
    """CLI ``ask --grounded`` and serve-openai with ``grounded`` on: the same context reaches
    the model through answer.prepare / stream_request; off, the question goes as asked. A
    serve-openai request's own ``grounded`` wins over the server's setting."""
    import threading

    from pulse_app.__main__ import main
    from pulse_app.answer import prepare, stream_request
    from pulse_app.engine.openai_compat import OpenAIBackend
    from pulse_app.engine.openai_server import make_server

    plain = prepare(Settings.load(), [str(page_png)], "Rate?")
    assert not plain.grounded and plain.context is None
    request = prepare(Settings.load(), [str(page_png)], "Rate?", grounded=True)
    assert request.context.startswith(CONTEXT_HEAD) and "heart rate 75 bpm" in request.context
    spy = SpyBackend(tiny_backend)
    "".join(stream_request(spy, request))
    assert spy.questions[-1] == f"{request.context}\n\nRate?"

    server = make_server(spy, Settings.load(host="127.0.0.1", grounded=True), 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        from PIL import Image

        from pulse_app.engine.backend import GenerationParams

        remote = OpenAIBackend(f"http://127.0.0.1:{server.server_address[1]}/v1", timeout_s=60)
        "".join(remote.stream(Image.open(page_png).convert("RGB"), [], "Rhythm?",
                              GenerationParams(temperature=0, max_new_tokens=4)))
        assert spy.questions[-1].startswith(CONTEXT_HEAD)
        assert spy.questions[-1].endswith("\n\nRhythm?")
    finally:
        server.shutdown()
        server.server_close()

    import base64

    from pulse_app.engine.openai_server import ChatCompletionRequest, checked_request
    from pulse_app.errors import InvalidParameter

    url = "data:image/png;base64," + base64.b64encode(page_png.read_bytes()).decode()
    for server_on, body_grounded, expected in ((False, True, True), (True, False, False),
                                               (True, None, True)):
        body = ChatCompletionRequest.model_validate({
            "model": "m", "grounded": body_grounded, "straighten": False,
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": url}},
                {"type": "text", "text": "Rate?"}]}]})
        checked = checked_request(Settings.load(grounded=server_on), body)
        assert checked.grounded is expected, (server_on, body_grounded)
    with pytest.raises(InvalidParameter, match="grounded must be true or false"):
        prepare(Settings.load(), [str(page_png)], "Rate?", grounded="yes")

    monkeypatch.delenv("PULSE_GROUNDED", raising=False)
    code = main(["ask", str(page_png), "What is the rate?", "--grounded", "--model",
                 "tiny-untrained", "--cache-dir", str(ui_cache), "--device", "cpu",
                 "--temperature", "0", "--max-new-tokens", "4"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert GROUNDED_MARK in err and CONTEXT_HEAD in err


def test_serve_openai_reply_carries_label_context_and_contradictions(tiny_backend, page_png):
    """serve-openai's ``pulse`` extension: a grounded reply (whole or streamed) names the model
    as grounded, gives the context and the consistency check's contradictions of the real
    measurements; a plain reply is labelled as the model alone."""
    import base64
    import threading

    import httpx

    from pulse_app.engine.openai_server import make_server

    crafted = CraftedBackend(tiny_backend)
    server = make_server(crafted, Settings.load(host="127.0.0.1"), 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/chat/completions"
    image = "data:image/png;base64," + base64.b64encode(page_png.read_bytes()).decode()
    label = tiny_backend.info().label

    def body(**extra):
        return {"model": tiny_backend.info().model_id, "max_tokens": 8, **extra, "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": image}},
                                         {"type": "text", "text": "Rate?"}]}]}
    try:
        reply = httpx.post(url, json=body(grounded=True), timeout=120).json()
        pulse = reply["pulse"]
        assert pulse["grounded"] and pulse["label"] == f"{label} · {GROUNDED_MARK}"
        assert pulse["context"].startswith(CONTEXT_HEAD) and "75 bpm" in pulse["context"]
        assert reply["choices"][0]["message"]["content"] == CRAFTED
        assert "heart_rate" in [c["name"] for c in pulse["consistency"]]     # 150 vs 75 bpm

        events = []
        with httpx.stream("POST", url, json=body(grounded=True, stream=True),
                          timeout=120) as response:
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    events.append(json.loads(line.removeprefix("data: ")))
        assert [e.get("pulse") is not None for e in events][-1] and not any(
            e.get("pulse") for e in events[:-1])
        assert events[-1]["pulse"]["consistency"] == pulse["consistency"]

        plain = httpx.post(url, json=body(grounded=False), timeout=120).json()["pulse"]
        assert plain == {"label": label, "grounded": False, "context": None, "consistency": []}
    finally:
        server.shutdown()
        server.server_close()


def test_mini_model_training_questions_can_carry_the_app_context(tmp_path):
    """``data.grounded_fraction``: part of the questions are asked as the app asks a grounded
    one (the same builder), with the record's measurements."""
    from training.mini_model.config import load_stages
    from training.mini_model.data import make_split

    data = load_stages(overrides=["data.grounded_fraction=0.5"]).data
    samples, _ = make_split(tmp_path, 1, 5, data)
    grounded = [s for s in samples if s.meta.get("grounded")]
    assert 0 < len(grounded) < len(samples) and len({s.id for s in samples}) == len(samples)
    for s in grounded:
        head, _, question = s.conversations[0]["value"].removeprefix("<image>\n").partition(
            "\n\n")
        assert head.startswith(CONTEXT_HEAD) and "heart rate" in head and question
    assert load_stages().data.grounded_fraction == 0.4          # the shipped model's recipe


def test_grounding_stage_asks_every_rate_question_with_its_pages_context(tmp_path):
    """The grounding stage's data: every heart-rate question carries its own record's context
    (taken from that page's grounded questions); with swap_fraction 1 each is shown another
    record's page, its answer unchanged; plain questions carry no context; nothing else is."""
    from training.mini_model.config import load_stages
    from training.mini_model.data import grounding_samples, make_split

    data = load_stages(overrides=["data.grounded_fraction=0.5"]).data
    samples, _ = make_split(tmp_path, 3, 5, data)
    context = {s.image: s.conversations[0]["value"].removeprefix("<image>\n").split("\n\n")[0]
               for s in samples if s.meta.get("grounded")}
    by_id = {s.id.removesuffix("-g"): s for s in samples}
    out = grounding_samples(samples, swap_fraction=1.0, plain_per_grounded=0.5, seed=0)
    rate = [q for q in out if q["meta"]["kind"] == "rate"]
    assert {q["id"].removesuffix("-gswap").removesuffix("-g") for q in rate} == {
        i for i, s in by_id.items() if s.meta["kind"] == "rate"}
    for q in out:
        source = by_id[q["id"].removesuffix("-gswap").removesuffix("-g")]
        first = q["conversations"][0]["value"]
        assert first.startswith("<image>\n")
        assert q["conversations"][1:] == source.conversations[1:]        # the same answer
        if q["meta"].get("grounded"):
            assert first.removeprefix("<image>\n").startswith(context[source.image] + "\n\n")
        else:
            assert CONTEXT_HEAD not in first and q["image"] == source.image
        if q["meta"]["kind"] == "rate":
            assert q["id"].endswith("-gswap") and q["image"] != source.image
        elif q["meta"].get("grounded"):
            assert q["meta"]["kind"] == "rhythm" and q["image"] == source.image
    plain = [q for q in out if not q["meta"].get("grounded")]
    assert len(plain) == round(0.5 * (len(out) - len(plain)))
    kept = grounding_samples(samples, swap_fraction=0.0, plain_per_grounded=0.0, seed=0)
    assert all(q["id"].endswith("-g") and q["image"] == by_id[q["id"][:-2]].image for q in kept)
    assert grounding_samples([s for s in samples if not s.meta.get("grounded")],
                             swap_fraction=0.5, plain_per_grounded=1.0, seed=0) == []


def test_grounded_eval_table_scores_each_method_over_what_it_answered():
    from training.grounded_eval import table

    items = [{"kind": "rate", "majority": {"correct": 1.0}, "plain": {"correct": 0.0},
              "grounded": {"correct": 1.0}, "digitiser": {"correct": 1.0}},
             {"kind": "rate", "majority": {"correct": 1.0}, "plain": {"correct": 1.0},
              "grounded": {"correct": 1.0}},
             {"kind": "rhythm", "majority": {"correct": 0.0}, "plain": {"correct": None},
              "grounded": {"correct": 1.0}}]
    rows = table(items)
    assert rows["rate"] == {"n": 2, "majority": 1.0, "majority_n": 2, "plain": 0.5,
                            "plain_n": 2, "grounded": 1.0, "grounded_n": 2, "digitiser": 1.0,
                            "digitiser_n": 1}
    assert rows["rhythm"]["grounded"] == 1.0 and "plain" not in rows["rhythm"]


class _Reader:
    """A backend that states whatever rate its context gives (what a model that reads its
    context would say), or one fixed rate (one that does not)."""

    def __init__(self, fixed=None):
        self.fixed, self.questions = fixed, []

    def stream(self, image, history, question, params, cancel=None):
        import re

        self.questions.append(question)
        rate = self.fixed or int(re.search(r"heart rate (\d+) bpm", question).group(1))
        yield f"The heart rate is about {rate} bpm."


def test_context_probe_tells_a_model_that_reads_its_context_from_one_that_does_not():
    from PIL import Image

    from pulse_app.engine.backend import GenerationParams
    from training.grounded_eval import PROBE_RATES, context_sensitivity

    page, params = Image.new("RGB", (64, 32), "white"), GenerationParams(temperature=0.0)
    reader = _Reader()
    probe = context_sensitivity(reader, page, params)
    assert probe["follows"] == probe["of"] == probe["in_range"] == len(PROBE_RATES)
    assert all(q.startswith(CONTEXT_HEAD) for q in reader.questions)       # the app's words
    assert "heart rate 40 bpm (lead II, high confidence, bradycardia)" in reader.questions[0]
    assert probe["stated"] == {r: r for r in PROBE_RATES}
    deaf = context_sensitivity(_Reader(fixed=50), page, params)
    assert deaf["follows"] <= 1 and deaf["in_range"] == 2     # 50 bpm: right for 40 and 55 only
    # given the page's own reading, only its rate changes: the other measurements stay
    from pulse_app.ecg.measure import Measurements, measured

    own = Measurements({"heart_rate": measured("heart_rate", 75, "V5", 0.8),
                        "qrs": measured("qrs", 96, "median of 12 leads", 0.8)})
    reader = _Reader()
    probe = context_sensitivity(reader, page, params,
                                measurements=own.to_dict()["measurements"])
    assert probe["follows"] == len(PROBE_RATES)
    assert "heart rate 160 bpm (lead V5, high confidence, tachycardia); QRS duration 96 ms" in \
        reader.questions[-1]
    assert not any("75 bpm" in q for q in reader.questions)
