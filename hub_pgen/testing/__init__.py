"""Test helpers that ship with the package so tests, the demo and ``scripts/bench_gpu.py`` can
build real (tiny, random-weight) Qwen-VL models offline instead of mocking the model code."""

from hub_pgen.testing.tiny_qwen import FAMILIES, Family, build_tiny_qwen, tiny_model_dir

__all__ = ["FAMILIES", "Family", "build_tiny_qwen", "tiny_model_dir"]
