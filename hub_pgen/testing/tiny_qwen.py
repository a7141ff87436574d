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
import logging
from pathlib import Path
from typing import Any

from hub_pgen.testing import tiny_tokenizer
from hub_pgen.testing.tiny_tokenizer import (  # Family, FAMILIES: part of this module's interface
    FAMILIES,
    Family,
    build_processor,
    build_tokenizer,
    padded_vocab,
    token_ids,
)

logger = logging.getLogger(__name__)


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
    """Changes when this file or the tokenizer's changes, so cached tiny models are rebuilt after an edit."""
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(Path(tiny_tokenizer.__file__).read_bytes())
    return h.hexdigest()[:12]


def tiny_model_dir(cache_root: Path, family: Family, *, seed: int = 0, single_byte_tokens: bool = False) -> Path:
    """Build once under ``cache_root`` and reuse (a marker file says the folder is complete)."""
    kind = "-bytes" if single_byte_tokens else ""
    folder = Path(cache_root) / f"tiny-{family}{kind}-s{seed}-{_builder_hash()}"
    marker = folder / ".complete"
    if not marker.is_file():
        build_tiny_qwen(folder, family, seed=seed, single_byte_tokens=single_byte_tokens)
        marker.write_text("ok\n")
    return folder
