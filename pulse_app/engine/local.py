"""The local backend: a PULSE-style model on this machine, through transformers (CPU or GPU).

Reads top to bottom, like nanoGPT's ``sample.py``:

1. find the weights: the offline default, a folder, or a hub id (downloaded); a checkpoint in
   the original LLaVA layout is converted once and cached;
2. choose the device and precision (CUDA bf16, fp16 before Ampere, 4/8-bit on request, CPU fp32);
3. load once, lazily, and refuse to run if any weight was missing (random) in the checkpoint;
4. per question: LLaVA's anyres image tiles, LLaVA's prompt token ids, ``generate`` in a worker
   thread, text streamed as it comes, stopped within a token by ``cancel`` or by closing the
   stream.

>>> backend = LocalBackend()                      # the offline default model   # doctest: +SKIP
>>> for chunk in backend.stream(image, [], "What is the rhythm?"):           # doctest: +SKIP
...     print(chunk, end="")
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from pulse_app.conversation import Turn, build_prompt, encode_prompt
from pulse_app.engine.backend import GenerationParams, ModelInfo
from pulse_app.engine.anyres import AnyresGeometry, anyres_pixel_values
from pulse_app.engine.checkpoint import PROVENANCE_KEY, read_config
from pulse_app.engine.convert import checkpoint_fingerprint, ensure_converted
from pulse_app.engine.llama_tokenizer import LlamaChunkEncoder
from pulse_app.engine.pulse_model import PulseLlavaNextForConditionalGeneration
from pulse_app.errors import HardwareError, ModelUnavailable, PulseError
from pulse_app.settings import ASSETS_DIR, OFFLINE_DEFAULT_MODEL, Settings

log = logging.getLogger(__name__)
Progress = Callable[[str], None]

#: The trained mini model shipped with the app (a later issue trains it); else the tiny one.
MINI_MODEL_DIR = ASSETS_DIR / "pulse-mini"
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


# -- 1. find the weights ------------------------------------------------------------------------

def download(repo_id: str, revision: str | None, progress: Progress) -> Path:
    """A hub checkpoint in the local HuggingFace cache (downloaded if needed)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from huggingface_hub import constants

    small = ["*.json", "*.model", "*.jinja", "*.md"]

    def fetch(local_only: bool) -> Path:
        folder = Path(snapshot_download(repo_id, revision=revision, local_files_only=local_only,
                                        allow_patterns=small + ["*.safetensors"]))
        if not list(folder.glob("*.safetensors")):            # older checkpoints: .bin only
            folder = Path(snapshot_download(repo_id, revision=revision,
                                            local_files_only=local_only,
                                            allow_patterns=small + ["*.bin"]))
        return folder

    try:
        try:
            folder = fetch(local_only=True)                   # cached: no network, no message
            if list(folder.glob("*.safetensors")) or list(folder.glob("*.bin")):
                return folder
        except LocalEntryNotFoundError:
            if constants.HF_HUB_OFFLINE:
                raise
        progress(f"downloading {repo_id} from the HuggingFace hub (first use only)")
        return fetch(local_only=False)
    except GatedRepoError as e:
        raise ModelUnavailable(f"{repo_id} is gated on the HuggingFace hub",
                               hint="accept its terms on huggingface.co and set HF_TOKEN") from e
    except RepositoryNotFoundError as e:
        raise ModelUnavailable(f"no model {repo_id!r} on the HuggingFace hub (or it is private)",
                               hint="check the id, or set HF_TOKEN for a private model") from e
    except RevisionNotFoundError as e:
        raise ModelUnavailable(f"{repo_id} has no revision {revision!r}",
                               hint="check --revision") from e
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as e:
        raise ModelUnavailable(f"cannot download {repo_id}: the HuggingFace hub is unreachable "
                               "and no copy is cached", hint="connect once to download it, or "
                               "pass a folder holding the checkpoint with --model") from e
    except (HfHubHTTPError, OSError) as e:
        raise ModelUnavailable(f"downloading {repo_id} failed ({type(e).__name__})",
                               hint="check the network and the free disk space, then retry") from e


