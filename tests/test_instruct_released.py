"""The released ECGInstruct layout (one JSON list, images in per-source folders): streamed,
verified and counted like Table A1, sharded, mixed with generated data by ratio, and trained on
by training.train directly (tiny model, CPU)."""

from __future__ import annotations

import json
from collections import Counter

from PIL import Image

from training.instruct.dataset import build_dataset, simulated_records
from training.instruct.format import iter_items, read_samples
from training.instruct.released import main, mix, parse_part, table_a1_rows, verify

MCQ = ("<image>\nWhat can be inferred about the cardiac axis on this ECG?\nA. The axis is "
       "normal\nB. The axis is deviated to the right\nC. The axis is indeterminate\nD. The axis "
       "is deviated to the left")


def released_file(tmp_path, image_size=(220, 170)):
    """Items laid out as the released set: ids and image folders per source, a JSON list."""
    images = tmp_path / "images"
    items = [
        ("mimic-44111511", "mimic/p1127/p11273115/s44111511/44111511-0.png", MCQ,
         "The QRS axis is normal. Answer: A."),
        ("mimic-44111512", "mimic_v4/p1127/p11273116/s44111512/44111512-0.png",
         "<image>\nWrite a clinical report for this ECG.", "Sinus rhythm. Normal ECG."),
        ("ptbxl-00002", "ptb-xl/00000/00002_hr-0.png",
         "<image>\nIs there atrial fibrillation?", "No."),
        ("ecgqa-17", "ptb-xl/00000/00004_hr-0.png",
         "<image>\nDoes this ECG show sinus bradycardia?", "Yes."),
        ("code15-1169160", "code15_v4/1169160-0.png",
         "<image>\nFill in the blank: the rhythm is ____.", "Sinus bradycardia."),
    ]
    rows = []
    for item_id, image, question, answer in items:
        (images / image).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", image_size, "white").save(images / image)
        rows.append({"id": item_id, "image": image,
                     "conversations": [{"from": "human", "value": question},
                                       {"from": "gpt", "value": answer}]})
    path = tmp_path / "ECGInstruct.json"
    path.write_text(json.dumps(rows, indent=2))
    return path, images


def test_released_layout_is_streamed_verified_and_counted(tmp_path, capsys):
    path, images = released_file(tmp_path)
    result = verify(path, image_root=images)
    assert (result["items"], result["valid"], result["missing_images"]) == (5, 5, 0)
    assert result["counts"] == Counter({
        ("MIMIC-ECG", "basic", "mcq"): 1, ("MIMIC-ECG", "report", "open"): 1,
        ("PTB-XL", "rhythm", "close"): 1, ("ECG-QA", "rhythm", "close"): 1,
        ("CODE-15%", "rhythm", "fill"): 1})
    rows = table_a1_rows(result["counts"])
    assert ("MIMIC-ECG Total", "", "", 2) in rows and rows[-1] == ("Total", "", "", 5)
    # sharded verification: the shards' counts add up to the whole
    parts = [verify(path, shard=(i, 3))["counts"] for i in range(3)]
    assert sum(parts, Counter()) == result["counts"]
    # a broken item and a missing image are reported by place, the rest still counted
    rows = json.loads(path.read_text())
    rows.append({"id": "bad", "image": "mimic/x.png", "conversations": [
        {"from": "gpt", "value": "no question"}]})
    rows.append({**rows[0], "id": "lost", "image": "mimic/none-0.png"})
    path.write_text(json.dumps(rows))
    assert main(["verify", str(path), "--images", str(images)]) == 1
    out = capsys.readouterr().out
    assert "7 items, 6 valid, 1 malformed, 1 images missing" in out
    assert "item 5" in out and "mimic/none-0.png" in out and "MIMIC-ECG" in out


def test_streaming_reads_a_list_without_loading_it(tmp_path):
    path = tmp_path / "big.json"
    with open(path, "w") as f:
        f.write("[\n" + ",\n".join(json.dumps({"id": str(i), "conversations": [
            {"from": "human", "value": "Rate?"}, {"from": "gpt", "value": f"{i} bpm"}]})
            for i in range(3000)) + "\n]")
    items = iter_items(path)
    first = next(items)
    assert first == ("big.json item 0", {"id": "0", "conversations": [
        {"from": "human", "value": "Rate?"}, {"from": "gpt", "value": "0 bpm"}]})
    assert sum(1 for _ in items) == 2999


def test_mixed_with_generated_data_and_fed_to_training(tmp_path):
    from tests.test_train import tiny_config
    from training.train import train

    released, images = released_file(tmp_path / "released")
    gen = tmp_path / "generated"
    build_dataset(simulated_records(2, seed=4), gen, seed=4, dpi=25, distort="none",
                  name="train.jsonl")
    mixed = tmp_path / "mix" / "mixed.jsonl"
    written = mix([parse_part(f"{released}=1.0@{images}"),
                   parse_part(f"{gen / 'train.jsonl'}=0.4")], mixed, seed=1)
    assert written == Counter({str(released): 5, str(gen / "train.jsonl"): 2})
    samples = read_samples(mixed)                          # every image found from the mix
    assert len(samples) == 7 and {s.image.split("/")[1] for s in samples} >= {"released",
                                                                               "generated"}
    assert mix([parse_part(f"{released}=1.0@{images}"), parse_part(f"{gen / 'train.jsonl'}=0.4")],
               tmp_path / "mix2" / "mixed.jsonl", seed=1) == written
    assert (tmp_path / "mix2" / "mixed.jsonl").read_bytes() == mixed.read_bytes()  # same seed
    out = train(tiny_config(mixed, tmp_path / "run", max_steps=1, global_batch_size=2,
                            per_device_batch_size=1))
    assert (out / "config.json").is_file()
