"""Tiny random-weight Qwen-VL models and processors, built offline in seconds.

No weights can be downloaded on the development machines, yet the real loading and generation code
(``AutoModelForImageTextToText`` + ``AutoProcessor`` + ``model.generate``) must be exercised. So we
build the real transformers classes from a config with tiny sizes, a byte-level BPE tokenizer trained
with ``tokenizers`` (same pre-tokenizer, decoder and special tokens as Qwen's), the Qwen2-VL image
processor with a small pixel budget and a Qwen-style chat template, and save them the way a Hub
checkout looks. The same machinery builds real-size configs for ``scripts/bench_gpu.py``.

Special tokens follow Qwen's order right after the regular vocabulary, so with a regular vocabulary
of 151,643 entries they land on the ids the published configs use (151643 ``<|endoftext|>`` …
151656 ``<|video_pad|>``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from pathlib import Path
from typing import Any, Literal, get_args

logger = logging.getLogger(__name__)

Family = Literal["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe"]
FAMILIES: tuple[Family, ...] = get_args(Family)

# Qwen's special tokens, in Qwen's id order (they follow the regular vocabulary).
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
QWEN_REGULAR_VOCAB = 151_643  # regular tokens before <|endoftext|> in the published tokenizer


# The published Qwen2-VL / Qwen2.5-VL template (images/videos before text as the content list orders them).
QWEN2_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen3-VL's template has no default system turn; the rest is the same shape.
QWEN3_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Small pixel budgets: 64x48 frames become 2x2 merged tokens, 480x640 frames at most 4x4.
TINY_MIN_PIXELS = 28 * 28 * 4
TINY_MAX_PIXELS = 32 * 32 * 16

_WORDS = [
    "robot",
    "arm",
    "pick",
    "up",
    "place",
    "put",
    "move",
    "the",
    "a",
    "an",
    "red",
    "blue",
    "green",
    "pink",
    "yellow",
    "lego",
    "brick",
    "cube",
    "cup",
    "bowl",
    "box",
    "plate",
    "spoon",
    "fork",
    "bottle",
    "drawer",
    "table",
    "shelf",
    "left",
    "right",
    "front",
    "back",
    "top",
    "bottom",
    "gripper",
    "open",
    "close",
    "lift",
    "push",
    "pull",
    "grasp",
    "release",
    "rotate",
    "slowly",
    "carefully",
    "please",
    "could",
    "you",
    "would",
    "can",
    "i",
    "want",
    "need",
    "don't",
    "not",
    "first",
    "then",
    "next",
    "now",
    "after",
    "before",
    "wait",
    "actually",
    "instead",
    "sure",
    "okay",
    "will",
    "i'll",
    "it",
    "that",
    "this",
    "there",
    "here",
    "with",
    "into",
    "onto",
    "from",
    "on",
    "in",
    "to",
    "of",
    "and",
    "or",
    "but",
    "so",
    "because",
    "yes",
    "no",
    "just",
    "only",
    "again",
    "keep",
    "hold",
    "stop",
    "start",
    "clean",
    "tidy",
    "sort",
    "stack",
    "pour",
    "wipe",
    "fold",
    "hand",
    "me",
    "give",
    "bring",
    "fetch",
    "again",
    "thanks",
    "task",
    "done",
    "scene",
    "camera",
    "view",
]


def training_corpus(seed: int = 0, n_lines: int = 400) -> list[str]:
    """Text the tiny tokenizer learns merges from: the real prompt, the taxonomy and JSON answers,
    so prompts and answers tokenize into plausible multi-character tokens, as with the real model."""
    from hub_pgen.generate.prompt import PGEN_PROMPT_TEMPLATE
    from hub_pgen.plan.taxonomy import RESPONSE_TYPES, SCENARIO_TYPES

    rng = random.Random(seed)
    lines = [PGEN_PROMPT_TEMPLATE, *SCENARIO_TYPES.values(), *RESPONSE_TYPES.values()]
    keys = ("scenario_type", "response_type", "user_prompt", "robot_utterance")
    for _ in range(n_lines):
        sentence = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 12)))
        answer = {
            keys[0]: rng.choice(list(SCENARIO_TYPES)),
            keys[1]: rng.choice(list(RESPONSE_TYPES)),
            keys[2]: sentence.capitalize() + rng.choice(".?!"),
            keys[3]: " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 10))).capitalize() + ".",
        }
        lines.append(json.dumps(answer, separators=(",", ":")))
        lines.append(json.dumps(answer, indent=2))
        lines.append(sentence)
    return lines


def build_tokenizer(*, vocab_size: int = 640, regular_vocab: int | None = None, seed: int = 0,
                    single_bytes: bool = False) -> Any:
    """A byte-level BPE ``Qwen2Tokenizer`` with Qwen's special tokens and eos ``<|im_end|>`` (as the
    Instruct checkpoints have it).

    ``single_bytes``: no merges at all, every regular token is one byte — the worst case for a token
    budget, which is what the constrained-JSON bound must survive.

    ``vocab_size`` is what BPE training aims at on the small corpus. ``regular_vocab`` pads the
    regular vocabulary with synthetic, merge-less tokens up to that many entries (the bench passes
    :data:`QWEN_REGULAR_VOCAB`), so grammar compilation and masks cost what they cost for the real
    vocabulary and the special tokens get the published ids.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX  # Qwen's own split

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=256 if single_bytes else vocab_size,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(training_corpus(seed), trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    if regular_vocab is not None:
        _pad_vocab(vocab, regular_vocab, seed)
    for i, special in enumerate(SPECIAL_TOKENS):
        vocab[special] = len(vocab) if i == 0 else vocab[SPECIAL_TOKENS[0]] + i
    qwen_tok = Qwen2Tokenizer(
        vocab=vocab,
        # transformers annotates merges as str | list[str] and unk_token as str, but hands both to
        # tokenizers' BPE, which takes (a, b) pairs and no unk token
        merges=merges,  # type: ignore[arg-type]
        unk_token=None,  # type: ignore[arg-type]
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        errors="replace",
        model_max_length=32768,
        extra_special_tokens=list(SPECIAL_TOKENS[1:]),
    )
    return qwen_tok


def _pad_vocab(vocab: dict[str, int], target: int, seed: int) -> None:
    """Fill ``vocab`` up to ``target`` regular entries with distinct byte-level letter strings."""
    rng = random.Random(f"pad-{seed}")
    letters = "abcdefghijklmnopqrstuvwxyz"
    while len(vocab) < target:
        word = ("Ġ" if rng.random() < 0.5 else "") + "".join(
            rng.choice(letters) for _ in range(rng.randint(3, 9))
        )
        if word not in vocab:
            vocab[word] = len(vocab)


def build_processor(
    family: Family, tokenizer: Any, *, min_pixels: int = TINY_MIN_PIXELS, max_pixels: int = TINY_MAX_PIXELS
) -> Any:
    """The processor class the published checkpoints of ``family`` use (Qwen2-VL image processor;
    Qwen3-VL with its 16-pixel patches), with the given pixel budget."""
    from transformers import Qwen2VLImageProcessor

    patch = 16 if family.startswith("qwen3") else 14
    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    image_processor = Qwen2VLImageProcessor(patch_size=patch, temporal_patch_size=2, merge_size=2, size=size)
    if family.startswith("qwen3"):
        from transformers import Qwen3VLProcessor, Qwen3VLVideoProcessor

        video3 = Qwen3VLVideoProcessor(patch_size=16, temporal_patch_size=2, merge_size=2, size=size)
        return Qwen3VLProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=video3,
            chat_template=QWEN3_CHAT_TEMPLATE,
        )
    from transformers import Qwen2VLVideoProcessor

    cls_name = "Qwen2_5_VLProcessor" if family == "qwen2_5_vl" else "Qwen2VLProcessor"
    import transformers

    processor_cls = getattr(transformers, cls_name)
    video = Qwen2VLVideoProcessor(size=size)
    return processor_cls(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video,
        chat_template=QWEN2_CHAT_TEMPLATE,
    )


