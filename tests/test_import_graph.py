"""No import cycle inside src/tinydistill: every import of a tinydistill module counts, wherever it is written
(module top, inside a function, under ``if TYPE_CHECKING:``), so a loop cannot hide in a function body."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "tinydistill"

#: Loops known and owned elsewhere, each with the way out (none left: ``Student`` and the helpers student_sizes
#: borrows moved below both, into student_base).
KNOWN_LOOPS: set[frozenset[str]] = set()


def module_names(src: Path = SRC) -> dict[str, Path]:
    """Dotted module name → file, for every ``.py`` file of the package."""
    names = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module named by a ``from … import`` (relative levels resolved against ``importer``)."""
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_modules(name: str, path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its file, with the packages that importing them
    runs first (``a.b.c`` runs ``a.b``'s ``__init__``) unless that package already holds ``name``."""
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, is_package, node)
            targets.add(base)
            targets.update(f"{base}.{a.name}" for a in node.names)  # ``from . import zero`` names a module
    found = set()
    for target in targets:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            mod = ".".join(parts[:i])
            holds_importer = name == mod or name.startswith(mod + ".")
            if mod in modules and not holds_importer:
                found.add(mod)
    return found


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    names = module_names(src)
    return {name: imported_modules(name, path, set(names)) for name, path in names.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components that hold a cycle (more than one module, or a self-import); Tarjan."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(components)


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle (``a → b → … → a``) per strongly connected component."""
    return [_cycle_in(graph, set(comp)) for comp in strongly_connected(graph)]


def _cycle_in(graph: dict[str, set[str]], comp: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first inside the component)."""
    start = min(comp)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & comp):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    return [start, start]


def test_the_graph_sees_imports_everywhere(tmp_path):
    """Relative, absolute, ``from . import mod``, function-level and TYPE_CHECKING imports are all edges."""
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import leaf\n")
    (pkg / "sub" / "leaf.py").write_text("from ..b import x\n")
    (pkg / "a.py").write_text("def f():\n    from .b import y\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import tinydistill.c\n")
    (pkg / "c.py").write_text("from tinydistill.sub.leaf import z\n")
    graph = import_graph(tmp_path)
    assert graph["tinydistill.a"] == {"tinydistill.b"}
    assert graph["tinydistill.b"] == {"tinydistill.c"}
    assert graph["tinydistill.c"] == {"tinydistill.sub", "tinydistill.sub.leaf"}
    assert graph["tinydistill.sub"] == {"tinydistill.sub.leaf"}
    assert find_cycles(graph) == [["tinydistill.b", "tinydistill.c", "tinydistill.sub.leaf", "tinydistill.b"]]
    assert strongly_connected(graph) == [["tinydistill.b", "tinydistill.c", "tinydistill.sub", "tinydistill.sub.leaf"]]
    (pkg / "c.py").write_text("")
    assert find_cycles(import_graph(tmp_path)) == []


def test_no_import_cycle_in_the_package():
    graph = import_graph()
    assert len(graph) > 40  # the walk found the package
    loops = [f"{' → '.join(_cycle_in(graph, set(comp)))}  (loop of {len(comp)}: {', '.join(comp)})"
             for comp in strongly_connected(graph) if frozenset(comp) not in KNOWN_LOOPS]
    assert not loops, "import cycles:\n" + "\n".join(loops)


def test_argparse_lives_in_the_cli_layer_only():
    """Feature modules take typed arguments; only ``tinydistill.cli`` builds parsers."""
    users = [name for name, path in module_names().items() if not (name == "tinydistill.cli"
             or name.startswith("tinydistill.cli.")) and any(
        isinstance(node, ast.Import) and any(a.name == "argparse" for a in node.names)
        or isinstance(node, ast.ImportFrom) and node.module == "argparse"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))))]
    assert users == []


