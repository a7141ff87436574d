"""hub_pgen/cli/: one parser class for every subcommand, a dispatch table, small modules.

Every subcommand answers a bad argument the same way: exit 2, ``hub-pgen: error: …`` and a ``TIP:``
line on stderr (no argparse usage block), and with ``--json`` the main command's JSON error object on
stdout. The library never imports the command line, and importing it pulls in no heavy package.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hub_pgen.cli
from hub_pgen.cli import COMMANDS, main
from hub_pgen.cli.options import EPILOG, USAGE
from hub_pgen.cli.parser import SUBCOMMANDS

PACKAGE = Path(hub_pgen.cli.__file__).parent
LIBRARY = PACKAGE.parent
JSON_ERROR_KEYS = {"state", "exit_code", "error", "tip"}  # what the main command has always printed

# one bad argument per subcommand: an unknown flag, and a value of the wrong type
BAD = {
    "run": (["--root", "x", "--no-such-flag"], ["--root", "x", "--seed", "many"]),
    "demo": (["demo", "--no-such-flag"], ["demo", "--episodes", "many"]),
    "validate": (["validate", "x", "--no-such-flag"], ["validate"]),
    "report": (["report", "x", "--no-such-flag"], ["report", "x", "--max-cards", "many"]),
    "merge": (["merge", "s", "--root", "x", "--no-such-flag"], ["merge", "--root", "x"]),
    "label": (["label", "--root", "x", "--no-such-flag"], ["label", "--root", "x", "--batch-size", "many"]),
}


def cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_every_documented_subcommand_has_a_bad_argument_case():
    assert set(BAD) == {"run", *SUBCOMMANDS}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_argument_is_exit_2_with_a_tip_on_every_subcommand(name, capsys):
    for argv in BAD[name]:
        rc, out, err = cli(capsys, argv)
        assert rc == 2, (argv, err)
        assert out == ""  # nothing on stdout without --json
        lines = err.splitlines()
        assert lines[0].startswith("hub-pgen: error: "), (argv, err)
        assert lines[1].startswith("TIP: ") and len(lines[1]) > len("TIP: "), (argv, err)
        assert "usage:" not in err  # argparse's own error path (a usage block, no TIP) is never taken


@pytest.mark.parametrize("name", sorted(BAD))
def test_with_json_a_bad_argument_is_the_main_commands_json_error(name, capsys):
    for argv in BAD[name]:
        rc, out, err = cli(capsys, [*argv, "--json"])
        doc = json.loads(out)
        assert set(doc) == JSON_ERROR_KEYS, (argv, doc)
        assert doc["state"] == "error" and doc["exit_code"] == rc == 2, (argv, doc)
        assert doc["error"] and doc["tip"], (argv, doc)
        assert f"hub-pgen: error: {doc['error']}" in err and f"TIP: {doc['tip']}" in err  # still readable


@pytest.mark.parametrize("name", ["demo", "validate", "report"])
def test_json_on_a_subcommand_without_json_output_is_said(name, tmp_path, capsys):
    """They print no JSON result; --json given to them is refused, as JSON, with a TIP saying so."""
    rc, out, _ = cli(capsys, [name, str(tmp_path), "--json"] if name != "demo" else [name, "--json"])
    doc = json.loads(out)
    assert rc == doc["exit_code"] == 2 and "--json" in doc["error"]
    assert f"hub-pgen {name} prints no JSON result: drop --json" in doc["tip"]


def test_a_misspelt_flag_on_a_subcommand_gets_the_did_you_mean_tip(capsys):
    rc, _, err = cli(capsys, ["validate", "x", "--sourse", "y"])
    assert rc == 2 and "TIP: did you mean --source?" in err


def test_the_dispatch_table_is_exactly_the_documented_subcommands():
    assert tuple(COMMANDS) == SUBCOMMANDS
    usage_words = [line.split()[1] for line in USAGE.splitlines()[1:]]  # "%(prog)s WORD ..."
    assert usage_words == list(SUBCOMMANDS)
    listed = EPILOG.split("\n\n")[0].splitlines()
    assert listed[0] == "subcommands:"
    assert [line.split()[0] for line in listed[1:] if not line.startswith(" " * 4)] == list(SUBCOMMANDS)
    for name, function in COMMANDS.items():  # each is its own module's main
        assert function.__module__ == f"hub_pgen.cli.{name}" and function.__name__ == "main"


def test_cli_modules_are_each_at_most_400_lines():
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.glob("*.py")}
    assert {"__init__.py", "parser.py", "dispatch.py", *(f"{n}.py" for n in ("run", *SUBCOMMANDS))} <= set(sizes)
    assert {name: n for name, n in sizes.items() if n > 400} == {}


def test_the_library_never_imports_the_command_line():
    offenders = []
    for path in LIBRARY.rglob("*.py"):
        if PACKAGE in path.parents or path.name == "__main__.py" and path.parent == LIBRARY:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            names += [f"hub_pgen.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) \
                and node.module == "hub_pgen" else []
            if any(n == "hub_pgen.cli" or n.startswith("hub_pgen.cli.") for n in names):
                offenders.append(f"{path.relative_to(LIBRARY)}:{node.lineno}")
    assert offenders == []


def test_importing_the_command_line_pulls_in_no_heavy_package():
    code = ("import sys, hub_pgen.cli; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'pyarrow', 'torch', 'numpy', 'rich', "
            "'huggingface_hub', 'transformers'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=True)
    assert out.stdout.strip() == "[]"


def test_the_command_lines_process_takes_arrows_buffers_from_the_system_allocator():
    """Arrow's default pool (mimalloc) keeps what a run's data files needed (~30 MiB more peak at 2,000
    episodes, docs/benchmarks.md): the command line's process asks for the system's, unless the user
    chose a pool; the library alone sets nothing."""
    probe = "import {m}, pyarrow; print(pyarrow.default_memory_pool().backend_name)"
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}

    def pool(module: str, **extra: str) -> str:
        out = subprocess.run([sys.executable, "-c", probe.format(m=module)], env={**env, **extra},
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()

    assert pool("hub_pgen.cli") == "system"
    assert pool("hub_pgen.cli", ARROW_DEFAULT_MEMORY_POOL="jemalloc") == "jemalloc"
    assert pool("hub_pgen.run") != "system"  # the library leaves the process's choice alone


def test_the_command_lines_threads_share_two_glibc_heaps():
    """glibc's heaps a thread (up to 8 a core) each keep what their thread freed (~8 MiB more peak at a
    500-episode merge): the command line's process caps them at two, unless the user set
    MALLOC_ARENA_MAX. Counted by glibc itself (malloc_info) after 16 threads allocated at once."""
    probe = r"""
