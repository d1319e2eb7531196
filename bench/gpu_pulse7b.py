"""PULSE-7B on a GPU: load time, time to first token for an anyres ECG page, decode tokens/s in
bf16 and 4-bit, each against the memory-bandwidth roofline (the baseline of every ratio).

Decoding one token reads every weight of the language model once, so a GPU cannot decode faster
than ``bandwidth / bytes of weights``; the bench prints measured / roofline for both precisions,
using the copy bandwidth it measures on the card (and the datasheet figure when the card is
known). By default the model has PULSE-7B's exact shapes (``pulse7b_config()``, no download) and
random weights, which decode at the same speed; ``--model`` loads real weights (a hub id such as
PULSE-ECG/PULSE-7B, or a folder) through the app's local backend instead.

    python -m bench.gpu_pulse7b [--new-tokens 128] [--precisions bf16,4bit] [--model ID_OR_DIR]

On a machine without CUDA it prints why it skipped and returns.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ECG = REPO.parent / "shared" / "data" / "ecg-images" / "fullScan.png"
#: Datasheet memory bandwidth, GB/s, by a substring of torch.cuda.get_device_name().
DATASHEET_GBS = {"H200": 4800, "H100 NVL": 3900, "H100 PCIe": 2000, "H100": 3350,
                 "A100-SXM4-80GB": 2039, "A100 80GB PCIe": 1935, "A100": 1555, "L40S": 864,
                 "L4": 300, "A10G": 600, "A10": 600, "T4": 320, "RTX 4090": 1008, "RTX 3090": 936}
#: Text around the image: a typical one-question prompt (ids of ordinary Llama tokens).
PROMPT_TEXT_TOKENS = 60


def datasheet_bandwidth_gbs(device_name: str) -> float | None:
    """The datasheet figure for a card, e.g. 3350 for "NVIDIA H100 80GB HBM3"."""
    for key, gbs in DATASHEET_GBS.items():
        if key in device_name:
            return float(gbs)
    return None


def decode_weight_bytes(model) -> int:
    """Bytes of weights one decode step reads: the language model and lm_head (the embedding
    table is only gathered, one row; the vision tower and projector run once, at prefill).
    Works on the meta device and on 4-bit models (packed storage + quantisation state)."""
    total = 0
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if "vision_tower" in name or "multi_modal_projector" in name or "embed_tokens" in name:
            continue
        total += tensor.numel() * tensor.element_size()
        state = getattr(tensor, "quant_state", None)
        if state is not None and getattr(state, "absmax", None) is not None:
            total += state.absmax.numel() * state.absmax.element_size()
    return total


def prompt_inputs(config, image, device="cpu") -> dict:
    """Model inputs for one question about ``image`` as the app builds them (flat anyres)."""
    import torch

    from pulse_app.engine.anyres import AnyresGeometry, anyres_pixel_values

    geometry = AnyresGeometry.from_config(config)
    count = geometry.image_token_count(image.size)
    text = torch.randint(100, min(30000, config.image_token_index), (PROMPT_TEXT_TOKENS,),
                         generator=torch.Generator().manual_seed(0))
    ids = torch.cat([torch.tensor([1]), text[:35], torch.full((count,), config.image_token_index),
                     text[35:]])[None]
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "pixel_values": anyres_pixel_values(image, geometry)[None].to(device),
            "image_sizes": torch.tensor([[image.height, image.width]], device=device)}


def measure_copy_bandwidth_gbs(device) -> float:
    """Achievable device-memory bandwidth: a 2 GiB device-to-device copy (read + write)."""
    import torch

    src = torch.empty(1 << 30, dtype=torch.float16, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(10):
        dst.copy_(src)
    torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - start) / 10
    del src, dst
    torch.cuda.empty_cache()
    return 2 * (1 << 31) / seconds / 1e9


def random_model(config, precision: str, device):
    """A model of ``config``'s exact architecture with random weights on ``device``, bf16 or
    4-bit NF4 (PULSE-7B: ``pulse7b_config()``)."""
    import torch

    from pulse_app.engine.pulse_model import PulseLlavaNextForConditionalGeneration

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):                   # initialised in place: no host copy
            model = PulseLlavaNextForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    if precision == "4bit":
        quantize_language_model_nf4(model, device)
    elif precision != "bf16":
        raise ValueError(f"precision {precision!r}: this bench does bf16 and 4bit")
    return model.eval()


def quantize_language_model_nf4(model, device) -> None:
    """Replace the language model's Linear layers with bitsandbytes NF4 ones (as the app's
    4-bit loading does; vision tower, projector and lm_head stay bf16)."""
    import bitsandbytes as bnb
    import torch

    language = model.model.language_model
    for parent in list(language.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear):
                q = bnb.nn.Linear4bit(child.in_features, child.out_features,
                                      bias=child.bias is not None, compute_dtype=torch.bfloat16,
                                      quant_type="nf4", device="cpu")
                q.weight = bnb.nn.Params4bit(child.weight.data.cpu(), requires_grad=False,
                                             quant_type="nf4")
                q = q.to(device)
                setattr(parent, child_name, q)
    torch.cuda.empty_cache()


def load_real(model_id: str, precision: str):
    """Real weights through the app's local backend (download/convert/load as the app does)."""
    from pulse_app.engine.local import LocalBackend

    backend = LocalBackend(model_id, device="cuda", precision=precision, progress=print)
    backend.load()
    return backend._model


