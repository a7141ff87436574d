#!/usr/bin/env bash
# GPU smoke test: the first thing to run on a machine with a GPU (a few minutes on one H200).
#
# The path users take, end to end, with a real-size model and no download:
#   1. wheels   install .whl/*.whl (from scripts/gpu_wheels.sh) into WORK/site when av or xgrammar
#               do not import (a GPU machine may have neither, and no network)
#   2. install  pip-install this checkout without network, so `hub-pgen` is on PATH as users have it
#   3. env      versions, GPU name and memory (no CUDA device: FAIL at once, unless --tiny)
#   4. model    a Qwen2.5-VL-7B model folder (published hyperparameters, scripts/bench_gpu.py SPECS)
#               with random weights made on the GPU in bf16, saved with save_pretrained: sharded
#               safetensors + index, config, generation config, tokenizer, processor, chat template
#   5. dataset  a LeRobot v3.0 example (hub_pgen.example): 5 episodes, 2 AV1 cameras at 640x480
#   6. run      hub-pgen --root DS --model MODEL --device cuda --output-dir OUT --batch-size 8 --json
#               (frames -> generate (constrained JSON) -> journal -> write)
#   7. validate hub-pgen validate OUT --source DS; the run's log names device cuda and dtype bfloat16
#   8. as-is    the same dataset without meta/skills.json, as public datasets come: the same command
#               (--skills auto) labels the skills with the model first, then generates; validate
#   9. report   the run's counts (at least one dialogue, one D_syn record per sample, the new feature
#               in info.json), each step's wall time, and a one-line verdict: PASS or FAIL
# Exit 0 on PASS, 1 on FAIL, 2 on bad arguments. With $OUT set (the device tool's output folder)
# gpu_smoke.log, gpu_smoke.json, hub_pgen_result.json and hub_pgen_provenance.json go there.
#
#   bash scripts/gpu_wheels.sh                # HERE, with network, once: the wheels the GPU machine lacks
#   bash scripts/gpu_smoke.sh                 # THERE, on the GPU (carry .whl)
#   bash scripts/gpu_smoke.sh --tiny          # anywhere: tiny random model, tiny dataset, --device cpu
#   bash scripts/gpu_smoke.sh -- --max-new-tokens 128 --attn-implementation sdpa   # extra hub-pgen flags
#
# Options: --tiny; --spec qwen2_vl_7b (another scripts/bench_gpu.py SPECS model); --work DIR (kept,
# and a model/dataset already complete there is reused); --keep (keep the temporary WORK, which
# holds a 16 GB model, also on PASS: it is kept on FAIL anyway); --no-install (use the hub-pgen
# already on PATH); --wheels (install .whl/*.whl even when av and xgrammar import).
# Environment: PYTHON (default python3), HUB_PGEN_SMOKE_TIMEOUT (seconds per step, default 300).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

mode=gpu spec=qwen2_5_vl_7b work="" keep=0 install=1 force_wheels=0
extra=()
while [ $# -gt 0 ]; do
    case $1 in
        --tiny) mode=tiny ;;
        --spec) spec=${2:?--spec needs a name}; shift ;;
        --work) work=${2:?--work needs a folder}; keep=1; shift ;;
        --keep) keep=1 ;;
        --no-install) install=0 ;;
        --wheels) force_wheels=1 ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_smoke: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

PYTHON=${PYTHON:-python3}
TIMEOUT=${HUB_PGEN_SMOKE_TIMEOUT:-300}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}  # nothing is downloaded; with no network a lookup would hang
export HF_HUB_DISABLE_TELEMETRY=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export SVT_LOG=${SVT_LOG:-1}  # the AV1 encoder's banner, twice per video file, otherwise
if [ -z "$work" ]; then work=$(mktemp -d "${TMPDIR:-/tmp}/hub-pgen-gpu-smoke.XXXXXX") || exit 1; fi
mkdir -p "$work" && work=$(cd "$work" && pwd) || exit 1
steps=$work/steps.tsv
: >"$steps"

