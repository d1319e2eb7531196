"""The one answering runner: batched local generation gives the streamed answers exactly, on the
tiny model and the shipped mini model, for images of different sizes, histories and two-turn
requests; answers resume from their file; another model's file is refused."""

from __future__ import annotations

import json

import pytest

from pulse_app.conversation import Turn
from pulse_app.engine.backend import GenerationParams, answer
from training.generation import AnswersMismatch, Request, run_requests

GREEDY = GenerationParams(temperature=0, max_new_tokens=16, seed=0)


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """Three rendered ECG pages of different sizes (so: different tile grids)."""
    from pulse_app.ecg.render import render_ecg
    from training.instruct.dataset import simulated_records

    folder = tmp_path_factory.mktemp("pages")
    records = list(simulated_records(3, seed=31))
    for record, dpi, layout in zip(records, (60, 100, 80), ("3x4+II", "12x1", "6x2")):
        render_ecg(record, dpi=dpi, layout=layout, seed=1).image.save(
            folder / f"{record.record_id}.png")
    return folder, [f"{r.record_id}.png" for r in records]


def _requests(names):
    return [Request("a", names[0], ["What is the heart rate?"]),
            Request("b", names[1], ["Is there atrial fibrillation?"],
                    history=[Turn("What is the rhythm?", "Sinus rhythm.")]),
            Request("c", names[2], ["Describe this ECG.", "What is the axis?"]),
            Request("d", names[0], ["Any ST elevation?"])]


def _streamed(backend, folder, requests, params=GREEDY):
    from PIL import Image

    out = {}
    for r in requests:
        image = Image.open(folder / r.image).convert("RGB")
        history, answers = list(r.history), []
        for q in r.questions:
            answers.append(answer(backend, image, history, q, params))
            history.append(Turn(q, answers[-1]))
        out[r.id] = answers
    return out


def test_image_sizes_differ(pages):
    from PIL import Image

    folder, names = pages
    assert len({Image.open(folder / n).size for n in names}) == 3


def test_batched_answers_equal_streamed_answers_on_the_tiny_model(tiny_backend, pages):
    """Long random answers: they end in cut UTF-8 bytes, which streaming holds back."""
    folder, names = pages
    requests = _requests(names)
    long = GenerationParams(temperature=0, max_new_tokens=96, seed=0)
    batched = run_requests(tiny_backend, requests, image_root=folder, params=long,
                           batch_size=4, progress=False)
    assert batched == _streamed(tiny_backend, folder, requests, long)
    assert len(batched["c"]) == 2 and all(a.strip() for a in batched["c"])


def test_batched_answers_equal_streamed_answers_on_the_mini_model(pages, tmp_path, monkeypatch):
    from training.evaluate import load_backend

    monkeypatch.setenv("PULSE_CACHE_DIR", str(tmp_path / "cache"))
    backend = load_backend("offline-default", device="cpu")
    assert "pulse-mini" in backend.info().label
    folder, names = pages
    requests = _requests(names)
    batched = run_requests(backend, requests, image_root=folder, params=GREEDY, batch_size=3,
                           progress=False)
    assert batched == _streamed(backend, folder, requests)


def test_questions_about_one_image_share_its_prompt_prefix(tiny_backend, pages):
    """Three questions about one page (one after a history) and one about another: the prompt
    up to each image's last token runs through the model once per image, each question's row
    of the key/value cache is its image's, and the answers are still the streamed ones."""
    import torch
    from PIL import Image

    folder, names = pages
    pictures = [Image.open(folder / n).convert("RGB") for n in names[:2]]
    one, other = (tiny_backend.prepare_image(p) for p in pictures)
    images, which = [one, one, other, one], [0, 0, 1, 0]
    histories = [[], [Turn("What is the rhythm?", "Sinus rhythm.")], [], []]
    questions = ["What is the heart rate?", "Is it regular?", "What is the axis?", "ST?"]
    encoded = [tiny_backend.encode(*q) for q in zip(images, histories, questions)]
    image_token = tiny_backend._model.config.image_token_index
    prefix = [int((e["input_ids"][0] == image_token).nonzero()[-1]) + 1 for e in encoded]
    assert prefix[0] == prefix[1] == prefix[3]
    with torch.inference_mode():
        inputs = tiny_backend._shared_image_prefixes(encoded)
        assert tiny_backend._shared_image_prefixes([encoded[0], encoded[2]]) is None
    assert inputs["cache"].get_seq_length() == max(prefix)
    assert inputs["input_ids"].shape[0] == 4
    assert inputs["attention_mask"].sum(1).tolist() == [e["input_ids"].shape[1] for e in encoded]
    long = GenerationParams(temperature=0, max_new_tokens=48, seed=0)
    batched = tiny_backend.generate_batch(images, histories, questions, long)
    assert batched == [answer(tiny_backend, pictures[w], h, q, long)
                       for w, h, q in zip(which, histories, questions)]


def test_generate_batch_refuses_a_mix_of_images_and_none(tiny_backend, pages):
    from PIL import Image

    folder, names = pages
    with pytest.raises(ValueError, match="all images or none"):
        tiny_backend.generate_batch([Image.open(folder / names[0]), None], [[], []],
                                    ["Rate?", "Rate?"], GREEDY)


def test_answers_resume_from_their_file_and_refuse_another_model(tiny_backend, pages, tmp_path):
    folder, names = pages
    path = tmp_path / "answers.jsonl"
    requests = _requests(names)
    first = run_requests(tiny_backend, requests[:2], image_root=folder, params=GREEDY,
                         answers_path=path, progress=False)
    assert len(path.read_text().splitlines()) == 2
    path.write_text(path.read_text() + '{"id": "cut by a cra')        # a crash mid-line
    both = run_requests(tiny_backend, requests, image_root=folder, params=GREEDY,
                        answers_path=path, progress=False)
    rows = [json.loads(line) for line in path.read_text().splitlines()[:2]]
    assert {r["id"] for r in rows} == {"a", "b"}
    assert both["a"] == first["a"] and both["b"] == first["b"]
    assert sum(1 for line in path.read_text().splitlines() if line.startswith('{"id": "c"')) == 1
    with pytest.raises(AnswersMismatch, match="holds answers of"):
        run_requests(tiny_backend, requests, image_root=folder,
                     params=GenerationParams(temperature=0, max_new_tokens=8, seed=0),
                     answers_path=path, progress=False)


def test_a_missing_image_is_one_clear_line(tiny_backend, pages):
    from pulse_app.errors import PulseError

    folder, _ = pages
    with pytest.raises(PulseError, match="image gone.png of x not found under"):
        run_requests(tiny_backend, [Request("x", "gone.png", ["Rate?"])], image_root=folder,
                     params=GREEDY, batch_size=1, progress=False)


def test_a_question_too_long_for_the_model_is_recorded_not_fatal(tiny_backend, pages, tmp_path,
                                                                   capsys):
    folder, names = pages
    path = tmp_path / "answers.jsonl"
    context = tiny_backend._model.config.text_config.max_position_embeddings
    requests = [Request("ok", names[0], ["Rate?"]),
                Request("long", names[0], ["Rate? " * context])]
    for batch_size in (4, 1):
        path.unlink(missing_ok=True)
        answers = run_requests(tiny_backend, requests, image_root=folder, params=GREEDY,
                               answers_path=path, batch_size=batch_size, progress=False)
        assert answers["ok"][0] and answers["long"] == [""]
        rows = {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}
        assert "too long" in rows["long"]["errors"][0] and "errors" not in rows["ok"]
        assert "1 question(s) got no answer" in capsys.readouterr().err
