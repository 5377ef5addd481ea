"""The documentation stays true and readable: README.md is short and starts with the two commands; every docs/*.md
page is linked from it; in README.md, docs/*.md and the methods' READMEs every cited file, `python -m` module and
run_all.sh option exists, every `file :: name` of the paper-to-code tables names a definition that exists, and the
test command CI runs is the one README.md shows."""
import ast
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
METHOD_READMES = [ROOT / m / "README.md" for m in ("mpm", "omnijet", "hepjepa")]
DOC_PAGES = sorted((ROOT / "docs").glob("*.md"))
DOCS = [ROOT / "README.md", *DOC_PAGES, *METHOD_READMES]
PENDING: set[str] = set()   # pages cited before they are written (none now)
TOP = ("common/", "mpm/", "omnijet/", "hepjepa/", "tests/", "bench/", "docs/", ".ci/")
ROOT_FILES = {"README.md", "BENCHMARKS.md", "run_all.sh", "requirements.txt", "pyproject.toml"}
README_MAX_LINES = 160
TEST_COMMAND = "python -m pytest -q tests"


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _map_entries(text: str):
    """(file, [names]) for every `path` :: `a`, `b` cell of the paper-to-code tables."""
    for line in text.splitlines():
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


def _map_problems(entries) -> list[str]:
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
    return problems


def test_paper_to_code_tables_name_files_and_definitions_that_exist():
    per_doc = {_rel(d): list(_map_entries(d.read_text())) for d in DOCS}
    # every method README holds its paper-to-code table; the shared data and feature rows are in docs/code.md
    for doc, least in [("mpm/README.md", 20), ("omnijet/README.md", 8), ("hepjepa/README.md", 12),
                       ("docs/code.md", 8)]:
        assert len(per_doc[doc]) >= least, f"{doc}: the paper-to-code table seems to be gone"
    problems = [f"{doc}: {p}" for doc, entries in per_doc.items() for p in _map_problems(entries)]
    assert not problems, "paper-to-code tables out of date:\n" + "\n".join(problems)


def test_map_checker_reports_a_missing_file_and_a_missing_name():
    text = ("| x | `common/results/figures.py` :: `table_figure`, `no_such_function` |\n"
            "| y | `common/no_such_file.py` :: `f` |\n")
    assert _map_problems(_map_entries(text)) == ["common/results/figures.py :: no_such_function: not defined there",
                                                 "common/no_such_file.py: no such file"]


def _cited_paths(text: str) -> set[str]:
    """Repository paths a page cites in backticks or links to: under a top folder of the kit, or a root file."""
    found = set()
    for span in re.findall(r"`([^`\n]+)`", text):
        for tok in re.split(r"[\s,;()]+", span):
            tok = tok.rstrip(".:")
            if any(c in tok for c in "<>*{}$[]") or "..." in tok:
                continue
            if tok.startswith(TOP) or tok in ROOT_FILES:
                found.add(tok.split("::")[0])
    return found


def _links(page: Path) -> list[tuple[str, Path]]:
    out = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+://", target) or target.startswith("#"):
            continue
        out.append((target, (page.parent / target.split("#")[0]).resolve()))
    return out


@pytest.mark.parametrize("page", DOCS, ids=_rel)
def test_every_cited_file_and_link_exists(page):
    text = page.read_text()
    missing = [p for p in sorted(_cited_paths(text)) if not (ROOT / p).exists() and p not in PENDING]
    missing += [f"link {t}" for t, dest in _links(page) if not dest.exists()
                and dest.relative_to(ROOT).as_posix() not in PENDING]
    assert not missing, f"{_rel(page)} cites what does not exist: {missing}"


def test_cited_path_finder():
    text = "see `common/results/figures.py` :: `f`, `mpm/configs/<name>.yaml`, `runs/mini` and `run_all.sh --list`"
    assert _cited_paths(text) == {"common/results/figures.py", "run_all.sh"}


def _modules(text: str) -> set[str]:
    return set(re.findall(r"(?:python3?|\$PY1?|torchrun\b[^`\n]*?)\s+-m\s+([A-Za-z_][\w.]*)", text))


