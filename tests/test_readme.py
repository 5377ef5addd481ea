"""README.md stays true: every `file :: name` in the paper-to-code map names a file and a definition that exist, and
the test command CI runs is the one README.md shows."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _map_entries():
    """(file, [names]) for every `path` :: `a`, `b` cell of the map tables."""
    for line in README.splitlines():
        if not line.startswith("|"):
            continue
        cell = line.strip("|").split("|")[-1]
        for part in cell.split(";"):
            m = re.match(r"\s*`([\w/.]+)`(?:\s*::\s*(.*))?$", part.strip())
            if m:
                yield m.group(1), re.findall(r"`([\w.]+)(?:\([^`]*\))?`", m.group(2) or "")


def _definitions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def test_paper_to_code_map_names_exist():
    entries = list(_map_entries())
    assert len(entries) > 30, "the paper-to-code map seems to be gone from README.md"
    problems = []
    for file, names in entries:
        path = ROOT / file
        if not path.exists():
            problems.append(f"{file}: no such file")
            continue
        if path.is_dir() or path.suffix != ".py":
            continue
        defined = _definitions(path)
        problems += [f"{file} :: {n}: not defined there" for n in names if n.split(".")[0] not in defined]
    assert not problems, "README.md map is out of date:\n" + "\n".join(problems)


def test_ci_runs_the_readme_test_command():
    command = re.search(r"# 2\. the tests\n(.+)\n", README).group(1).strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert command.replace("python", "$PY") in ci or command in ci, f"CI does not run the README command {command!r}"