if [ -n "${OUT:-}" ]; then  # the device tool's output folder: keep the whole log there too
    mkdir -p "$OUT"
    exec 3>&1 4>&2
    exec > >(tee -a "$OUT/gpu_smoke.log") 2>&1
    tee_pid=$!
fi

log() { echo "[gpu_smoke $(date +%H:%M:%S)] $*"; }
now_us() {
    if [ -n "${EPOCHREALTIME:-}" ]; then echo "${EPOCHREALTIME//[.,]/}"; else echo $(( $(date +%s%N) / 1000 )); fi
}

# step NAME CMD...: run, time, record "NAME<TAB>rc<TAB>seconds" in $steps
step() {
    local name=$1 t0 us secs rc
    shift
    log "== $name"
    t0=$(now_us)
    "$@"
    rc=$?
    us=$(( $(now_us) - t0 ))
    secs=$(printf '%d.%02d' $((us / 1000000)) $((us % 1000000 / 10000)))
    printf '%s\t%d\t%s\n' "$name" "$rc" "$secs" >>"$steps"
    log "== $name: ${secs} s, exit $rc"
    return "$rc"
}

gpu_mem_max=""
finish() {
    local rc args=(report --work "$work" --steps "$steps" --mode "$mode" --json "$work/gpu_smoke.json")
    [ -n "$gpu_mem_max" ] && args+=(--gpu-mem-mib "$gpu_mem_max")
    log "== report"
    "$PYTHON" "$REPO/scripts/gpu_smoke.py" "${args[@]}"
    rc=$?
    [ -f "$work/gpu_smoke.json" ] || rc=1
    if [ -n "${OUT:-}" ]; then
        cp "$work/gpu_smoke.json" "$OUT/gpu_smoke.json" 2>/dev/null
        cp "$work/result.json" "$OUT/hub_pgen_result.json" 2>/dev/null
        cp "$work/out/meta/hub_pgen.json" "$OUT/hub_pgen_provenance.json" 2>/dev/null
    fi
    if [ "$rc" -eq 0 ] && [ "$keep" -eq 0 ]; then
        rm -rf "$work"
    else
        log "work folder kept: $work"
    fi
    if [ -n "${tee_pid:-}" ]; then exec 1>&3 2>&4; wait "$tee_pid" 2>/dev/null; fi
    exit "$rc"
}