import ctypes, os, sys, tempfile, threading
import {m}
libc = ctypes.CDLL(None)
if not hasattr(libc, "gnu_get_libc_version"):
    print("not glibc"); sys.exit()
start = threading.Barrier(16)
def work():
    start.wait()
    blocks = [ctypes.create_string_buffer(4096) for _ in range(64)]
    start.wait()
threads = [threading.Thread(target=work) for _ in range(16)]
[t.start() for t in threads]; [t.join() for t in threads]
fd, path = tempfile.mkstemp()
libc.fdopen.restype = ctypes.c_void_p
fp = libc.fdopen(fd, b"w")
libc.malloc_info(0, ctypes.c_void_p(fp)); libc.fflush(ctypes.c_void_p(fp))
print(open(path).read().count("<heap nr="))
"""
    def heaps(module: str, **extra: str) -> str:
        return _probe(probe, module, "MALLOC_ARENA_MAX", **extra)

    if heaps("json") == "not glibc":
        pytest.skip("glibc's arenas only")
    assert int(heaps("json")) > 2  # glibc's own default: a heap for most of the threads
    assert int(heaps("hub_pgen.cli")) == 2
    assert int(heaps("hub_pgen.cli", MALLOC_ARENA_MAX="4")) == 4  # the user's choice stands


def test_the_command_line_keeps_glibcs_mmap_threshold_from_moving():
    """Once a mapped block is freed glibc raises its threshold to that block's size, and 1 MiB blocks
    come from the heap from then on (their holes stay: ~40-80 MiB more peak with a model's texts at
    2,000 episodes): the command line's process fixes it, unless the user set MALLOC_MMAP_THRESHOLD_.
    Counted by glibc itself (mallinfo2: its mapped blocks) for a 1 MiB block asked after one freed."""
    probe = r"""
import ctypes, sys
import {m}
libc = ctypes.CDLL(None)
if not hasattr(libc, "mallinfo2"):
    print("no mallinfo2"); sys.exit()
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.free(libc.malloc(1 << 20))
before = libc.mallinfo2().hblks
block = libc.malloc(1 << 20)
print(libc.mallinfo2().hblks - before)
"""
    def mapped(module: str, **extra: str) -> str:
        return _probe(probe, module, "MALLOC_MMAP_THRESHOLD_", **extra)

    if mapped("json") == "no mallinfo2":
        pytest.skip("glibc 2.33's mallinfo2 only")
    assert mapped("json") == "0"  # glibc's own: the threshold moved to 1 MiB, the block is on the heap
    assert mapped("hub_pgen.cli") == "1"
    assert mapped("hub_pgen.cli", MALLOC_MMAP_THRESHOLD_="4194304") == "0"  # the user's choice stands


def _probe(code: str, module: str, unset: str, **extra: str) -> str:
    """What ``code`` prints in a fresh Python that imports ``module`` first, without the user's ``unset``
    (glibc reads it at start) and with ``extra`` in its environment."""
    env = {k: v for k, v in os.environ.items() if k != unset}
    out = subprocess.run([sys.executable, "-c", code.format(m=module)], env={**env, **extra},
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()