def resolve_model(model: str, revision: str | None, cache_dir: str | Path,
                  progress: Progress) -> tuple[Path, str | None]:
    """The transformers-layout folder to load and its revision (hub commit or content hash)."""
    from pulse_app.engine.tiny import TINY_NAME, ensure_tiny

    if model == OFFLINE_DEFAULT_MODEL and (MINI_MODEL_DIR / "config.json").is_file():
        source = MINI_MODEL_DIR
    elif model in (OFFLINE_DEFAULT_MODEL, TINY_NAME):
        source = ensure_tiny(cache_dir, progress=progress)
    elif Path(model).expanduser().exists():
        source = Path(model).expanduser()
        if not source.is_dir():
            raise ModelUnavailable(f"{model} is a file; --model takes a folder or a hub id")
    elif HUB_ID.match(model):
        source = download(model, revision, progress)
    else:
        raise ModelUnavailable(f"no folder {model!r} and not a hub id (owner/name)",
                               hint="pass a checkpoint folder or e.g. PULSE-ECG/PULSE-7B")
    hub_commit = source.name if "snapshots" in source.parts else None
    folder = ensure_converted(source, cache_dir, progress=progress)
    return folder, hub_commit or checkpoint_fingerprint(source)


# -- 2. device and precision --------------------------------------------------------------------

def choose_device(device: str = "auto") -> torch.device:
    """``auto``: the first CUDA GPU, else Apple MPS, else the CPU."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    chosen = torch.device(device)
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise HardwareError(f"--device {device}: PyTorch sees no CUDA GPU here",
                            hint="use --device cpu, or install a CUDA build of PyTorch")
    if chosen.type == "cuda" and (chosen.index or 0) >= torch.cuda.device_count():
        raise HardwareError(f"--device {device}: only {torch.cuda.device_count()} GPU(s) here")
    if chosen.type == "mps" and not torch.backends.mps.is_available():
        raise HardwareError(f"--device {device}: Apple MPS is not available here",
                            hint="use --device cpu")
    return chosen if chosen.type != "cuda" else torch.device("cuda", chosen.index or 0)


def choose_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 on Ampere or newer GPUs, fp16 on older ones and MPS, fp32 on the CPU.
    4bit and 8bit need CUDA and bitsandbytes."""
    if precision in ("4bit", "8bit"):
        if device.type != "cuda":
            raise HardwareError(f"{precision} loading needs an NVIDIA GPU (CUDA); this runs on "
                                f"{device.type}", hint="use --precision auto on this machine")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as e:
            raise HardwareError(f"{precision} loading needs the bitsandbytes package",
                                hint="pip install -r requirements-gpu.txt") from e
        return precision
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.get_device_capability(device)[0] >= 8 else "fp16"
    return "fp16" if device.type == "mps" else "fp32"


DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def load_kwargs(device: torch.device, precision: str) -> dict:
    """``from_pretrained`` arguments for a device and precision."""
    if precision in ("4bit", "8bit"):
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16
        skip = ["vision_tower", "multi_modal_projector", "lm_head"]   # small and sensitive
        quant = (BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                    bnb_4bit_compute_dtype=compute, llm_int8_skip_modules=skip)
                 if precision == "4bit" else
                 BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip))
        return {"dtype": compute, "quantization_config": quant, "device_map": {"": device.index}}
    kwargs = {"dtype": DTYPES[precision]}
    if device.type == "cuda":
        kwargs["device_map"] = {"": device.index}
    return kwargs


# -- 3. load once, never on random weights ----------------------------------------------------

def check_loading_info(info: dict, folder: Path) -> None:
    """Refuse a model whose checkpoint lacked weights (transformers initialised them randomly)."""
    missing = sorted(info.get("missing_keys") or ())
    mismatched = sorted(str(k[0]) if isinstance(k, tuple) else str(k)
                        for k in info.get("mismatched_keys") or ())
    errors = list(info.get("error_msgs") or ())
    bad = missing + mismatched
    if bad or errors:
        example = bad[0] if bad else errors[0]
        raise ModelUnavailable(f"refusing to run {folder.name}: {len(bad) or len(errors)} weights "
                               f"are missing or the wrong shape in the checkpoint (e.g. {example}) "
                               "and would be random", hint="download or convert it again")
    if info.get("unexpected_keys"):
        log.warning("%s: %d unused tensors in the checkpoint (e.g. %s)", folder,
                    len(info["unexpected_keys"]), sorted(info["unexpected_keys"])[0])


