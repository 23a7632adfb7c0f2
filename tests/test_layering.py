"""The package's layers: every import runs downward, so no subpackage reaches back up; ``benchmarks/`` stays outside.

Layers, bottom up: the shared leaves (types, validation, plotting), ``_sde``, ``_engine``, then ``_generative`` and
``_response`` side by side (neither imports the other), then ``_cli`` and the package's ``__init__``.
"""

import ast
import re

from helpers import ROOT

PACKAGE = ROOT / "dkjax"
LAYERS = {"_custom_types": 0, "_validation": 1, "_plotting": 1, "_sde": 2, "_engine": 3, "_generative": 4,
          "_response": 4, "_cli": 5, "__init__": 6, "__main__": 6}  # fmt: skip
# The command line is a client of the public package: it looks up systems by their public name and reads the version
# (inside functions, after the package has loaded).
CLIENTS = {("_cli", "__init__")}


def _imports(path):
    """The package modules ``path`` imports (at the top or inside functions), as dotted names under ``dkjax``."""
    here = path.relative_to(PACKAGE).with_suffix("").parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(here[: len(here) - node.level])
            if node.module:
                found.add(".".join(base + node.module.split(".")))
            else:  # ``from . import x``: a sibling module, or a name of the package's __init__
                found.update(".".join(base + [alias.name]) if base else "__init__" for alias in node.names)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [node.module] if isinstance(node, ast.ImportFrom) else [alias.name for alias in node.names]
            ours = [m for m in modules if m and m.split(".")[0] == "dkjax"]
            found.update("__init__" if m == "dkjax" else m[len("dkjax.") :] for m in ours)
    return found


def _graph():
    return {".".join(p.relative_to(PACKAGE).with_suffix("").parts): _imports(p) for p in PACKAGE.rglob("*.py")}


def _upward(graph) -> list[str]:
    """The imports of ``graph`` that stay level or run up across subpackages (the CLI's use of the package aside)."""
    upward = []
    for module, imported in graph.items():
        home = module.split(".")[0]
        for target in imported:
            top = target.split(".")[0]
            if top != home and LAYERS[top] >= LAYERS[home] and (home, top) not in CLIENTS:
                upward.append(f"{module} -> {target}")
    return sorted(upward)


def test_every_import_runs_down_the_layers():
    graph = _graph()
    assert len(graph) > 40 and "_engine._simulate" in graph["_generative._snapshot_eval"]
    assert _upward(graph) == []


def test_no_module_circle_inside_a_subpackage():
    graph = _graph()

    def cycle_from(module, trail):
        if module in trail:
            return trail[trail.index(module):] + [module]
        for target in graph.get(module, ()):
            if target.split(".")[0] == module.split(".")[0] and (found := cycle_from(target, trail + [module])):
                return found
        return None

    assert [c for c in (cycle_from(m, []) for m in graph) if c] == []


def test_the_package_never_imports_benchmarks():
    imports = re.compile(r"^\s*(from|import)\s+benchmarks\b|import_module\(\s*['\"]benchmarks", re.M)
    assert [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if imports.search(p.read_text())] == []


def test_the_layer_check_sees_an_upward_or_sideways_import(tmp_path, monkeypatch):
    """The check can fail: an engine module importing a generative one, and the plots import this layering removed."""
    fake = tmp_path / "dkjax" / "_engine"
    fake.mkdir(parents=True)
    source = "def f():\n    from .._generative._model import sample\n    import dkjax._cli._main\n"
    (fake / "_bad.py").write_text(source)
    monkeypatch.setattr(__import__(__name__), "PACKAGE", tmp_path / "dkjax")
    assert _imports(fake / "_bad.py") == {"_generative._model", "_cli._main"}
    graph = {"_engine._bad": _imports(fake / "_bad.py"), "_response._plots": {"_generative._plots"},
             "_cli._main": {"__init__"}}  # fmt: skip
    assert _upward(graph) == ["_engine._bad -> _cli._main", "_engine._bad -> _generative._model",
                              "_response._plots -> _generative._plots"]  # fmt: skip