# ----------------------------------------------------------------------------------------------- layer rules
#: Each part of the package (a sub-package or a top-level module) and the parts it may import: the pipeline's
#: layers, bottom to top (docs/ARCHITECTURE.md). Data and losses know no model, loop or CLI; teachers know no loop;
#: the loop knows no CLI; evaluation reads saved students, not the loop; serving and export need no trainer.
BASE = {"errors", "files"}
LAYERS: dict[str, set[str]] = {
    "errors": set(),
    "files": {"errors"},
    "losses": set(),
    "config": BASE,
    "data": BASE | {"config"},
    "teachers": BASE | {"config", "data"},
    "students": BASE | {"config", "data", "losses"},
    "methods": BASE | {"config", "data", "losses", "teachers", "students"},
    "training": BASE | {"config", "data", "losses", "students", "methods"},
    "evaluation": BASE | {"config", "data", "teachers", "students"},
    "export": BASE | {"config", "data", "students", "evaluation"},
    "serve": BASE | {"config", "data", "teachers", "students", "evaluation", "export"},
    "teach": BASE | {"config", "data", "teachers", "training"},
    "run": BASE | {"config", "data", "losses", "teachers", "students", "methods", "training", "evaluation"},
    "quickstart": BASE | {"config", "data", "evaluation", "run"},
    "study": BASE | {"config", "data", "losses", "teachers", "students", "methods", "training", "evaluation", "export",
                     "run"},
    "shrink": BASE | {"config", "data", "evaluation", "run", "quickstart", "study"},
    "cli": BASE | {"config", "data", "teachers", "students", "methods", "training", "evaluation", "export", "serve",
                   "teach", "run", "quickstart", "shrink", "study"},
    "__main__": {"cli"},
}
#: Third-party libraries a part must not import: the data layer and the pure losses load no model library.
FORBIDDEN_LIBRARIES = {"data": {"transformers", "accelerate", "peft"}, "losses": {"transformers", "accelerate", "peft"},
                       "config": {"transformers", "accelerate", "peft"}}


def part_of(module: str) -> str:
    """``tinydistill.students.base`` → ``students``; ``tinydistill.run`` → ``run``; the root is ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for importer, targets in sorted(graph.items()):
        mine = part_of(importer)
        if not mine:
            continue
        assert mine in LAYERS, f"{mine}: a new part of the package; give it a place in LAYERS"
        for target in sorted(targets):
            theirs = part_of(target)
            if theirs and theirs != mine and theirs not in LAYERS[mine]:
                bad.append(f"{importer} imports {target} ({mine} may not import {theirs})")
    return bad


def face_violations(src: Path = SRC) -> list[str]:
    """Imports that reach past another package's face (its ``__init__``) into one of its modules."""
    names = module_names(src)
    packages = {n for n, p in names.items() if p.name == "__init__.py" and n.count(".") == 1}
    bad = []
    for name, path in sorted(names.items()):
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            target = _resolve(name, is_package, node)
            if not target.startswith(PACKAGE + "."):
                continue
            owner = ".".join(target.split(".")[:2])
            if owner in packages and target != owner and part_of(name) != part_of(owner):
                bad.append(f"{name}: from {target} import … (import it from {owner})")
    return bad


def third_party_violations(src: Path = SRC) -> list[str]:
    bad = []
    for name, path in sorted(module_names(src).items()):
        banned = FORBIDDEN_LIBRARIES.get(part_of(name), set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            bad += [f"{name} imports {m}" for m in mods if m.split(".")[0] in banned]
    return bad


def test_layer_rules_catch_an_upward_import(tmp_path):
    pkg = tmp_path / PACKAGE
    for sub in ("data", "training", "evaluation"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "loaders.py").write_text("from ..training import train\n")
    (pkg / "evaluation" / "card.py").write_text("from ..training.trainer import x\nimport transformers\n")
    (pkg / "training" / "trainer.py").write_text("from ..data import Example\n")
    graph = import_graph(tmp_path)
    assert layer_violations(graph) == [
        "tinydistill.data.loaders imports tinydistill.training (data may not import training)",
        "tinydistill.evaluation.card imports tinydistill.training (evaluation may not import training)",
        "tinydistill.evaluation.card imports tinydistill.training.trainer (evaluation may not import training)"]
    assert face_violations(tmp_path) == [
        "tinydistill.evaluation.card: from tinydistill.training.trainer import … (import it from tinydistill.training)"]
    (pkg / "data" / "records.py").write_text("import torch\nfrom transformers import AutoModel\n")
    assert third_party_violations(tmp_path) == ["tinydistill.data.records imports transformers"]


def test_the_package_keeps_its_layers():
    assert not layer_violations(import_graph()), "\n".join(layer_violations(import_graph()))


def test_packages_are_used_through_their_faces():
    assert not face_violations(), "\n".join(face_violations())


def test_data_losses_and_config_load_no_model_library():
    assert not third_party_violations(), "\n".join(third_party_violations())
