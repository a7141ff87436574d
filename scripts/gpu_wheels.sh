#!/usr/bin/env bash
# Download, HERE (a machine with network), the wheels a GPU machine without network lacks into .whl/, for
# scripts/gpu_smoke.sh, which installs them there with pip --no-index --target (the GPU machine has
# no network). .whl/ is ignored by git; the device tool takes it with carry [".whl"].
#
# That machine (nvidia-h200: Python 3.12, x86-64, torch 2.11, transformers 5.17, accelerate, pyarrow,
# pandas, rich, huggingface_hub, tokenizers, numpy, pillow, typing-extensions...) has neither PyAV
# nor xgrammar. Each wheel below is one of those two or a requirement of theirs missing there
# (`unzip -p .whl/X.whl '*/METADATA' | grep ^Requires-Dist` against the package list in the device
# notes, KINDS.md), at the version the test venv (bash scripts/test) runs:
#   av                                PyAV, the video decoder (no requirements; FFmpeg is inside)
#   xgrammar                          constrained JSON decoding; needs apache-tvm-ffi and pydantic
#   apache-tvm-ffi                    xgrammar's runtime (needs typing-extensions)
#   pydantic, pydantic-core           xgrammar's; pydantic needs annotated-types and typing-inspection
#   annotated-types, typing-inspection
#   typing-extensions                 present there, but pydantic 2.14 needs >= 4.16, newer than the
#                                     image may hold: carried so the import cannot fail on it
#   setuptools                        hub-pgen's build backend (pyproject needs >= 77) for the
#                                     offline `pip install --no-build-isolation` of this checkout
#
#   bash scripts/gpu_wheels.sh        # then: device run with carry [".whl"], command bash scripts/gpu_smoke.sh
# Environment: PYTHON (any Python with pip; default python3).
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(
    av==15.1.0
    xgrammar==0.2.9
    apache-tvm-ffi==0.1.15.post2
    pydantic==2.14.4
    pydantic-core==2.50.5
    annotated-types==0.8.0
    typing-inspection==0.4.5
    typing-extensions==4.16.0
    setuptools==81.0.0
)
PYTHON=${PYTHON:-python3}
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done

# keep .whl/ out of git (it is in .gitignore; this covers a checkout without that line)
if ! git check-ignore -q .whl/x.whl 2>/dev/null; then
    exclude=$(git rev-parse --git-path info/exclude)
    mkdir -p "$(dirname "$exclude")" && echo "/.whl/" >>"$exclude"
fi
mkdir -p .whl
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl "${WHEELS[@]}"

# one version of each: two of one name stop the whole install there
names=$(for w in .whl/*.whl; do basename "$w" | cut -d- -f1 | tr 'A-Z-.' 'a-z__'; done | sort)
dupes=$(uniq -d <<<"$names")
if [ -n "$dupes" ]; then
    echo "gpu_wheels: .whl/ holds two versions of: $dupes -- remove the older ones" >&2
    exit 1
fi
ls -l .whl/*.whl | awk '{printf "%8.1f MiB  %s\n", $5 / 1048576, $9}'
total=$(du -cb .whl/*.whl | tail -1 | cut -f1)
echo "$(ls .whl/*.whl | wc -l) wheels, $((total / 1048576)) MiB (the device tool carries at most 64 MiB with the tree)"
