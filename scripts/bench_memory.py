#!/usr/bin/env python
"""Memory and time against dataset length (issue 23), with the template backend, so only hub-pgen's
own work counts: every figure a ratio to the smallest size of the same invocation.

1. **Peak memory and time by size**: a whole ``hub-pgen`` run (a child process: its peak RSS from
   the kernel, ``wait4``) on generated svla_so101-shaped datasets of N episodes of ``--frames`` frames
   (``--episodes-per-file`` episodes a data file), per-frame sampling unless ``--sampling`` says
   otherwise. Each run also samples its RSS every 20 ms with the stage it is in (``--stages``), so a
   growth can be pinned on a stage.
2. **Resume**: the middle size killed when half its samples are journaled
   (``HUB_PGEN_KILL_AT=journal:N``), then the same command again, against a fresh run.
3. **Merge**: the middle size as ``--num-shards 4`` shards, ``hub-pgen merge``'s peak against one
   shard's, with the review page and without it (``--no-review``); and against a shard run with
   ``--no-review``, which makes no pictures for the merged page (with the template backend, the only
   frames such a shard decodes).
4. **Read back**: what a finishing stage pays per record it reads back from the journal
   (``JournalView``), against reading the middle size's records whole (``load_journal``); what a
   resumed run pays to index a line (``JournalView.load``) and the quality measures a record
   (``Meter``): for this checkout and the baseline, each in a child of its own.

    python scripts/bench_memory.py [--sizes 50,500,2000] [--frames 240] [--sampling frame] [--json]
                                   [--baseline DIR]   # DIR: git worktree add DIR <earlier commit>
                                   [--unique-texts]   # every dialogue its own, as a model's are

The template backend writes ~800 distinct dialogues however long the dataset; a model writes one a
sample. ``--unique-texts`` makes each sample's dialogue its own (a few words drawn by the sample added
to the template's), so what a run holds per distinct dialogue (task rows, quality measures) shows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# runs in the child: the CLI with an RSS sampler that knows the stage (the reporter's stage names, and
# the finishing steps by the functions they call)
_CHILD = r"""
import json, os, sys, threading, time
out = sys.argv[1]
samples = []
state = {"stage": "start"}
def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
def sampler():
    while True:
        samples.append((time.monotonic(), state["stage"], rss()))
        time.sleep(0.02)
threading.Thread(target=sampler, daemon=True).start()
import hub_pgen.cli  # first, as `python -m hub_pgen` does: what it sets on import holds before the tags import more
if os.environ.get("BENCH_UNIQUE_TEXTS") == "1":  # a model's texts: every sample's dialogue its own
    import dataclasses, hashlib
    import hub_pgen.generate.template as template
    _write = template.write_dialogue
    WORDS = ("please", "now", "gently", "carefully", "quickly", "slowly", "again", "first", "then", "after",
             "the", "red", "blue", "green", "small", "big", "left", "right", "near", "far", "cup", "brick",
             "box", "block", "table", "tray", "bowl", "lid", "edge", "corner", "top", "side")
    def write_dialogue(**kw):
        d = _write(**kw)
        h = hashlib.blake2b(kw["key"].encode(), digest_size=16).digest()
        a = " ".join(WORDS[b % len(WORDS)] for b in h[:6])
        b = " ".join(WORDS[b % len(WORDS)] for b in h[6:12])
        return dataclasses.replace(d, user_prompt=f"{d.user_prompt} {a.capitalize()}.",
                                   robot_utterance=f"{d.robot_utterance} {b.capitalize()}.")
    template.write_dialogue = write_dialogue
import hub_pgen.progress as progress
_make = progress.make_reporter
def make_reporter(**kw):
    inner = _make(**kw)
    real = inner.stage
    def stage(name, detail=""):
        state["stage"] = name
        real(name, detail)
    inner.stage = stage
    started = inner.samples_start
    def samples_start(total, done):
        state["stage"] = "generate"
        started(total, done)
    inner.samples_start = samples_start
    return inner
progress.make_reporter = make_reporter
def tag(module, name, label):
    import importlib
    mod = importlib.import_module(module)
    fn = getattr(mod, name, None)
    if fn is None:  # another checkout (--baseline) may not have it
        return
    def wrapped(*a, **k):
        before = state["stage"]
        state["stage"] = label
        try:
            return fn(*a, **k)
        finally:
            state["stage"] = before
    setattr(mod, name, wrapped)
