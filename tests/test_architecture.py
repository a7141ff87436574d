"""The house's rules (docs/design.md): no import circle, no module over ~400 lines, a light
``import hub_pgen`` whose public names resolve."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "hub_pgen"
MAX_LINES = 430  # "about 400"


def _modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        parts = p.relative_to(REPO).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """Every import of a hub_pgen module by another, at module level or inside a function (those hide
    a circle from Python, not from a reader); ``if TYPE_CHECKING:`` blocks are not imports."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
                    base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                if t.startswith("hub_pgen"):
                    r = _resolve(t, modules)
                    if r and r != mod:
                        graph[mod].add(r)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_circle():
    found = circles(import_graph())
    assert not found, "\n".join(" <-> ".join(c) for c in found)


def test_the_circle_finder_finds_one():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# the layers (docs/design.md): the stages and their helpers (0), run/ (1), the command line (2); an import
# from a lower layer into a higher one is an upward arrow. The one there is: RunConfig checks --engine
# against the engine registry.
ALLOWED_UPWARD = {("hub_pgen.config", "hub_pgen.run.engine")}


def _layer(mod: str) -> int:
    top = {"hub_pgen.run": 1, "hub_pgen.cli": 2, "hub_pgen.jobs": 2, "hub_pgen.jobs_api": 2, "hub_pgen.demo": 2,
           "hub_pgen.report": 2,
           "hub_pgen.__main__": 2}
    for prefix, n in top.items():
        if mod == prefix or mod.startswith(prefix + "."):
            return n
    return 0


def test_at_most_one_upward_arrow():
    graph = import_graph()
    upward = {(a, b) for a, targets in graph.items() for b in targets
              if _layer(b) > _layer(a) and a != "hub_pgen"}
    assert upward <= ALLOWED_UPWARD, sorted(upward - ALLOWED_UPWARD)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_is_over_about_400_lines(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(REPO)} has {n} lines: split it by responsibility"


def test_import_hub_pgen_is_light_and_its_public_names_resolve():
    code = ("import sys, hub_pgen\n"
            "heavy = [m for m in ('pyarrow', 'torch', 'pandas', 'numpy', 'transformers') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "for name in hub_pgen.__all__: getattr(hub_pgen, name)\n"
            "assert callable(hub_pgen.run) and hub_pgen.run.run is hub_pgen.run.driver.run\n"
            "assert hub_pgen.merge is hub_pgen.run.driver.merge\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 0, p.stderr


def test_the_readme_python_example_runs_as_typed(tmp_path):
    """README "From Python", copied as users copy it, in a fresh folder and a fresh interpreter."""
    readme = (REPO / "README.md").read_text()
    code = readme.split("### From Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("written ") and (tmp_path / "out" / "meta" / "hub_pgen.json").is_file()
