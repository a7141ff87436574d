#!/usr/bin/env bash
# Issue 10's GPU figures for the in-process transformers backend, in one prepared run (< 8 minutes on
# one H200): real-size Qwen2.5-VL-7B and Qwen3-VL-30B-A3B configs with random weights made on the GPU,
# the whole pipeline on a 640x480 AV1 dataset (frames, generation, journal, write), batch 1 / 16 / 64,
# 1 and 2 cameras, two full batches per batch size, 64 new tokens a sample. Each row reports
# samples/s and the fraction of the compute-bound ceiling (scripts/bench_gpu_pipeline.py says how it is
# computed). Last, the static-KV-cache arm (--cache static, which transformers torch.compiles on CUDA)
# for the 7B with 1 camera at batch 16 and 64 only, against the dynamic-cache rows of the first run.
# Each run is cut at 300 s (the static arm at what is left) so the script ends within 470 s.
# Results: $OUT/gpu_bench_*.json when $OUT is set (the device tool), else ./gpu_bench_*.json.
#
#   bash scripts/gpu_wheels.sh              # here, once: av and xgrammar for the GPU machine
#   bash scripts/gpu_bench.sh               # there (device tool: carry [".whl"], timeout_s=560)
#   bash scripts/gpu_bench.sh --tiny        # anywhere: the same steps with the tiny model on CPU
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-.}
tiny=() batches=1,16,64 static_batches=16,64 episodes=40 size=(--width 640 --height 480) budget=470
if [ "${1:-}" = "--tiny" ]; then
    tiny=(--tiny) batches=1,4 static_batches=4 episodes=3 size=(--width 96 --height 72) budget=3600
fi
if ! python3 -c 'import av, xgrammar' 2>/dev/null && [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu-bench-site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/gpu-bench-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 SVT_LOG=1 HF_HUB_OFFLINE=1
data=$(mktemp -d "${TMPDIR:-/tmp}/gpu-bench-data.XXXXXX")
status=0
run() {  # model cameras [cache batches seconds]
    local name=$1 cams=$2 cache=${3:-dynamic} sizes=${4:-$batches} limit=${5:-300}
    local tag=${name}_${cams}cam$([ "$cache" = dynamic ] || echo "_$cache") left=$((budget - SECONDS))
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 30 ]; then
        echo "== $tag skipped: ${left}s left of the ${budget}s budget"; status=1; return
    fi
    echo "== $name, $cams camera(s), $cache cache, batches $sizes (at most ${limit}s)"
    timeout "$limit" python3 scripts/bench_gpu_pipeline.py "${tiny[@]}" --model "$name" --cameras "$cams" \
        --cache "$cache" --episodes "$episodes" --frames 240 "${size[@]}" --batch-sizes "$sizes" \
        --full-batches 2 --new-tokens 64 --data-dir "$data/ds" --json "$out/gpu_bench_$tag.json" || status=1
}
run qwen2_5_vl_7b 1
run qwen2_5_vl_7b 2
run qwen3_vl_30b_a3b 2
run qwen2_5_vl_7b 1 static "$static_batches" "$budget"  # last: a slow compile cannot cost the rows above
rm -rf "$data"
echo "gpu_bench: $([ $status = 0 ] && echo PASS || echo FAIL)"
exit $status
