"""omnijet/ layering: scripts (entry points) import models, modules and common/, never another script, and every
import of an omnijet module sits at the top of its file (a function-level import would hide a cycle)."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FILES = sorted((REPO / "omnijet").glob("*.py")) + [REPO / "bench" / "bench_omnijet_sampling.py"]


def _is_script(tree: ast.Module) -> bool:
    """A script defines main() or runs code under `if __name__ == "__main__"`."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "main":
            return True
        if (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
                and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"):
            return True
    return False


def _omnijet_imports(tree: ast.Module):
    """(module name, lineno, at module level) of every import of an omnijet module (absolute or relative)."""
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative import inside omnijet/
                base = node.module.split(".")[0] if node.module else None
                names = [base] if base else [a.name for a in node.names]
            elif node.module and node.module.split(".")[0] == "omnijet":
                parts = node.module.split(".")
                names = [parts[1]] if len(parts) > 1 else [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith("omnijet.")]
        for name in names:
            yield name, node.lineno, id(node) in top


TREES = {f: ast.parse(f.read_text()) for f in FILES}
SCRIPTS = {f.stem for f, t in TREES.items() if f.parent.name == "omnijet" and _is_script(t)}


def test_the_script_detector_finds_the_entry_points():
    assert {"train_tokenizer", "pretrain", "tokenize_dataset", "generate", "finetune", "token_quality",
            "evaluate_generation", "tables"} <= SCRIPTS
    assert not SCRIPTS & {"model", "vqvae", "tokens", "sampling", "validation", "jets", "deepsets"}


@pytest.mark.parametrize("path", FILES, ids=[f"{f.parent.name}/{f.name}" for f in FILES])
def test_no_script_imports_a_script_and_omnijet_imports_are_at_the_top(path):
    problems = []
    for name, line, at_top in _omnijet_imports(TREES[path]):
        if name in SCRIPTS:
            problems.append(f"line {line}: imports the script omnijet.{name}")
        if not at_top:
            problems.append(f"line {line}: imports omnijet.{name} inside a function or block")
    assert not problems, f"{path.relative_to(REPO)}: " + "; ".join(problems)


def test_every_top_level_definition_of_omnijet_is_used():
    """No dead code: each function and class defined at the top of an omnijet/ file is named somewhere else in the
    repository's code (its own file included, beyond the definition)."""
    import re
    from collections import Counter

    code = [REPO / "run_all.sh"] + [p for d in ("common", "mpm", "omnijet", "hepjepa", "bench", "tests")
                                    for p in (REPO / d).rglob("*") if p.suffix in (".py", ".sh")]
    words = Counter(w for p in code for w in re.findall(r"\w+", p.read_text()))
    unused = [f"omnijet/{path.name}: {node.name}" for path, tree in TREES.items() if path.parent.name == "omnijet"
              for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))
              and words[node.name] < 2]  # the definition itself is one
    assert not unused, "defined but never used: " + ", ".join(unused)