def load_model(folder: Path, device: torch.device, precision: str):
    """The model in eval mode on ``device``; raises instead of running on random weights."""
    try:
        model, info = PulseLlavaNextForConditionalGeneration.from_pretrained(
            folder, output_loading_info=True, **load_kwargs(device, precision))
    except torch.cuda.OutOfMemoryError as e:
        torch.cuda.empty_cache()
        raise HardwareError(f"the GPU has not enough memory for this model in {precision}",
                            hint="try --precision 4bit, or a GPU with more memory") from e
    check_loading_info(info, folder)
    if device.type != "cuda":
        model.to(device)
    return model.eval()


# -- 4. streaming generation --------------------------------------------------------------------

class _TokenQueue(BaseStreamer):
    """Receives token ids from ``generate`` (in the worker) for the stream (in the caller)."""

    def __init__(self):
        self.items: queue.Queue = queue.Queue()
        self.prompt_seen = False

    def put(self, value):
        if not self.prompt_seen:               # generate's first call passes the prompt
            self.prompt_seen = True
            return
        self.items.put(value.reshape(-1).tolist())

    def end(self):
        self.items.put(None)


class _StopWhenSet(StoppingCriteria):
    """Ends generation after the current token once any of the events is set."""

    def __init__(self, *events: threading.Event | None):
        self.events = [e for e in events if e is not None]

    def __call__(self, input_ids, scores, **kwargs):
        stop = any(e.is_set() for e in self.events)
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class _Detokenizer:
    """Token ids -> new text, holding back incomplete UTF-8 characters; no leading space."""

    def __init__(self, decode: Callable[[Sequence[int]], str]):
        self.decode, self.ids, self.text = decode, [], ""

    def push(self, ids: list[int]) -> str:
        self.ids += ids
        text = self.decode(self.ids).lstrip()
        if text.endswith("\ufffd") or not text.startswith(self.text):
            return ""
        new, self.text = text[len(self.text):], text
        return new


