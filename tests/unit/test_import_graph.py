"""Dependencies point down (web -> services -> repositories -> database): no import cycle among pypilite's
modules, and the data layer reaches nothing above it. Every import counts, those under TYPE_CHECKING and
inside functions too: such an import postpones a cycle, it does not remove it."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pypilite

ROOT = Path(pypilite.__file__).parent
# (module, name) imports left out of the graph, with the reason.
EXEMPT = {("pypilite", "__version__"): "the version has no home of its own until issue 21, step 6"}
DATA_LAYER = {"pypilite.database", "pypilite.models", "pypilite.migrations"}
# What the data layer may reach: the tables, the counters in ETags, and what a migration reads blobs with.
BELOW_SERVICES = DATA_LAYER | {"pypilite.errors", "pypilite.serials", "pypilite.dists", "pypilite.storage"}


def module_names(root: Path) -> dict[str, Path]:
    package = root.name
    names = {}
    for path in root.rglob("*.py"):
        parts = (package, *path.relative_to(root).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def import_graph(root: Path) -> dict[str, set[str]]:
    """Each module of the package at `root` and the package's modules it imports."""
    modules = module_names(root)
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                for alias in node.names:
                    if (base, alias.name) in EXEMPT:
                        continue
                    # `from package import module` imports the module; `from module import name`, the module.
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        graph[name] = {target for target in targets if target in modules and target != name}
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        return exc.args[1]
    return None


def reached(graph: dict[str, set[str]], start: set[str]) -> set[str]:
    seen, todo = set(), list(start)
    while todo:
        if (module := todo.pop()) not in seen:
            seen.add(module)
            todo += graph[module]
    return seen


def test_no_import_cycle_among_pypilites_modules() -> None:
    graph = import_graph(ROOT)
    assert len(graph) > 40 and "pypilite.uploads" in graph["pypilite.web.upload"]
    assert cycle(graph) is None


def test_the_data_layer_imports_nothing_above_it() -> None:
    graph = import_graph(ROOT)
    assert reached(graph, DATA_LAYER) - BELOW_SERVICES == set()


def test_the_check_sees_what_it_looks_for(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("__version__ = '1'\n")
    (package / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.sub import b\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("def f():\n    from ..c import g\n")
    (package / "c.py").write_text("import pkg.a\nfrom pkg import __version__\n")
    graph = import_graph(package)
    assert graph == {"pkg": set(), "pkg.a": {"pkg.sub.b"}, "pkg.sub": set(), "pkg.sub.b": {"pkg.c"},
                     "pkg.c": {"pkg.a", "pkg"}}
    assert set(cycle(graph)) == {"pkg.a", "pkg.sub.b", "pkg.c"}
    assert reached(graph, {"pkg.sub.b"}) == {"pkg.sub.b", "pkg.c", "pkg.a", "pkg"}
