"""The ``transformers`` backend: Qwen2-VL, Qwen2.5-VL, Qwen3-VL and Qwen3-VL-MoE as pgen.

One :class:`TransformersBackend` per process and configuration (``load`` caches it, and the model
under it is shared by every backend with the same weights/device/dtype). A batch of requests is one
``model.generate`` call with left padding. What it guarantees, and why:

- **Batching does not change the decoding.** Sampled rows draw from their own ``torch.Generator``
  seeded by the request (not the global RNG), so an answer does not depend on its batch-mates, the
  batch size or an OOM split, and the model's repetition penalty is applied by a processor that
  skips left padding (transformers' own counts pad tokens, a Qwen stop token, so padded rows would
  be penalised differently). In float32 batched greedy rows equal one-at-a-time rows (CPU and
  CUDA, tested); in bfloat16 on a GPU the matmul kernels differ by batch shape, so a near-tie can
  still flip a token — measured with random tiny models, not a property this code can remove.
- **The assigned types come out.** With constrained decoding each row gets its own grammar, with
  its scenario and response type as single-value enums (:mod:`hub_pgen.generate.constrained`).
- **One bad sample never stops the run.** Answers that do not parse are retried (``max_retries``,
  seed + attempt; a greedy run retries by sampling, as greedy would repeat itself), then returned
  as failed results with the raw text. CUDA OOM halves the batch down to 1; at 1 the sample fails.
"""

from __future__ import annotations

import copy
import gc
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import transformers

from hub_pgen.data import GenerationRequest, GenerationResult
from hub_pgen.errors import GenerationError
from hub_pgen.generate.constrained import GrammarCache, PaddingAwareRepetitionPenalty, SeededSampler
from hub_pgen.generate.layer import RETRY_TEMPERATURE, Call, CallFailed, generate_with_retries
from hub_pgen.generate.loading import (  # noqa: F401  (re-exported: the backend's public API)
    SUPPORTED_FAMILIES,
    LoadedModel,
    LoadOptions,
    clear_models,
    load_model,
    resolve_device,
    resolve_dtype,
)
from hub_pgen.generate.schema import DEFAULT_MAX_NEW_TOKENS, AnswerBounds, answer_bounds, answer_limits
from hub_pgen.plan.taxonomy import RESPONSE_TYPES, SCENARIO_TYPES

logger = logging.getLogger(__name__)

OOM_FAILURE = "CUDA out of memory at batch size 1"

# one generate at a time in this process: the backends of one process share their model (``load``)
DEVICE_LOCK = threading.Lock()
GenerateFn = Callable[..., torch.Tensor]  # called like ``model.generate(**inputs, **kwargs)``


# --- options ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationOptions:
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float = 0.0
    top_p: float = 1.0
    constrained: bool = True
    max_retries: int = 2
    max_pixels: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.constrained:
            answer_bounds(self.max_new_tokens)  # raises BudgetTooSmall (a ValueError) with the number needed

    @property
    def bounds(self) -> AnswerBounds:
        """String bounds of a constrained answer: derived from the budget, so it always closes."""
        return answer_bounds(self.max_new_tokens)


_BACKENDS: dict[tuple[LoadOptions, GenerationOptions], TransformersBackend] = {}


# --- the backend --------------------------------------------------------------------------------


