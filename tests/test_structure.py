"""The layout rules a reader relies on: scripts import models and common/, never another script; methods never
import each other; common/ imports no method; the import graph has no cycle (function-level imports included)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("mpm", "omnijet", "hepjepa")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exists(module: str) -> bool:
    p = ROOT.joinpath(*module.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def _imports(path: Path) -> set[str]:
    """Repository modules imported anywhere in the file (absolute and relative)."""
    tree = ast.parse(path.read_text())
    pkg = _module(path).rsplit(".", 1)[0] if path.name != "__init__.py" else _module(path)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            subs = {f"{base}.{a.name}" for a in node.names}
            mods = {m for m in subs if _exists(m)}
            out |= mods if mods == subs else mods | {base}  # `from pkg import module` imports the module
    return {m for m in out if m.split(".")[0] in METHODS + ("common",)}


def _files():
    return [p for d in METHODS + ("common",) for p in (ROOT / d).rglob("*.py") if "__pycache__" not in p.parts]


def _is_script(path: Path) -> bool:
    return 'if __name__ == "__main__"' in path.read_text() or path.name == "__main__.py"


def test_no_method_script_imports_another_script():
    modules = {_module(p): p for p in _files()}
    scripts = {m for m, p in modules.items() if _is_script(p) and m.split(".")[0] in METHODS}
    bad = [f"{_module(p)} imports the script {m}" for p in _files() if p.parts[-2] in METHODS or
           _module(p).split(".")[0] in METHODS for m in _imports(p) & scripts if m != _module(p)]
    assert not bad, "\n".join(bad)


def test_methods_are_independent_and_common_imports_no_method():
    bad = []
    for p in _files():
        top = _module(p).split(".")[0]
        for m in _imports(p):
            other = m.split(".")[0]
            if other != top and other != "common":
                bad.append(f"{_module(p)} imports {m}")
    assert not bad, "\n".join(bad)


def test_import_graph_has_no_cycle():
    modules = {_module(p): p for p in _files()}
    graph = {m: {i for i in _imports(p) if i in modules and i != m} for m, p in modules.items()}
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_checks_see_a_planted_violation(tmp_path, monkeypatch):
    # self-check: the script detector and the import reader work on a planted pair of scripts
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text('from mpm.finetune import x\nif __name__ == "__main__":\n    pass\n')
    b.write_text('def f():\n    from . import build\n')
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path.parent)
    assert _is_script(a) and not _is_script(b)
    assert "mpm.finetune" in _imports(a)