class LocalBackend:
    """A PULSE-style model answering on this machine. Loads on first use (``load()``)."""

    name = "local"

    def __init__(self, model: str = OFFLINE_DEFAULT_MODEL, revision: str | None = None,
                 device: str = "auto", precision: str = "auto",
                 cache_dir: str | Path | None = None, progress: Progress | None = None):
        self.model_id, self.revision = model, revision
        self.device = choose_device(device)
        self.precision = choose_precision(precision, self.device)
        self.cache_dir = Path(cache_dir or Settings.load().cache_dir)
        self.progress = progress or (lambda message: log.info("%s", message))
        self._load_lock, self._generate_lock = threading.Lock(), threading.Lock()
        self._folder = self._model = self._encoder = self._geometry = None
        self._info: ModelInfo | None = None

    @classmethod
    def from_settings(cls, settings: Settings, progress: Progress | None = None) -> "LocalBackend":
        return cls(settings.model, settings.revision, settings.device, settings.precision,
                   settings.cache_dir, progress)

    # -- loading --
    def _resolve(self) -> Path:
        if self._folder is None:
            self._folder, revision = resolve_model(self.model_id, self.revision, self.cache_dir,
                                                   self.progress)
            self._info = self._describe(read_config(self._folder), revision)
        return self._folder

    def _describe(self, config: dict, revision: str | None) -> ModelInfo:
        about = config.get(PROVENANCE_KEY, {})
        trained = about.get("trained", True)
        name = (about.get("name") or self.model_id.rstrip("/").split("/")[-1])
        where = f"local, {self.device.type} {self.precision}"
        label = f"{name} ({where})" if trained else f"{name}, UNTRAINED ({where})"
        if trained and about.get("demonstration"):          # e.g. assets/pulse-mini
            label = f"{name}, trained demonstration model ({where})"
        note = (about.get("note", "") if trained else "untrained demonstration model: its answers "
                "are random text, not a reading of the ECG")
        return ModelInfo(model_id=self.model_id, revision=revision, backend=self.name,
                         label=label, trained=trained, note=note)

    def load(self) -> None:
        """Find, convert and load the model once (thread-safe; later calls return at once)."""
        with self._load_lock:
            if self._model is not None:
                return
            folder = self._resolve()
            self.progress(f"loading {self._info.label}")
            model = load_model(folder, self.device, self.precision)
            self._encoder = LlamaChunkEncoder.from_folder(folder)
            self._geometry = AnyresGeometry.from_config(model.config)
            self._model = model
            self.progress(f"ready: {self._info.label}")

    def info(self) -> ModelInfo:
        """Which model answers (finds and converts it if needed, without loading the weights)."""
        with self._load_lock:
            self._resolve()
        return self._info

    # -- answering --
    def prepare_image(self, image) -> dict:
        """An image's model inputs (anyres tiles, size, image-token count), reusable for every
        question about it: :meth:`encode` and :meth:`generate_batch` take the dict for the
        image."""
        self.load()
        image = image.convert("RGB")
        pixels = anyres_pixel_values(image, self._geometry)
        return {"pixel_values": pixels[None].to(self.device, self._model.dtype),
                "image_sizes": torch.tensor([[image.height, image.width]], device=self.device),
                "image_tokens": self._geometry.image_token_count(image.size)}

    def encode(self, image, history: Sequence[Turn], question: str) -> dict:
        """The model inputs for one question, built exactly as LLaVA built them in training.
        ``image``: a PIL image, :meth:`prepare_image`'s dict, or None."""
        self.load()
        config = self._model.config
        prompt = build_prompt(history, question, with_image=image is not None)
        inputs = {}
        count = 0
        if image is not None:
            prepared = image if isinstance(image, dict) else self.prepare_image(image)
            count = prepared["image_tokens"]
            inputs["pixel_values"] = prepared["pixel_values"]
            inputs["image_sizes"] = prepared["image_sizes"]
        ids, _ = encode_prompt(prompt, self._encoder, bos_id=self._encoder.bos_id,
                               image_token_id=config.image_token_index, image_token_count=count)
        context = config.text_config.max_position_embeddings
        if len(ids) >= context:
            raise PulseError(f"the conversation is too long for the model ({len(ids)} tokens, "
                             f"it reads at most {context})", hint="start a new conversation")
        inputs["input_ids"] = torch.tensor([ids], device=self.device)
        inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
        return inputs

    def _generation_kwargs(self, params: GenerationParams, prompt_tokens: int) -> dict:
        context = self._model.config.text_config.max_position_embeddings
        kwargs = {"max_new_tokens": min(params.max_new_tokens, context - prompt_tokens),
                  "do_sample": not params.greedy, "eos_token_id": self._encoder.eos_id,
                  "pad_token_id": self._model.generation_config.pad_token_id or 0}
        if params.greedy:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=None)
        return kwargs

    def _generate(self, inputs: dict, kwargs: dict, tokens: _TokenQueue, seed: int | None) -> None:
        """Worker thread: run ``generate``; errors travel to the stream through the queue."""
        try:
            if seed is not None:
                torch.manual_seed(seed)
            with torch.inference_mode():
                self._model.generate(**inputs, **kwargs, streamer=tokens)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            tokens.items.put(HardwareError("the GPU ran out of memory while answering",
                                           hint="use a smaller image, fewer tokens, or "
                                                "--precision 4bit"))
            tokens.end()
        except BaseException as error:          # surfaced in the caller's thread
            tokens.items.put(error)
            tokens.end()
        finally:
            self._generate_lock.release()

    def stream(self, image, history: Sequence[Turn], question: str,
               params: GenerationParams = GenerationParams(),
               cancel: threading.Event | None = None) -> Iterator[str]:
        """Yield the answer as text chunks while the model writes it (see Backend). The
        generator returns ``"length"`` when the answer was cut at ``max_new_tokens``, else
        ``"stop"`` (read it with :func:`pulse_app.engine.backend.stream_with_reason`)."""
        inputs = self.encode(image, history, question)
        kwargs = self._generation_kwargs(params, inputs["input_ids"].shape[1])
        stop, tokens = threading.Event(), _TokenQueue()
        kwargs["stopping_criteria"] = StoppingCriteriaList([_StopWhenSet(stop, cancel)])
        self._generate_lock.acquire()               # one answer at a time per loaded model
        worker = threading.Thread(target=self._generate, args=(inputs, kwargs, tokens, params.seed),
                                  name="pulse-generate", daemon=True)
        try:
            worker.start()
        except BaseException:
            self._generate_lock.release()
            raise
        text = _Detokenizer(self._encoder.decode)
        try:
            while (item := tokens.items.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                if chunk := text.push(item):
                    yield chunk
        finally:
            stop.set()          # reached when finished, on error, or when the caller closes us
            worker.join()
        cut = (len(text.ids) >= kwargs["max_new_tokens"]
               and text.ids[-1:] != [self._encoder.eos_id])
        return "length" if cut else "stop"

    # -- answering many questions at once (evaluation) --
    def batch_size(self, requested: int | str = "auto") -> int:
        """How many questions :meth:`generate_batch` answers at once on this device.

        ``auto``: on a CUDA GPU, as many as the free memory holds (key/value cache of the longest
        prompt plus answer, for every layer, half the free memory), at most 64; on the CPU or MPS
        16 (larger batches stop paying off on a few cores).
        """
        if requested != "auto":
            return max(1, int(requested))
        if self.device.type != "cuda":
            return 16
        self.load()
        text = self._model.config.text_config
        per_token = (2 * text.num_hidden_layers * text.num_key_value_heads
                     * getattr(text, "head_dim", text.hidden_size // text.num_attention_heads)
                     * self._model.dtype.itemsize)
        tokens = min(text.max_position_embeddings, 4096)
        free, _ = torch.cuda.mem_get_info(self.device)
        return int(max(1, min(64, (free // 2) // (per_token * tokens))))

    def generate_batch(self, images: Sequence, histories: Sequence[Sequence[Turn]],
                       questions: Sequence[str], params: GenerationParams = GenerationParams()
                       ) -> list[str]:
        """Answer several questions in one ``generate`` call: prompts left-padded to the longest,
        each image's anyres tiles zero-padded to the most tiles (the model keeps only each
        image's own). Greedy answers equal :meth:`stream`'s, joined. Images (PIL images or
        :meth:`prepare_image` dicts) must be all present or all None (call twice for a mix);
        with ``seed`` the batch shares one random stream.
        """
        if not questions:
            return []
        if len({image is None for image in images}) > 1:
            raise ValueError("generate_batch needs all images or none; split the batch")
        encoded = [self.encode(image, history, question)
                   for image, history, question in zip(images, histories, questions)]
        # prompts near the context limit get fewer new tokens (as in stream): batch by limit
        limits = [self._generation_kwargs(params, e["input_ids"].shape[1])["max_new_tokens"]
                  for e in encoded]
        answers: list[str | None] = [None] * len(encoded)
        for limit in sorted(set(limits)):
            rows = [i for i, n in enumerate(limits) if n == limit]
            for i, text in zip(rows, self._generate_padded([encoded[i] for i in rows], params)):
                answers[i] = text
        return answers

    def _generate_padded(self, encoded: list[dict], params: GenerationParams) -> list[str]:
        """One ``generate`` call over encoded questions (left-padded) -> answer texts. Where
        questions share an image, the prompt up to the image's last token is computed once for
        them (:meth:`_shared_image_prefixes`)."""
        shortest = min(e["input_ids"].shape[1] for e in encoded)
        kwargs = self._generation_kwargs(params, shortest)
        with self._generate_lock, torch.inference_mode():
            try:
                inputs = self._shared_image_prefixes(encoded)
                if inputs is None:
                    inputs = _left_padded([e["input_ids"][0] for e in encoded], self._pad_id,
                                          self.device)
                    if "pixel_values" in encoded[0]:
                        inputs.update(_padded_images(encoded, self.device))
                if params.seed is not None:
                    torch.manual_seed(params.seed)
                output = self._model.generate(**inputs, **kwargs)
            except torch.cuda.OutOfMemoryError as e:
                torch.cuda.empty_cache()
                raise HardwareError(f"the GPU ran out of memory answering {len(encoded)} "
                                    "questions at once", hint="lower --batch-size") from e
        length = inputs["input_ids"].shape[1]
        answers = []
        for row in output[:, length:].tolist():
            if self._encoder.eos_id in row:
                row = row[:row.index(self._encoder.eos_id) + 1]
            text = _Detokenizer(self._encoder.decode)     # as stream() detokenizes: the same
            answers.append("".join(text.push([token]) for token in row))     # text, to the byte
        return answers

    @property
    def _pad_id(self) -> int:
        return self._model.generation_config.pad_token_id or 0

    def _shared_image_prefixes(self, encoded: list[dict]) -> dict | None:
        """``generate`` inputs that start from a key/value cache of each distinct prompt prefix
        (system sentence, earlier text, the image's tokens): the prefixes, left-padded, run once
        through the model with their images, each question's row of the cache is its prefix's,
        and only the rest of its prompt (padded between prefix and rest, masked) is left for
        ``generate``. Positions follow the mask, so each row sees what :meth:`stream` sees.
        None when no two questions share a prefix (nothing to save) or there are no images."""
        if "pixel_values" not in encoded[0]:
            return None
        image_token = self._model.config.image_token_index
        keys: dict[tuple, int] = {}
        rows, prefixes, suffixes = [], [], []
        for e in encoded:
            ids = e["input_ids"][0]
            cut = int((ids == image_token).nonzero()[-1]) + 1
            key = (e["pixel_values"].data_ptr(), tuple(ids[:cut].tolist()))
            if key not in keys:
                keys[key] = len(prefixes)
                prefixes.append((ids[:cut], e))
            rows.append(keys[key])
            suffixes.append(ids[cut:])
        if len(prefixes) == len(encoded):
            return None
        first = _left_padded([ids for ids, _ in prefixes], self._pad_id, self.device)
        mask = first["attention_mask"]
        out = self._model(**first, **_padded_images([e for _, e in prefixes], self.device),
                          position_ids=(mask.cumsum(-1) - 1).clamp(min=0), use_cache=True,
                          logits_to_keep=1)
        index = torch.tensor(rows, device=self.device)
        cache = out.cache
        cache.batch_select_indices(index)
        rest = _left_padded(suffixes, self._pad_id, self.device)
        return {"input_ids": torch.cat([first["input_ids"][index], rest["input_ids"]], dim=1),
                "attention_mask": torch.cat([mask[index], rest["attention_mask"]], dim=1),
                "cache": cache}


def _left_padded(rows: Sequence[torch.Tensor], pad: int, device) -> dict:
    """Token rows -> ``input_ids`` left-padded with ``pad`` to the longest, and their mask."""
    length = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), length), pad, dtype=torch.long, device=device)
    attention = torch.zeros_like(input_ids)
    for i, r in enumerate(rows):
        input_ids[i, length - len(r):] = r
        attention[i, length - len(r):] = 1
    return {"input_ids": input_ids, "attention_mask": attention}


def _padded_images(encoded: Sequence[dict], device) -> dict:
    """The rows' anyres tiles zero-padded to the most tiles (the model keeps each image's own
    count, from its size) and their sizes."""
    tiles = max(e["pixel_values"].shape[1] for e in encoded)
    first = encoded[0]["pixel_values"]
    pixels = torch.zeros((len(encoded), tiles, *first.shape[2:]), dtype=first.dtype,
                         device=device)
    for row, e in enumerate(encoded):
        pixels[row, :e["pixel_values"].shape[1]] = e["pixel_values"][0]
    return {"pixel_values": pixels, "image_sizes": torch.cat([e["image_sizes"] for e in encoded])}