for module, name, label in [("hub_pgen.plan.planner", "build_plan", "plan"),
                            ("hub_pgen.quality", "measure", "quality"),
                            ("hub_pgen.run.finish", "_pass", "pass"),
                            ("hub_pgen.write.language", "language_columns", "language"),
                            ("hub_pgen.write.dataset", "write_dataset", "write"),
                            ("hub_pgen.review", "write_report", "review"),
                            ("hub_pgen.run.finish", "check_staged", "validate"),
                            ("hub_pgen.run.merging", "check_coverage", "shards-check"),
                            ("hub_pgen.run.merging", "stage_journal", "shards-journal")]:
    tag(module, name, label)
from hub_pgen.cli import main
try:
    rc = main(sys.argv[2:])
finally:
    by = {}
    t0 = samples[0][0] if samples else 0
    for t, stage, r in samples:
        d = by.setdefault(stage, {"peak_mb": 0, "first_s": t - t0, "last_s": t - t0})
        d["peak_mb"] = max(d["peak_mb"], r / 2**20)
        d["last_s"] = t - t0
    with open(out, "w") as fh:
        json.dump(by, fh)
sys.exit(rc)
"""


REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # this checkout's hub_pgen for what runs here (the read-back arm), installed or not
UNIQUE_TEXTS = False  # --unique-texts


def child(argv: list[str], env: dict[str, str] | None = None, stages: Path | None = None,
          code: Path = REPO) -> dict:
    """One hub-pgen run in a child process, of the checkout ``code`` (its folder is the child's working
    folder and PYTHONPATH: ``-m``/``-c`` import from the working folder first, whatever is installed):
    its wall time, peak RSS (MiB), exit code, and (``stages``) its peak RSS by stage."""
    cmd = [sys.executable, "-c", _CHILD, str(stages or os.devnull), *argv, "-q"] if stages or UNIQUE_TEXTS else \
        [sys.executable, "-m", "hub_pgen", *argv, "-q"]
    if UNIQUE_TEXTS:
        env = {**(env or {}), "BENCH_UNIQUE_TEXTS": "1"}
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(code), **(env or {})},
                            cwd=code, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    out = {"s": round(wall, 2), "peak_mb": round(usage.ru_maxrss / 1024, 1), "rc": proc.returncode}
    if stages and stages.is_file():
        out["stages"] = json.loads(stages.read_text())
    if proc.returncode not in (0, -9) and proc.returncode != 137:
        print(err[-3000:], file=sys.stderr)
    return out


def by_stage(stages: dict) -> dict:
    """A run's stages as {stage: [seconds in it, peak MiB so far]} (the sampler's first and last look)."""
    return {k: [round(d["last_s"] - d["first_s"], 2), round(d["peak_mb"], 1)] for k, d in stages.items()}


_READ_BACK = r"""
import json, sys, time
from pathlib import Path
from hub_pgen.journal import JournalView, load_journal
from hub_pgen.quality import Meter
path = Path(sys.argv[1])
t = time.perf_counter()
records = load_journal(path)
whole = (time.perf_counter() - t) / len(records)
t = time.perf_counter()
meter = Meter()
for r in records.values():
    meter.add(r)
meter.result()
measured = (time.perf_counter() - t) / len(records)
del records, meter
t = time.perf_counter()
view = JournalView.load(path, fingerprint=None)
index = (time.perf_counter() - t) / len(view)
t = time.perf_counter()
for sid in view:
    view[sid]
each = (time.perf_counter() - t) / len(view)
print(json.dumps({"records": len(view), "view_read_us": round(each * 1e6, 1),
                  "load_journal_us": round(whole * 1e6, 1), "x_load_journal": round(each / whole, 2),
                  "view_index_us": round(index * 1e6, 1), "meter_us": round(measured * 1e6, 1)}))
