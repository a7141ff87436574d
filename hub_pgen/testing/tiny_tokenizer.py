"""The tiny models' tokenizer and processor (:mod:`hub_pgen.testing.tiny_qwen`): a byte-level BPE
trained with ``tokenizers`` on a small corpus (Qwen's pre-tokenizer, decoder and special tokens, in
Qwen's id order), the Qwen2-VL image processor with a small pixel budget, and a Qwen-style chat
template.
"""

from __future__ import annotations

import json
import logging
import random
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
