"""The mini model's data: simulated records, rendered by :mod:`training.render`, with their
questions (``training.instruct``) and the vision warm-up's targets.

Training and held-out records come from different seeds. Each page is rendered at ``dpi`` and
stored ``width_px`` wide (the model looks at it through 112 px tiles, so more pixels would only
cost disk). Each record's questions are packed into multi-turn conversations about its image
(LLaVA's format allows it), so one pass of the vision tower teaches several answers.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

from training.mini_model.config import DataConfig

#: Question kinds of the alignment stage: what the image shows most plainly (beats per strip,
#: their regularity), asked in all four question types.
ALIGN_KINDS = ("rate", "rhythm")


def simulated_id(seed: int, n: int) -> str:
    """The id of simulated record ``n`` of ``seed``, as ``training.instruct`` names it."""
    return f"sim-{seed}-{n:06d}"


def simulated_record(record_id: str):
    """The simulated record of :func:`simulated_id` ``record_id`` (``training.instruct``'s
    simulated records), for :class:`training.render.Job`'s ``load``."""
    from training.instruct.dataset import simulated_records

    seed, n = record_id.removeprefix("sim-").rsplit("-", 1)
    return next(simulated_records(1, int(seed), int(n)))


def image_seed(seed: int, n: int) -> int:
    """The renderer's seed of record ``n`` of ``seed``."""
    return seed * 7919 + n


def make_split(out: Path, count: int, seed: int, config: DataConfig, *, start: int = 0,
               extra_mcq: int = 0, workers: int = 1) -> tuple[list, list[dict]]:
    """Render simulated records ``start`` .. ``start + count - 1`` of ``seed`` into
    ``out/images`` (:func:`training.render.render_records`: parallel, resumable); return their
    samples and their vision warm-up targets (rate, rhythm label, R-peak positions and the beat
    intervals' rates in the stored image, :mod:`training.mini_model.targets`).

    ``extra_mcq``: rounds of additional multiple-choice questions per record on basic features
    and rhythm (other phrasings, other option orders; ids end ``-x1``, ``-x2`` ...): picking the
    letter of the option that says what it read is the skill a model this small learns last."""
    from training.instruct import generate_samples
    from training.instruct.dataset import simulated_records
    from training.instruct.generate import Facts
    from training.mini_model.targets import r_peak_positions, rr_segments
    from training.render import Job, output_name, render_records

    images = out / "images"
    records = range(start, start + count)
    jobs = [Job(simulated_id(seed, n), str(images), distort=config.distort, dpi=config.dpi,
                load=simulated_record, render_seeds=(image_seed(seed, n),),
                width_px=config.width_px) for n in records]
    _, _, failed = render_records(jobs, workers, desc=f"rendering {out.name} (seed {seed})")
    if failed:
        raise RuntimeError(f"could not render {len(failed)} records: {failed[:3]}")
    samples, targets = [], []
    for job, record in zip(jobs, simulated_records(count, seed, start)):
        sidecar = json.loads((images / f"{output_name(job.path)}_0.json").read_text())
        image = f"images/{sidecar['image']}"
        mine = generate_samples(record, image, seed=0)
        for k in range(1, extra_mcq + 1):
            mine += [dataclasses.replace(s, id=f"{s.id}-x{k}") for s in generate_samples(
                record, image, seed=k, tasks=("basic", "rhythm"), qtypes=("mcq",))]
        samples += ground_samples(mine, record, config.grounded_fraction, seed)
        facts = Facts(record)                 # rate and rhythm as the questions state them
        onsets, scale = record.meta["qrs_onsets_s"], sidecar["image_scale"]
        targets.append({
            "image": image, "heart_rate_bpm": facts.rate, "rhythm": facts.rhythm,
            "r_peaks_xy": r_peak_positions(sidecar, onsets, scale),
            "rr_segments": rr_segments(sidecar, onsets, scale)})
    return samples, targets


def record_context(record) -> str:
    """The measurement context of a record, in the app's words
    (:func:`pulse_app.grounding.measurement_context`, imported, the one builder): measured on
    the record's signals (:func:`pulse_app.ecg.measure.ecg_measure`), which is what the
    digitiser measures on a clean page without its reading error (reading every training page
    with the digitiser would cost about 1.5 s a page)."""
    from pulse_app.ecg.measure import ecg_measure
    from pulse_app.grounding import measurement_context

    measured = ecg_measure(record.signal, record.fs, record.leads)
    return measurement_context(measured.to_dict()["measurements"])