def _module_exists(name: str) -> bool:
    path = ROOT / name.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__main__.py").is_file()


@pytest.mark.parametrize("page", DOCS, ids=_rel)
def test_every_python_m_module_exists(page):
    mods = {m for m in _modules(page.read_text()) if m.split(".")[0] not in ("pytest", "pip", "torch")}
    missing = sorted(m for m in mods if not _module_exists(m))
    assert not missing, f"{_rel(page)}: python -m of modules that do not exist: {missing}"


def test_module_finder_and_checker():
    text = "`python -m common.results.claims --runs x`, $PY1 -m hepjepa.probe, torchrun --standalone -m mpm.pretrain"
    assert _modules(text) == {"common.results.claims", "hepjepa.probe", "mpm.pretrain"}
    assert _module_exists("common.data") and _module_exists("mpm.pretrain") and not _module_exists("mpm.nothing")


def _run_all_options() -> set[str]:
    src = (ROOT / "run_all.sh").read_text()
    block = src[src.index("while [[ $# -gt 0 ]]; do"):]
    block = block[:block.index("\ndone")]
    return set(re.findall(r"^\s+(?:-h\|)?(--[a-z][\w-]*)\)", block, re.M))


def _cited_run_all_options(text: str) -> set[str]:
    """Options given to run_all.sh in a command line or a backtick span of a page, and the options table's rows."""
    spans = [ln for ln in text.splitlines() if ln.lstrip().startswith("bash run_all.sh")]
    spans += [s for s in re.findall(r"`([^`\n]+)`", text) if "run_all.sh" in s]
    spans += [ln.split("|")[1] for ln in text.splitlines() if re.match(r"\| `--", ln)]
    return {o for s in spans for o in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", s.split("#")[0])}


def test_every_run_all_option_cited_exists_and_every_option_is_documented():
    defined = _run_all_options()
    assert {"--profile", "--only", "--table", "--list", "--help", "--force-data"} <= defined
    for page in DOCS:
        unknown = _cited_run_all_options(page.read_text()) - defined
        assert not unknown, f"{_rel(page)} cites run_all.sh options that do not exist: {sorted(unknown)}"
    running = (ROOT / "docs" / "running.md").read_text()
    undocumented = defined - _cited_run_all_options(running)
    assert not undocumented, f"docs/running.md does not document run_all.sh {sorted(undocumented)}"


def test_every_run_all_variable_cited_exists():
    src = (ROOT / "run_all.sh").read_text()
    for page in DOCS:
        unknown = {v for v in re.findall(r"\bRUN_ALL_[A-Z_]+\b", page.read_text()) if v not in src}
        assert not unknown, f"{_rel(page)} cites run_all.sh variables that do not exist: {sorted(unknown)}"


def _first_code_block(text: str) -> list[str]:
    m = re.search(r"^```[a-z]*\n(.*?)^```", text, re.S | re.M)
    assert m, "README.md has no code block"
    return [ln.split("#")[0].strip() for ln in m.group(1).splitlines()]


def test_readme_is_two_screens_and_opens_with_the_two_commands():
    n = len(README.splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; the reference belongs in docs/"
    block = _first_code_block(README)
    assert TEST_COMMAND in block, f"the first code block of README.md lacks {TEST_COMMAND!r}"
    assert "bash run_all.sh" in block, "the first code block of README.md lacks 'bash run_all.sh'"


def test_every_docs_page_is_linked_from_readme():
    assert len(DOC_PAGES) >= 6
    linked = {dest for _, dest in _links(ROOT / "README.md")}
    unlinked = [_rel(p) for p in DOC_PAGES if p.resolve() not in linked]
    assert not unlinked, f"README.md does not link {unlinked}"
    for m in METHOD_READMES:
        assert m.resolve() in linked, f"README.md does not link {_rel(m)}"


def test_ci_runs_the_readme_test_command():
    command = next(ln for ln in _first_code_block(README) if ln.startswith("python -m pytest"))
    assert command == TEST_COMMAND
    ci = (ROOT / ".ci" / "run").read_text()
    assert command.replace("python", "$PY") in ci.splitlines(), f"CI does not run the README command {command!r}"


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