class TransformersBackend:
    """Backend protocol implementation over a loaded Qwen-VL model. Build it with :meth:`load`; the
    constructor only wires already-loaded objects (no I/O), which is what tests inject into."""

    name = "transformers"
    needs_images = True

    def __init__(
        self,
        loaded: LoadedModel,
        options: GenerationOptions | None = None,
        *,
        generate_fn: GenerateFn | None = None,
    ) -> None:
        self.loaded = loaded
        self.options = options or GenerationOptions()
        self.model = loaded.model
        self.processor = loaded.processor
        self.tokenizer = loaded.processor.tokenizer
        self.generate_fn: GenerateFn = generate_fn or self.model.generate
        self.batch_cap: int | None = None  # lowered after a CUDA OOM
        # the stream (hub_pgen.generate.stream) keeps two calls open: one runs the processor (a fast
        # tokenizer refuses two callers at once) while the other has the device (DEVICE_LOCK)
        self._processor_lock = threading.Lock()
        self._generation_config = self._base_generation_config()

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        model: str,
        *,
        device: str | None = None,
        dtype: str | None = None,
        attn_implementation: str | None = None,
        trust_remote_code: bool = False,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        temperature: float = 0.0,
        top_p: float = 1.0,
        constrained: bool = True,
        max_retries: int = 2,
        max_pixels: int | None = None,
        revision: str | None = None,
    ) -> TransformersBackend:
        """Load ``model`` (Hub id or local folder) once per process; the same arguments return the
        same instance, and other generation settings reuse the loaded weights."""
        device = resolve_device(device)
        load_opts = LoadOptions(
            model=str(model),
            revision=revision,
            device=device,
            dtype=resolve_dtype(dtype, device),
            attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code,
        )
        gen_opts = GenerationOptions(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            constrained=constrained,
            max_retries=max_retries,
            max_pixels=max_pixels,
        )
        key = (load_opts, gen_opts)
        if key not in _BACKENDS:
            _BACKENDS[key] = cls(load_model(load_opts), gen_opts)
        return _BACKENDS[key]

    @staticmethod
    def clear_cache() -> None:
        """Forget loaded models (tests; freeing GPU memory between configurations)."""
        _BACKENDS.clear()
        clear_models()
        gc.collect()

    def runs_on(self) -> str:
        """One line for the log: the model, and the device and dtype it runs with (and, on a GPU, which)."""
        load = self.loaded.options
        where = load.device
        placed = getattr(self.model, "hf_device_map", None)
        if isinstance(placed, dict) and len(set(map(str, placed.values()))) > 1:
            where += " (" + ", ".join(sorted(set(map(str, placed.values())))) + ")"
        elif load.device.startswith("cuda") and torch.cuda.is_available():
            index = torch.device(load.device).index or 0
            where += f" ({torch.cuda.get_device_name(index)})"
        attn = load.attn_implementation or getattr(self.model.config, "_attn_implementation", None)
        return (f"{load.model} ({self.loaded.family}) on device {where}, dtype {load.dtype}"
                + (f", attention {attn}" if attn else "")
                + ("; on the CPU this is slow: for trying things out" if load.device == "cpu" else ""))

    # -- Backend protocol ----------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        opts, load = self.options, self.loaded.options
        identity: dict[str, Any] = {
            "backend": self.name,
            "model": load.model,
            "revision": self.loaded.commit or load.revision,
            "family": self.loaded.family,
            "dtype": load.dtype,
            "constrained": opts.constrained,
            "max_new_tokens": opts.max_new_tokens,
            "temperature": opts.temperature,
            "top_p": opts.top_p if opts.temperature > 0 else None,
            "max_pixels": opts.max_pixels,
            "max_retries": opts.max_retries,
            "retry_temperature": RETRY_TEMPERATURE if opts.temperature == 0 else None,
        }
        if opts.constrained:
            identity["grammar"] = asdict(opts.bounds)
        return {
            "backend": self.name,
            "identity": identity,
            "runtime": {
                "device": load.device,
                "attn_implementation": load.attn_implementation
                or getattr(self.model.config, "_attn_implementation", None),
                "trust_remote_code": load.trust_remote_code,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "batch_cap_after_oom": self.batch_cap,
            },
            "generation": asdict(opts),
        }

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """One result per request, in order; failures are results, never exceptions (the shared
        layer, :mod:`hub_pgen.generate.layer`, parses, retries and enforces the assigned types)."""
        return generate_with_retries(self._run, requests, temperature=self.options.temperature,
                                     max_retries=self.options.max_retries,
                                     bounds=answer_limits(self.options.max_new_tokens, self.options.constrained))

    def complete(
        self,
        images: Sequence[Any],
        prompt: str,
        *,
        seed: int = 0,
        scenario_type: str | None = None,
        response_type: str | None = None,
    ) -> str:
        """The raw answer to one prompt (the seed API's ``call_qwen``). Constrained decoding pins the
        types given; ``None`` allows any known type. Raises :class:`GenerationError` on CUDA OOM."""
        item = Call("complete", prompt, tuple(images), seed, self.options.temperature, scenario_type, response_type)
        out = self._run([item])[0]
        if isinstance(out, CallFailed):
            raise GenerationError(out.reason, hint="lower --max-pixels or use a smaller model")
        return out

    def complete_calls(self, calls: list[Call]) -> list[str | CallFailed]:
        return self._run(list(calls))

    # -- batching and OOM ----------------------------------------------------------------------

    def _run(self, items: list[Call]) -> list[str | CallFailed]:
        """Generate for ``items`` in chunks no larger than the batch cap learnt from OOMs."""
        out: list[str | CallFailed] = []
        start = 0
        while start < len(items):
            size = self.batch_cap or len(items)
            out += self._run_chunk(items[start : start + size])
            start += size
        return out

    def _run_chunk(self, items: list[Call]) -> list[str | CallFailed]:
        try:
            return self._generate_texts(items)
        except Exception as exc:
            if not is_oom(exc):
                raise
            _free_memory()
            if len(items) == 1:
                logger.warning("CUDA out of memory at batch size 1; recording the sample as failed")
                return [CallFailed(OOM_FAILURE)]
            half = (len(items) + 1) // 2
            self.batch_cap = min(self.batch_cap or half, half)
            logger.warning(
                "CUDA out of memory at batch size %d; retrying in batches of %d", len(items), self.batch_cap
            )
            return self._run(items)

    # -- one generate call ---------------------------------------------------------------------

    def _generate_texts(self, items: list[Call]) -> list[str | CallFailed]:
        with self._processor_lock:
            encoded, failed = self._encode(items)
            ok_items = [it for i, it in enumerate(items) if i not in failed]
            if ok_items and failed:
                encoded = self._encode(ok_items)[0]
        texts: list[str] = []
        if ok_items:
            with DEVICE_LOCK:
                inputs = encoded.to(self.model.device)
                kwargs = self._generate_kwargs(ok_items, inputs)
                with torch.inference_mode():
                    sequences = self.generate_fn(**inputs, **kwargs)
                texts = self._decode(sequences, inputs["input_ids"].shape[1])
        it = iter(texts)
        return [failed[i] if i in failed else next(it) for i in range(len(items))]

    def _encode(self, items: list[Call]) -> tuple[Any, dict[int, CallFailed]]:
        """Chat-format every item (images first, then the prompt) and run the processor on the batch.
        If the batch fails, encode items one by one so only the bad ones fail."""
        try:
            return self._processor_call(items), {}
        except Exception as exc:
            if is_oom(exc):
                raise
            if len(items) == 1:
                return None, {0: CallFailed(f"could not prepare the model input: {type(exc).__name__}: {exc}")}
        failed: dict[int, CallFailed] = {}
        for i, item in enumerate(items):
            bad = self._encode([item])[1]
            if bad:
                failed[i] = bad[0]
        return None, failed

    def _processor_call(self, items: list[Call]) -> Any:
        texts = [
            self.processor.apply_chat_template(
                chat_messages(len(it.images), it.prompt), tokenize=False, add_generation_prompt=True
            )
            for it in items
        ]
        images = [im for it in items for im in it.images]
        # left padding here, not only at load: a processor built in code defaults to right padding
        kwargs: dict[str, Any] = {
            "text": texts,
            "padding": True,
            "padding_side": "left",
            "return_tensors": "pt",
        }
        if images:
            kwargs["images"] = images
            if self.options.max_pixels is not None:
                kwargs["images_kwargs"] = {"size": self._image_size()}
        return self.processor(**kwargs)

    def _image_size(self) -> dict[str, int]:
        size = dict(getattr(self.processor.image_processor, "size", None) or {})
        longest = int(self.options.max_pixels or size.get("longest_edge", 0))
        shortest = min(int(size.get("shortest_edge", 56 * 56)), longest)
        return {"shortest_edge": shortest, "longest_edge": longest}

    def _generate_kwargs(self, items: list[Call], inputs: Any) -> dict[str, Any]:
        config = copy.deepcopy(self._generation_config)
        config.max_new_tokens = max(it.max_new_tokens or self.options.max_new_tokens for it in items)
        processors: list[Any] = []
        penalty = getattr(self.model.generation_config, "repetition_penalty", None)
        if penalty not in (None, 1.0):
            pad_lengths = (inputs["attention_mask"] == 0).sum(dim=1)
            processors.append(PaddingAwareRepetitionPenalty(float(penalty), pad_lengths))
        if self.options.constrained:
            grammars = self._grammar_cache()
            processors.append(grammars.processor([self._grammar_for(it) for it in items]))
        temps = {it.temperature for it in items}
        if temps != {0.0}:
            if len(temps) != 1:
                raise ValueError(f"one batch must share a temperature, got {sorted(temps)}")
            processors.append(transformers.TemperatureLogitsWarper(temps.pop()))
            if self.options.top_p < 1.0:
                processors.append(transformers.TopPLogitsWarper(self.options.top_p))
            processors.append(SeededSampler([it.seed & (2**63 - 1) for it in items], self.model.device))
        return {"generation_config": config, "logits_processor": transformers.LogitsProcessorList(processors)}

    def _grammar_for(self, item: Call) -> Any:
        if item.schema is not None:
            return self._grammar_cache().for_schema(item.schema)
        scenarios = [item.scenario_type] if item.scenario_type else list(SCENARIO_TYPES)
        responses = [item.response_type] if item.response_type else list(RESPONSE_TYPES)
        return self._grammar_cache().grammar(scenarios, responses, self.options.bounds)

    def _grammar_cache(self) -> GrammarCache:
        if self.loaded.grammars is None:
            logger.info(
                "preparing JSON grammars for %s (once per model; ~30 s on 2 cores for a 150k vocabulary)",
                self.loaded.options.model,
            )
            self.loaded.grammars = GrammarCache(
                self.tokenizer, vocab_size=_lm_vocab_size(self.model), stop_token_ids=self._stop_ids()
            )
        return self.loaded.grammars

    def _stop_ids(self) -> list[int]:
        eos = self.model.generation_config.eos_token_id
        ids = [eos] if isinstance(eos, int) else list(eos or [])
        return ids or [self.tokenizer.eos_token_id]

    def _base_generation_config(self) -> Any:
        """The model's generation config with every decoding choice made here: greedy search (our
        sampler does the sampling), our penalty processor, sampling knobs at their inert values so
        the model's defaults neither apply nor warn."""
        config = copy.deepcopy(self.model.generation_config)
        config.do_sample = False
        config.num_beams = 1
        config.temperature, config.top_p, config.top_k = 1.0, 1.0, 50
        config.repetition_penalty = 1.0
        if config.pad_token_id is None:
            config.pad_token_id = self.tokenizer.pad_token_id
        return config

    def _decode(self, sequences: torch.Tensor, prompt_len: int) -> list[str]:
        stops = set(self._stop_ids())
        texts = []
        for row in sequences[:, prompt_len:].tolist():
            cut = next((i for i, t in enumerate(row) if t in stops), len(row))
            texts.append(self.tokenizer.decode(row[:cut], skip_special_tokens=True))
        return texts


def chat_messages(num_images: int, prompt: str) -> list[dict[str, Any]]:
    """One user turn: the images, then the text, as Qwen-VL's chat format wants them."""
    content: list[dict[str, Any]] = [{"type": "image"} for _ in range(num_images)]
    content.append({"type": "text", "text": prompt})
    return [{"role": "user", "content": content}]


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _lm_vocab_size(model: Any) -> int:
    """Rows of the output layer (the model's padded vocabulary), the width of the logits to mask."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and getattr(head, "weight", None) is not None:
        return int(head.weight.shape[0])
    return int(model.config.get_text_config().vocab_size)
