#!/usr/bin/env python
"""The Hi Robot brief's entry point, kept for people who run it the way the brief does:

    python scripts/annotate_pgen.py --output-dir PATH --repo-id lerobot/svla_so101_pickplace \
        --model Qwen/Qwen3-VL-30B-A3B-Instruct --batch-size 1

It accepts every ``hub-pgen`` flag (``--model`` may be repeated: the last wins) and delegates to the
package. The brief's module API (PGEN_PROMPT_TEMPLATE, construct_prompt, call_qwen, annotate_sample) is
importable from here too.
"""

from __future__ import annotations

import sys

from hub_pgen.cli import main
from hub_pgen.pgen import PGEN_PROMPT_TEMPLATE, annotate_sample, call_qwen, construct_prompt  # noqa: F401

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="python scripts/annotate_pgen.py"))
