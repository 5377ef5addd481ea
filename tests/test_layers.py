"""common/ is layered and the methods stay apart (common/__init__.py):

- a module of common/ imports only its own layer and the layers below it; data and blocks never import each other;
- a method's model and training code (what its pretrain.py and finetune.py import, transitively) reaches neither
  another method nor the results or simulation layers.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("mpm", "omnijet", "hepjepa")
# rank of each layer; a module may import a layer of lower rank, or its own
RANK = {"base": 0, "data": 1, "blocks": 1, "training": 2, "results": 3, "simulate": 4}
SIBLINGS = {("data", "blocks"), ("blocks", "data")}


def layer_of(module: str) -> str | None:
    """'common.data.jetclass' -> 'data'; 'common.atomic' -> 'base'; None outside common."""
    parts = module.split(".")
    if parts[0] != "common":
        return None
    if len(parts) == 1 or parts[1] in ("atomic", "cli"):
        return "base"
    return parts[1]


def imports_of(path: Path, package: str) -> set[str]:
    """Every module a file imports, at any depth of the file (lazy imports inside functions too), as dotted names;
    `from pkg import name` counts as pkg.name when that is a module, else pkg."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:   # relative: resolve against the file's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:
                sub = f"{mod}.{a.name}"
                found.add(sub if module_file(sub) else mod)
    return found


def module_file(module: str) -> Path | None:
    p = ROOT.joinpath(*module.split("."))
    for cand in (p.with_suffix(".py"), p / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_violations(edges: dict[str, set[str]]) -> list[str]:
    """(importer -> imported) pairs of common/ that break the layering."""
    bad = []
    for src, targets in edges.items():
        ls = layer_of(src)
        for dst in targets:
            ld = layer_of(dst)
            if ls is None or ld is None or ls == ld:
                continue
            if (ls, ld) in SIBLINGS or RANK[ld] > RANK[ls]:
                bad.append(f"{src} ({ls}) imports {dst} ({ld})")
    return sorted(bad)


def common_edges() -> dict[str, set[str]]:
    edges = {}
    for path in sorted((ROOT / "common").rglob("*.py")):
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        edges[name] = {m for m in imports_of(path, package) if m.split(".")[0] == "common"}
    return edges


def closure(start: list[Path]) -> set[str]:
    """The kit's modules reached from some files by their imports (the package __init__ of each one included)."""
    seen, todo = set(), [module_name(p) for p in start]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        path = module_file(mod)
        if path is None:
            continue
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for m in imports_of(path, package):
            if m.split(".")[0] in ("common", *METHODS):
                parts = m.split(".")
                todo.extend(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {m for m in seen if module_file(m) is not None}


def test_common_is_layered():
    assert layer_violations(common_edges()) == []


def test_the_checker_sees_an_upward_and_a_sibling_import():
    """The rule itself: an upward import and a data <-> blocks import are both reported."""
    edges = {"common.data.jetclass": {"common.training.finetune", "common.atomic"},
             "common.blocks.vq": {"common.data.features"},
             "common.results.claims": {"common.training.metrics", "common.cli"}}
    assert layer_violations(edges) == [
        "common.blocks.vq (blocks) imports common.data.features (data)",
        "common.data.jetclass (data) imports common.training.finetune (training)"]


def test_every_common_module_has_a_layer():
    for name in common_edges():
        assert layer_of(name) in RANK, name


@pytest.mark.parametrize("method", METHODS)
def test_training_code_reaches_no_other_method_nor_results_or_simulation(method):
    reached = closure([ROOT / method / "pretrain.py", ROOT / method / "finetune.py"])
    others = sorted(m for m in reached if m.split(".")[0] in METHODS and m.split(".")[0] != method)
    upper = sorted(m for m in reached if layer_of(m) in ("results", "simulate"))
    assert others == [], f"{method} reaches another method: {others}"
    assert upper == [], f"{method}'s training code reaches the results or simulation layers: {upper}"


def test_no_method_imports_another_anywhere():
    for method in METHODS:
        for path in (ROOT / method).rglob("*.py"):
            name = module_name(path)
            package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
            for m in imports_of(path, package):
                top = m.split(".")[0]
                assert top not in METHODS or top == method, f"{path.relative_to(ROOT)} imports {m}"