def ground_samples(samples: list, record, fraction: float, seed: int) -> list:
    """One record's ``samples`` with about ``fraction`` of them (drawn from ``seed`` and each
    sample's id) asked with the record's measurement context before the question
    (:func:`pulse_app.grounding.grounded_question`, as the app asks a grounded question); their
    ids end ``-g`` and ``meta["grounded"]`` is True.

    >>> from training.instruct.format import Sample
    >>> ground_samples([Sample("a", None, [])], None, 0.0, 0)[0].id
    'a'
    """
    from pulse_app.grounding import grounded_question

    chosen = [s for s in samples if random.Random(f"grounded|{seed}|{s.id}").random() < fraction]
    if not chosen:
        return samples
    context = record_context(record)
    out = []
    for sample in samples:
        if sample not in chosen:
            out.append(sample)
            continue
        conversations = [dict(c) for c in sample.conversations]
        first = conversations[0]["value"]
        prefix = "<image>\n" if first.startswith("<image>\n") else ""
        conversations[0]["value"] = prefix + grounded_question(first[len(prefix):], context)
        out.append(dataclasses.replace(sample, id=sample.id + "-g", conversations=conversations,
                                       meta={**sample.meta, "grounded": True}))
    return out


def grounding_samples(samples: list, *, swap_fraction: float, plain_per_grounded: float,
                       seed: int) -> list[dict]:
    """The grounding stage's single questions: every heart-rate question of the training records
    asked with its record's measurement context, about ``swap_fraction`` of them shown another
    record's page (the answer is still the context's record's, so the measured rate is the only
    way to it: the instruct stage's model reads the rate off the page, mostly not the context,
    since on simulated pages both agree); the grounded rhythm questions as they are; and
    ``plain_per_grounded`` times as many questions of every kind asked without context, so the
    other skills are kept. Contexts come from the grounded questions of the same page
    (:func:`ground_samples`), so ``samples`` must include some (``data.grounded_fraction`` > 0).

    >>> from training.instruct.format import Sample
    >>> grounding_samples([Sample("a", "p.png", [], meta={"kind": "rate"})], swap_fraction=1.0,
    ...                   plain_per_grounded=1.0, seed=0)
    []
    """
    from pulse_app.grounding import grounded_question, split_grounded
    from training.instruct.format import IMAGE_PREFIX

    contexts = {}
    for sample in samples:
        if sample.meta.get("grounded"):
            contexts.setdefault(sample.image, split_grounded(sample.turns[0].question)[0])
    rng = random.Random(seed)
    images, out, plain = sorted(contexts), [], []
    for sample in samples:
        kind, grounded = sample.meta.get("kind"), sample.meta.get("grounded")
        if sample.image not in contexts:
            continue
        if kind == "rate" or (kind == "rhythm" and grounded):
            ask = grounded_question(split_grounded(sample.turns[0].question)[1],
                                    contexts[sample.image])
            image, tag = sample.image, "-g"
            if kind == "rate" and len(images) > 1 and rng.random() < swap_fraction:
                image = rng.choice([i for i in rng.sample(images, 2) if i != sample.image])
                tag = "-gswap"
            conversations = [dict(c) for c in sample.conversations]
            conversations[0]["value"] = IMAGE_PREFIX + ask
            out.append(dataclasses.replace(sample, id=sample.id.removesuffix("-g") + tag,
                                           image=image, conversations=conversations,
                                           meta={**sample.meta, "grounded": True}))
        elif not grounded:
            plain.append(sample)
    out += rng.sample(plain, min(len(plain), round(plain_per_grounded * len(out))))
    rng.shuffle(out)
    return [s.to_dict() for s in out]


def pack_conversations(samples: list, turns: int, seed: int) -> list[dict]:
    """Group samples of the same image into conversations of up to ``turns`` exchanges
    (shuffled; the first question keeps ``<image>``), as ECGInstruct dicts."""
    rng = random.Random(seed)
    by_image: dict[str, list] = {}
    for sample in samples:
        by_image.setdefault(sample.image, []).append(sample)
    packed = []
    for image, group in by_image.items():
        group = group[:]
        rng.shuffle(group)
        for start in range(0, len(group), turns):
            chunk = group[start:start + turns]
            conversations = []
            for n, sample in enumerate(chunk):
                question, answer = sample.turns[0].question, sample.turns[0].answer
                conversations += [{"from": "human",
                                   "value": ("<image>\n" if n == 0 else "") + question},
                                  {"from": "gpt", "value": answer}]
            packed.append({"id": f"{chunk[0].id}+{len(chunk)}", "image": image,
                           "conversations": conversations})
    rng.shuffle(packed)
    return packed


def alignment_samples(samples: list) -> list[dict]:
    """Stage 1 data: each image with its heart-rate and rhythm questions, one per sample (a
    short LLaVA alignment stage). These answers depend on the image alone, so the language model
    gets far more signal per step about what the tower sees than from the full mix, where most
    answer tokens are template or can be copied from earlier answers."""
    return [dict(s.to_dict(), id=s.id + "-align") for s in samples
            if s.meta.get("kind") in ALIGN_KINDS]


def tokenizer_corpus(samples: list) -> str:
    """Every question and answer, plus the template's words (system sentence, roles)."""
    from pulse_app.engine.tiny import CORPUS

    lines = dict.fromkeys(CORPUS.splitlines())          # unique lines, in order
    for sample in samples:
        lines.update(dict.fromkeys(line for c in sample.conversations
                                   for line in c["value"].splitlines()))
    return "\n".join(lines)
