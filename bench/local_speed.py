"""Time to first token and decode speed of the ``local`` backend, tiny model, CPU.

Baseline, measured in the same run on the same converted folder: stock transformers as its
documentation shows it (``LlavaNextProcessor`` + ``LlavaNextForConditionalGeneration.generate``
with a ``TextIteratorStreamer`` in a thread). The stock path lays image tokens out as
``spatial_unpad`` (the tiny model is ``flat``), so its prompt length differs: both are printed.

    python -m bench.local_speed [--runs 5] [--new-tokens 64]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch
from PIL import Image

from pulse_app.conversation import build_prompt
from pulse_app.engine.backend import GenerationParams

REPO = Path(__file__).resolve().parent.parent
ECG = REPO.parent / "shared" / "data" / "ecg-images" / "fullScan.png"
QUESTION = "What is the heart rhythm, and is there any ST elevation?"


class ForwardCounter:
    """Counts forward passes of a model (= tokens generated, the prompt's pass included)."""

    def __init__(self, model):
        self.count = 0
        self.handle = model.register_forward_pre_hook(self)

    def __call__(self, *args):
        self.count += 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def time_ours(backend, image, new_tokens: int) -> tuple[float, float, int]:
    """(seconds to first text, decode tokens/s, tokens) for ``LocalBackend.stream``."""
    params = GenerationParams(temperature=0, max_new_tokens=new_tokens)
    with ForwardCounter(backend._model) as steps:
        start, first = time.perf_counter(), None
        for _ in backend.stream(image, [], QUESTION, params):
            first = first or time.perf_counter()
        end = time.perf_counter()
    return first - start, (steps.count - 1) / (end - first), steps.count


def time_stock(model, processor, image, new_tokens: int) -> tuple[float, float, int, int]:
    """The same for the documented transformers path: processor, generate, TextIteratorStreamer."""
    from transformers import TextIteratorStreamer

    with ForwardCounter(model) as steps:
        start, first = time.perf_counter(), None
        inputs = processor(images=image, text=build_prompt([], QUESTION), return_tensors="pt")
        streamer = TextIteratorStreamer(processor.tokenizer, skip_prompt=True,
                                        skip_special_tokens=True, timeout=120)
        worker = threading.Thread(target=model.generate, kwargs=dict(
            **inputs, max_new_tokens=new_tokens, do_sample=False, streamer=streamer))
        worker.start()
        for text in streamer:
            if text:
                first = first or time.perf_counter()
        end = time.perf_counter()
        worker.join()
    return first - start, (steps.count - 1) / (end - first), steps.count, inputs["input_ids"].shape[1]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args(argv)

    from transformers import LlavaNextForConditionalGeneration, LlavaNextProcessor
    from transformers.utils import logging as hf_logging

    from pulse_app.engine.local import LocalBackend
    from pulse_app.engine.tiny import ensure_tiny

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    image = (Image.open(ECG).convert("RGB") if ECG.is_file()
             else Image.new("RGB", (2200, 1700), (250, 235, 235)))
    with tempfile.TemporaryDirectory() as cache:
        folder = ensure_tiny(cache)
        ours = LocalBackend(str(folder), device="cpu", cache_dir=cache, progress=lambda m: None)
        ours.load()
        stock = LlavaNextForConditionalGeneration.from_pretrained(folder).eval()
        processor = LlavaNextProcessor.from_pretrained(folder)
        prompt_ours = ours.encode(image, [], QUESTION)["input_ids"].shape[1]
        time_ours(ours, image, 4), time_stock(stock, processor, image, 4)       # warm-up
        a, b = [], []
        for _ in range(args.runs):                      # interleaved: same machine conditions
            a.append(time_ours(ours, image, args.new_tokens))
            b.append(time_stock(stock, processor, image, args.new_tokens))
    ttft_a, ttft_b = statistics.median(r[0] for r in a), statistics.median(r[0] for r in b)
    tps_a, tps_b = statistics.median(r[1] for r in a), statistics.median(r[1] for r in b)
    print(f"local backend, tiny model, CPU ({torch.get_num_threads()} threads), image "
          f"{image.size[0]}x{image.size[1]}, {args.new_tokens} new tokens, median of {args.runs}")
    print(f"  prompt tokens: ours {prompt_ours} (flat), stock {b[0][3]} (spatial_unpad)")
    print(f"  time to first token: ours {ttft_a * 1000:.1f} ms, stock transformers "
          f"{ttft_b * 1000:.1f} ms  -> ratio ours/stock {ttft_a / ttft_b:.2f}")
    print(f"  decode speed:        ours {tps_a:.0f} tok/s, stock transformers {tps_b:.0f} tok/s"
          f"  -> ratio ours/stock {tps_a / tps_b:.2f}")
    print(f"  tokens generated per run: ours {a[0][2]}, stock {b[0][2]}")


if __name__ == "__main__":
    main()