def token_ids(tokenizer: Any) -> dict[str, int]:
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "bos_token_id": ids["<|endoftext|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "endoftext_id": ids["<|endoftext|>"],
    }


def padded_vocab(n: int, multiple: int = 64) -> int:
    """Model vocabularies are padded past the tokenizer's (152064 vs 151665 for Qwen2-VL); the tiny
    ones are too, so code that builds token masks meets the same mismatch."""
    return -(-n // multiple) * multiple + multiple


def tiny_config(family: Family, tokenizer: Any) -> Any:
    """A config with the real architecture of ``family`` and tiny sizes (hidden 64, 2 layers)."""
    ids = token_ids(tokenizer)
    vocab = padded_vocab(len(tokenizer))
    common_text = {
        "vocab_size": vocab,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "bos_token_id": ids["bos_token_id"],
        "eos_token_id": ids["eos_token_id"],
        "pad_token_id": ids["pad_token_id"],
    }
    # Any: spread into each config's keyword arguments, which mypy checks against all their types
    tokens: dict[str, Any] = {
        k: ids[k]
        for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    }
    if family == "qwen2_vl":
        from transformers import Qwen2VLConfig

        return Qwen2VLConfig(
            text_config={
                **common_text,
                "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
            },
            vision_config={
                "depth": 2,
                "embed_dim": 32,
                "hidden_size": 64,
                "num_heads": 2,
                "mlp_ratio": 2,
                "patch_size": 14,
                "spatial_merge_size": 2,
                "temporal_patch_size": 2,
            },
            **tokens,
        )
    if family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig

        return Qwen2_5_VLConfig(
            text_config={
                **common_text,
                "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
            },
            vision_config={
                "depth": 2,
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_heads": 2,
                "out_hidden_size": 64,
                "patch_size": 14,
                "spatial_merge_size": 2,
                "temporal_patch_size": 2,
                "window_size": 56,
                "fullatt_block_indexes": [1],
            },
            **tokens,
        )
    vision3 = {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "out_hidden_size": 64,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "num_position_embeddings": 64,
        "deepstack_visual_indexes": [0],
    }
    text3 = {
        **common_text,
        "head_dim": 16,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 5e6,
            "mrope_section": [4, 2, 2],
            "mrope_interleaved": True,
        },
    }
    if family == "qwen3_vl":
        from transformers import Qwen3VLConfig

        return Qwen3VLConfig(text_config=text3, vision_config=vision3, **tokens)
    if family == "qwen3_vl_moe":
        from transformers import Qwen3VLMoeConfig

        moe = {
            **text3,
            "num_experts": 4,
            "num_experts_per_tok": 2,
            "moe_intermediate_size": 32,
            "decoder_sparse_step": 1,
            "tie_word_embeddings": False,
        }
        return Qwen3VLMoeConfig(text_config=moe, vision_config=vision3, tie_word_embeddings=False, **tokens)
    raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")


