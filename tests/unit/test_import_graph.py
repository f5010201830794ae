"""mmgr's import graph has no cycles: between modules (imports inside functions included; TYPE_CHECKING ones are
not imports at run time) and between its folders (encoders, models, tokenizers, training, ...); inference and serving
import no training code, nor lightning."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def module_graph() -> dict[str, set[str]]:
    """module -> the mmgr modules it imports (a `from package import name` counts the submodule when it is one)."""
    files = {".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__"): p
             for p in (SRC / "mmgr").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(block.test) for n in ast.walk(block)}
        targets: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of `graph` as a path, or []."""
    state: dict[str, int] = {}                           # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return []

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return []


def test_no_module_imports_itself_through_others():
    assert cycle(module_graph()) == []


def test_no_folder_imports_itself_through_others():
    folder = lambda module: ".".join(module.split(".")[:2])             # noqa: E731 - mmgr.training, mmgr.cli ...
    graph: dict[str, set[str]] = {}
    for module, targets in module_graph().items():
        graph.setdefault(folder(module), set()).update(folder(t) for t in targets if folder(t) != folder(module))
    assert cycle(graph) == []


def test_the_check_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]


def reachable(graph: dict[str, set[str]], starts: list[str]) -> set[str]:
    """Every module `starts` import, directly or through others."""
    seen, todo = set(), list(starts)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += graph.get(module, ())
    return seen


def test_inference_and_serving_import_no_training_code():
    graph = module_graph()
    starts = [m for m in graph if m.startswith(("mmgr.inference", "mmgr.serving"))]
    training = {m for m in reachable(graph, starts) if m.startswith(("mmgr.training", "mmgr.engines",
                                                                      "mmgr.objectives"))}
    assert starts and training == set()


def test_evaluating_and_serving_never_import_lightning():
    """Lightning (with torchmetrics, which it imports: seconds of every start) is imported where a training starts,
    not by the engines `mmgr evaluate` loads nor by the server."""
    probe = ("import sys, mmgr.engines.generative, mmgr.engines.sasrec, mmgr.serving.app, mmgr.inference.ranker; "
             "print(sorted(m for m in ('lightning', 'torchmetrics') if m in sys.modules))")
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0 and shown.stdout.strip() == "[]", shown.stdout + shown.stderr
