"""README.md stays true: every `file :: name` in the paper-to-code map names a file and a definition that exist, and
the test command CI runs is the one README.md shows."""
import ast
import re
import subprocess
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


# Citations a reader can follow: comments, docstrings, YAML and Markdown cite the papers or the official repositories,
# never the kit's internal spec notes (mpm.md, omnijet.md, hepjepa.md, datasets.md, btag.md; "spec 5", "quirk 7.5").
SPEC_CITATION = re.compile(
    r"\b(?:mpm|omnijet|hepjepa|datasets|btag)\.md\b"
    r"|\bspec(?:s|'s|s')?\s+(?:section|§|\d|quirk|summar)"
    r"|\(spec(?:s|'s)?\s|\bthe specs?\b|\bquirks?\s+\d|project workspace"
    # a section number without a source ("MPMv2 4": the section of a note, not of a paper) and workspace paths
    r"|\b(?:MPMv[12]|OmniJet|HEP-JEPA)\s+\d{1,2}(?:\.\d+)*\s*[;)]|\.\./shared/|shared/specs|/work/",
    re.IGNORECASE)
# The HEP-JEPA table script writes its own output file `hepjepa.md`; these lines name that file, not a spec.
GENERATED_FILE_NAME = {"hepjepa/tables.py", "tests/test_hepjepa_tables.py", "tests/test_hepjepa_configs.py"}


def test_spec_citation_pattern_is_not_vacuous():
    for cited in ["see mpm.md 4", "spec quirk 7.5", "(omnijet.md section 4.4)", "spec section 9", "(spec 5)",
                  "datasets.md §A1", "quirk 7.2", "as in the spec", "in the project workspace", "btag.md",
                  "(MPMv2 4)", "(Normformer, MPMv1 4;", "OmniJet 2.1)", "see ../shared/specs/x", "/work/shared/seeds"]:
        assert SPEC_CITATION.search(cited), cited
    for fine in ["spectrum", "specify", "inspect", "spec = dataset_spec(name)", "spec_from_file_location",
                 "module_from_spec(spec)", "zenodo_md5s(spec.record, base)",
                 "the ConstantLR quirk", "arXiv:2403.05618 Sec. 4", "(MPMv2, arXiv:2409.12589)",
                 "MPMv1 (arXiv:2401.13537)", "OmniJet-alpha, arXiv:2403.05618"]:
        assert not SPEC_CITATION.search(fine), fine


def test_no_citation_of_internal_spec_files():
    files = subprocess.run(["git", "ls-files", "*.py", "*.yaml", "*.sh", "*.md"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    assert len(files) > 50 and "common/results/published.yaml" in files
    this = Path(__file__).resolve().relative_to(ROOT).as_posix()
    hits = []
    for name in files:
        path = ROOT / name
        if name == this or not path.is_file():
            continue
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            m = SPEC_CITATION.search(line)
            if m and not (name in GENERATED_FILE_NAME and m.group(0).lower() == "hepjepa.md"):
                hits.append(f"{name}:{i}: {line.strip()[:100]}")
    assert not hits, "cite the paper or the official repository file instead:\n" + "\n".join(hits)


def test_mpm_readme_does_not_point_to_a_workspace_spec():
    text = (ROOT / "mpm" / "README.md").read_text()
    assert "project workspace" not in text and "shared/specs" not in text and "mpm.md" not in text