def generation_config(tokenizer: Any) -> Any:
    """What the Instruct checkpoints ship: sampling on by default with near-greedy settings, and
    two stop ids — so a backend that relies on these defaults instead of its own settings shows."""
    from transformers import GenerationConfig

    ids = token_ids(tokenizer)
    return GenerationConfig(
        bos_token_id=ids["bos_token_id"],
        pad_token_id=ids["pad_token_id"],
        eos_token_id=[ids["eos_token_id"], ids["endoftext_id"]],
        do_sample=True,
        temperature=0.1,
        top_p=0.001,
        top_k=1,
        repetition_penalty=1.05,
    )


def build_tiny_qwen(out_dir: Path, family: Family, *, seed: int = 0, single_byte_tokens: bool = False) -> Path:
    """Save a tiny random-weight ``family`` model + processor folder at ``out_dir`` (a few MB).

    ``AutoModelForImageTextToText.from_pretrained(out_dir)`` and ``AutoProcessor.from_pretrained(out_dir)``
    load it offline. Same ``seed`` → same weights and tokenizer.
    """
    import torch
    from transformers import AutoModelForImageTextToText

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(seed=seed, single_bytes=single_byte_tokens)
    processor = build_processor(family, tokenizer)
    config = tiny_config(family, tokenizer)
    saved_rng = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    finally:
        torch.random.set_rng_state(saved_rng)
    model.generation_config = generation_config(tokenizer)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    logger.debug("built tiny %s at %s", family, out_dir)
    return out_dir


def _builder_hash() -> str:
    """Changes when this file changes, so cached tiny models are rebuilt after an edit."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


def tiny_model_dir(cache_root: Path, family: Family, *, seed: int = 0, single_byte_tokens: bool = False) -> Path:
    """Build once under ``cache_root`` and reuse (a marker file says the folder is complete)."""
    kind = "-bytes" if single_byte_tokens else ""
    folder = Path(cache_root) / f"tiny-{family}{kind}-s{seed}-{_builder_hash()}"
    marker = folder / ".complete"
    if not marker.is_file():
        build_tiny_qwen(folder, family, seed=seed, single_byte_tokens=single_byte_tokens)
        marker.write_text("ok\n")
    return folder