def time_generation(model, inputs, new_tokens: int) -> tuple[float, float]:
    """(time to first token s, decode tokens/s) of greedy generation, EOS ignored."""
    import torch

    def sync():
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def run(n):
        sync()
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                 eos_token_id=None, pad_token_id=0)
        sync()
        assert out.shape[1] - inputs["input_ids"].shape[1] == n, "generation stopped early"
        return time.perf_counter() - start

    run(2)                                                   # warm-up (kernels, allocator)
    first = min(run(1) for _ in range(3))
    total = run(new_tokens)
    return first, (new_tokens - 1) / max(total - first, 1e-9)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--precisions", default="bf16,4bit")
    parser.add_argument("--model", default=None,
                        help="real weights (hub id or folder); default: random, exact shapes")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("gpu_pulse7b: skipped, no CUDA GPU here (run it on a GPU machine: "
              "python -m bench.gpu_pulse7b)")
        return
    from PIL import Image

    from pulse_app.engine.convert import pulse7b_config

    device = torch.device("cuda", 0)
    name = torch.cuda.get_device_name(device)
    copy_gbs = measure_copy_bandwidth_gbs(device)
    sheet_gbs = datasheet_bandwidth_gbs(name)
    image = (Image.open(ECG).convert("RGB") if ECG.is_file()
             else Image.new("RGB", (2200, 1700), (250, 235, 235)))
    inputs_cpu = prompt_inputs(pulse7b_config(), image)
    print(f"PULSE-7B {'(' + args.model + ')' if args.model else '(exact shapes, random weights)'}"
          f" on {name}; ECG page {image.size[0]}x{image.size[1]} -> prompt "
          f"{inputs_cpu['input_ids'].shape[1]} tokens (flat anyres), {args.new_tokens} new tokens")
    print(f"  memory bandwidth: measured copy {copy_gbs:.0f} GB/s"
          + (f", datasheet {sheet_gbs:.0f} GB/s" if sheet_gbs else ""))
    results = {}
    for precision in args.precisions.split(","):
        start = time.perf_counter()
        try:
            model = (load_real(args.model, precision) if args.model
                     else random_model(pulse7b_config(), precision, device))
        except Exception as error:  # noqa: BLE001 - report and go on with the next precision
            print(f"  {precision}: could not load ({type(error).__name__}: {error})")
            continue
        torch.cuda.synchronize()
        load_s = time.perf_counter() - start
        inputs = {k: v.to(device) for k, v in inputs_cpu.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)
        ttft, tps = time_generation(model, inputs, args.new_tokens)
        weight_gb = decode_weight_bytes(model) / 1e9
        roofline = copy_gbs / weight_gb
        results[precision] = tps
        print(f"  {precision:>5}: load {load_s:.1f} s, time to first token {ttft * 1000:.0f} ms, "
              f"decode {tps:.1f} tok/s; weights read per token {weight_gb:.2f} GB -> roofline "
              f"{roofline:.0f} tok/s (measured copy bw)"
              + (f", {sheet_gbs / weight_gb:.0f} tok/s (datasheet)" if sheet_gbs else "")
              + f"  -> ratio measured/roofline {tps / roofline:.2f}; peak memory "
              f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")
        del model, inputs
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    if "bf16" in results and "4bit" in results:
        print(f"  ratio 4bit/bf16 decode speed: {results['4bit'] / results['bf16']:.2f}")


if __name__ == "__main__":
    main()