"""


def read_back(path: Path, code: Path = REPO) -> dict:
    """What the finish pays per record of ``path`` (a D_syn file, read as a journal), in a child of the
    checkout ``code``: to read one back from the journal (JournalView: pread + parse) against reading the
    whole file once into records (load_journal); to index a line without making its record (a resumed
    run's scan: JournalView.load); and to measure it (the quality Meter; with --unique-texts, a model's
    texts). An error (a checkout without these) is given as such."""
    proc = subprocess.run([sys.executable, "-c", _READ_BACK, str(path)], capture_output=True, text=True, cwd=code,
                          env={**os.environ, "PYTHONPATH": str(code)})
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc {proc.returncode}"}
    return json.loads(proc.stdout)


def build(root: Path, episodes: int, frames: int, per_file: int, cameras: int) -> None:
    from hub_pgen.example import build_example_dataset
    from hub_pgen.example.spec import DEFAULT_CAMERAS, ExampleSpec

    build_example_dataset(root, ExampleSpec(n_episodes=episodes, frames_per_episode=frames,
                                            cameras=DEFAULT_CAMERAS[:cameras], width=64, height=48,
                                            episodes_per_file=per_file))


def arms(code: Path, work: Path, sizes: list[int], args: argparse.Namespace, tag: str) -> dict:
    """Every arm for the checkout ``code``: a run by size, then resume and merge at the middle size."""
    sampling = ["--sampling", args.sampling] + (["--sample-interval", "1.0"] if args.sampling == "interval" else [])
    rows = {}
    for n in sizes:
        src = work / f"src{n}"
        out = work / f"out{n}{tag}"
        subprocess.run(["rm", "-rf", str(out)], check=True)
        r = child(["--root", str(src), "--output-dir", str(out), "--backend", "template", *sampling],
                  stages=work / f"stages{n}{tag}.json" if args.stages else None, code=code)
        r["samples"] = sum(1 for _ in (out / "meta" / "syn_annotations.jsonl").open()) if r["rc"] == 0 else None
        rows[n] = r
        print(f"{code}: {n} episodes: {r}", file=sys.stderr)
    base = rows[sizes[0]]
    result: dict = {"code": str(code), "sampling": args.sampling, "frames": args.frames, "sizes": {}}
    for n in sizes:
        r = rows[n]
        result["sizes"][n] = {**r, "peak_x": round(r["peak_mb"] / base["peak_mb"], 2),
                              "time_x": round(r["s"] / base["s"], 2),
                              "data_x": round(n / sizes[0], 1)}
    mid = sizes[len(sizes) // 2] if len(sizes) > 1 else sizes[0]
    src = work / f"src{mid}"
    if not args.no_resume and rows[mid]["samples"]:
        out = work / f"resume{mid}{tag}"
        cmd = ["--root", str(src), "--output-dir", str(out), "--backend", "template", *sampling]
        batches = rows[mid]["samples"]  # one journal append a batch, and --batch-size is 1
        tries = []
        for k in range(args.resume_repeat):
            # a fresh run beside each resume (the first: the size's own run), then killed at half and resumed
            fresh = rows[mid] if k == 0 else child(cmd[:3] + [str(out) + "-fresh"] + cmd[4:], code=code)
            subprocess.run(["rm", "-rf", str(out), str(out) + ".partial", str(out) + "-fresh"], check=True)
            killed = child(cmd, env={"HUB_PGEN_KILL_AT": f"journal:{batches // 2}"}, code=code)
            left = sum(1 for _ in (out.with_name(out.name + ".partial") / "journal.jsonl").open())
            resumed = child(cmd, code=code, stages=work / f"stages-resumed{mid}{tag}.json" if args.stages else None)
            tries.append({"killed_rc": killed["rc"], "killed_s": killed["s"], "journaled_at_kill": left,
                          "resumed_s": resumed["s"], "fresh_s": fresh["s"],
                          "resumed_x_fresh": round(resumed["s"] / fresh["s"], 2),
                          **({"resumed_stages": by_stage(resumed["stages"])} if "stages" in resumed else {})})
        result["resume"] = {"episodes": mid, **tries[0],
                            "median_resumed_x_fresh": statistics.median(t["resumed_x_fresh"] for t in tries),
                            "tries": tries}
    if not args.no_merge and rows[mid]["samples"]:
        shard_rows = []
        for i in range(4):
            out = work / f"shard{mid}-{i}{tag}"
            subprocess.run(["rm", "-rf", str(out)], check=True)
            shard_rows.append(child(["--root", str(src), "--output-dir", str(out), "--backend", "template", *sampling,
                                     "--num-shards", "4", "--shard-index", str(i)], code=code))
        merged = work / f"merged{mid}{tag}"
        subprocess.run(["rm", "-rf", str(merged)], check=True)
        m = child(["merge", *[str(work / f"shard{mid}-{i}{tag}") for i in range(4)], "--root", str(src),
                   "--output-dir", str(merged)], code=code,
                  stages=work / f"stages-merge{mid}{tag}.json" if args.stages else None)
        subprocess.run(["rm", "-rf", str(merged)], check=True)
        bare = child(["merge", *[str(work / f"shard{mid}-{i}{tag}") for i in range(4)], "--root", str(src),
                      "--output-dir", str(merged), "--no-review"], code=code)  # no page
        # a shard that makes no pictures for the merged page (--no-review): the template backend decodes
        # no frame, so a shard loads PyAV for those pictures only (a model's shard has it loaded anyway)
        out = work / f"shard{mid}-bare{tag}"
        subprocess.run(["rm", "-rf", str(out)], check=True)
        bare_shard = child(["--root", str(src), "--output-dir", str(out), "--backend", "template", *sampling,
                            "--num-shards", "4", "--shard-index", "0", "--no-review"], code=code)
        subprocess.run(["rm", "-rf", str(out)], check=True)
        shard_peak = max(r["peak_mb"] for r in shard_rows)
        result["merge"] = {"episodes": mid, "shard_peak_mb": shard_peak,
                           "merge_peak_mb": m["peak_mb"], "one_machine_peak_mb": rows[mid]["peak_mb"],
                           "merge_x_shard": round(m["peak_mb"] / shard_peak, 2),
                           "merge_no_review_peak_mb": bare["peak_mb"],
                           "merge_no_review_x_shard": round(bare["peak_mb"] / shard_peak, 2),
                           "shard_no_review_peak_mb": bare_shard["peak_mb"],
                           "merge_x_shard_no_review": round(m["peak_mb"] / bare_shard["peak_mb"], 2),
                           "merge_s": m["s"], "rc": m["rc"], "rc_no_review": bare["rc"],
                           **({"merge_stages": by_stage(m["stages"])} if "stages" in m else {})}
    return result


def show(result: dict) -> None:
    print(f"{result['code']}: template backend, --sampling {result['sampling']}, {result['frames']} frames an episode")
    print(f"{'episodes':>9} {'samples':>8} {'seconds':>8} {'peak MiB':>9} {'x data':>7} {'x peak':>7} {'x time':>7}")
    for n, r in result["sizes"].items():
        print(f"{n:>9} {r['samples'] or '-':>8} {r['s']:>8} {r['peak_mb']:>9} {r['data_x']:>7} {r['peak_x']:>7} "
              f"{r['time_x']:>7}")
        for stage, d in (r.get("stages") or {}).items():
            print(f"{'':>12}{stage:<12} peak {d['peak_mb']:8.1f} MiB  {d['first_s']:7.2f}-{d['last_s']:.2f} s")
    if "resume" in result:
        print(f"resume (killed at half): {result['resume']}")
    if "merge" in result:
        print(f"merge (4 shards): {result['merge']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="50,500,2000", help="episodes per dataset, comma-separated")
    p.add_argument("--frames", type=int, default=240, help="frames per episode")
    p.add_argument("--episodes-per-file", type=int, default=25)
    p.add_argument("--cameras", type=int, default=2)
    p.add_argument("--sampling", default="frame", choices=("segment", "interval", "frame"))
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--no-merge", action="store_true")
    p.add_argument("--resume-repeat", type=int, default=1,
                   help="resume arm this many times, each beside a fresh run of its own (this machine's timings "
                        "vary by ~15%%: the median is the figure)")
    p.add_argument("--stages", action="store_true", help="peak RSS by stage (a sampler in each run)")
    p.add_argument("--baseline", type=Path, default=None,
                   help="a checkout of an earlier commit (git worktree add DIR COMMIT): every arm runs there too, "
                        "after this checkout's, and the figures are given as ratios to it")
    p.add_argument("--work", type=Path, default=None, help="keep the datasets here (reused when present)")
    p.add_argument("--unique-texts", action="store_true",
                   help="every sample's dialogue its own, as a model writes them (the template's, with a few words "
                        "drawn by the sample: 32^6 phrasings a side); the template repeats ~800 dialogues")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    global UNIQUE_TEXTS
    UNIQUE_TEXTS = args.unique_texts
    sizes = [int(x) for x in args.sizes.split(",")]
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-memory-"))
    for n in sizes:
        src = work / f"src{n}"
        if not (src / "meta" / "info.json").is_file():
            t = time.perf_counter()
            build(src, n, args.frames, args.episodes_per_file, args.cameras)
            print(f"built {n} episodes in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    result = arms(REPO, work, sizes, args, "")
    mid = sizes[len(sizes) // 2] if len(sizes) > 1 else sizes[0]
    if result["sizes"][mid]["samples"]:
        result["read_back"] = read_back(work / f"out{mid}" / "meta" / "syn_annotations.jsonl")
    if args.baseline is not None:
        before = arms(args.baseline.resolve(), work, sizes, args, "-baseline")
        if before["sizes"][mid]["samples"]:
            before["read_back"] = read_back(work / f"out{mid}-baseline" / "meta" / "syn_annotations.jsonl",
                                            args.baseline.resolve())
        result["baseline"] = before
        result["vs_baseline"] = {n: {"peak": round(r["peak_mb"] / before["sizes"][n]["peak_mb"], 2),
                                     "time": round(r["s"] / before["sizes"][n]["s"], 2)}
                                 for n, r in result["sizes"].items()}
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    show(result)
    if "read_back" in result:
        print(f"a record read back ({mid} episodes' syn_annotations.jsonl): {result['read_back']}")
    if args.baseline is not None:
        show(result["baseline"])
        if "read_back" in result["baseline"]:
            print(f"baseline, a record read back: {result['baseline']['read_back']}")
        print(f"this checkout / baseline, by size: {result['vs_baseline']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