# --- 1. wheels ------------------------------------------------------------------------------------
install_wheels() {
    local site=$work/site
    if [ "$force_wheels" -eq 0 ] && "$PYTHON" -c "import av, xgrammar" 2>/dev/null; then
        log "av and xgrammar import: no wheels needed"
        return 0
    fi
    if ! compgen -G ".whl/*.whl" >/dev/null; then
        log "av or xgrammar does not import and there is no .whl/: run 'bash scripts/gpu_wheels.sh' on a" \
            "machine with network, then carry .whl"
        "$PYTHON" -c "import av, xgrammar"
        return 1
    fi
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
        .whl/*.whl || return 1
    export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
    log "installed $(ls .whl/*.whl | wc -l) wheels into $site"
    "$PYTHON" -c "import av, xgrammar, importlib.metadata as m; print('imported av', m.version('av'), 'and xgrammar', m.version('xgrammar'))"
}

# --- 2. hub-pgen itself ---------------------------------------------------------------------------
install_hub_pgen() {
    local src=$work/src site=$work/site-hub-pgen
    if [ "$install" -eq 0 ]; then
        log "--no-install: using $(command -v hub-pgen || echo 'no hub-pgen on PATH')"
        command -v hub-pgen >/dev/null || return 1
    else
        # a copy, so the build's build/ and *.egg-info land there, not in the checkout
        rm -rf "$src" "$site" && mkdir -p "$src" || return 1
        tar --exclude=__pycache__ -cf - pyproject.toml README.md hub_pgen | tar -xf - -C "$src" || return 1
        export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
        export PATH=$site/bin:$PATH
        if ! "$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir \
                --target "$site" "$src"; then
            # keep the GPU time useful: the same entry point as a shim, and say so (the report shows it)
            log "WARNING: pip could not install hub-pgen (see above); using a shim for hub_pgen.cli:main"
            mkdir -p "$site/bin" && cp -r "$src/hub_pgen" "$site/" || return 1
            printf '#!%s\nimport sys\nfrom hub_pgen.cli import main\nsys.exit(main())\n' \
                "$(command -v "$PYTHON")" >"$site/bin/hub-pgen" && chmod +x "$site/bin/hub-pgen"
            printf 'hub-pgen installed as a shim: pip install failed\n' >"$work/install_note.txt"
        fi
        [ "$(command -v hub-pgen)" = "$site/bin/hub-pgen" ] || { log "hub-pgen on PATH is $(command -v hub-pgen)"; return 1; }
    fi
    log "hub-pgen: $(command -v hub-pgen) ($(hub-pgen --version))"
}

# --- 6. the run -----------------------------------------------------------------------------------
run_cli() {
    local device=cuda mon="" source=$work/source outdir=$work/out result=$work/result.json
    if [ "${1:-}" = as-is ]; then
        source=$work/source-as-is outdir=$work/out-as-is result=$work/result-as-is.json
    fi
    [ "$mode" = tiny ] && device=cpu
    local cmd=(hub-pgen --root "$source" --model "$work/model" --device "$device"
               --output-dir "$outdir" --batch-size 8 --json "${extra[@]}")
    rm -rf "$outdir" "$outdir.partial"  # a fresh run each time, also in a reused --work folder
    [ "${1:-}" = as-is ] || echo "${cmd[*]}" >"$work/command.txt"
    log "${cmd[*]}"
    if [ "$mode" = gpu ] && command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 >"$work/gpu_mem.csv" 2>/dev/null &
        mon=$!
    fi
    timeout -k 10 "$TIMEOUT" "${cmd[@]}" >"$result"
    local rc=$?
    if [ -n "$mon" ]; then
        kill "$mon" 2>/dev/null; wait "$mon" 2>/dev/null
        gpu_mem_max=$(sort -n "$work/gpu_mem.csv" 2>/dev/null | tail -1 | tr -dc 0-9)
        [ -n "$gpu_mem_max" ] && log "GPU memory used, max while running: ${gpu_mem_max} MiB"
    fi
    [ "$rc" -eq 124 ] && log "hub-pgen timed out after ${TIMEOUT} s"
    return "$rc"
}

tiny_flag=()
[ "$mode" = tiny ] && tiny_flag=(--tiny)
log "mode $mode, work $work, python $(command -v "$PYTHON")"

step wheels install_wheels || finish
step install install_hub_pgen || finish
step env "$PYTHON" scripts/gpu_smoke.py env "${tiny_flag[@]}" --json "$work/env.json" || finish
step model timeout -k 10 "$TIMEOUT" "$PYTHON" scripts/gpu_smoke.py model "$work/model" --spec "$spec" "${tiny_flag[@]}" || finish
step dataset timeout -k 10 "$TIMEOUT" "$PYTHON" scripts/gpu_smoke.py dataset "$work/source" "${tiny_flag[@]}" || finish
step run run_cli || finish
step validate timeout -k 10 "$TIMEOUT" hub-pgen validate "$work/out" --source "$work/source" || finish
step dataset-as-is timeout -k 10 "$TIMEOUT" "$PYTHON" scripts/gpu_smoke.py dataset "$work/source-as-is" --as-is \
    "${tiny_flag[@]}" || finish
step run-as-is run_cli as-is || finish
step validate-as-is timeout -k 10 "$TIMEOUT" hub-pgen validate "$work/out-as-is" --source "$work/source-as-is" || finish
finish
