"""Config comments stay short: in every YAML config, a comment attached to a value (the comment lines just above it,
its inline comment and the lines that continue that inline comment) runs at most two lines; the header comment at the
top of a file is exempt. A longer story (a measurement behind a choice) belongs in BENCHMARKS.md or docs/, under a
heading the comment names."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG_GLOBS = ["mpm/configs/**/*.yaml", "omnijet/configs/**/*.yaml", "hepjepa/configs/**/*.yaml",
                "common/results/*.yaml", "bench/weaver/*.yaml"]
MAX_LINES = 2


def _comment_column(line: str) -> int | None:
    """Column of the '#' that opens a comment on this line (outside quotes, at the start or after a blank); None
    when the line has no comment."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"" and (i == 0 or line[i - 1] in " :[{,-"):
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return i
    return None


def long_comment_blocks(text: str, limit: int = MAX_LINES) -> list[tuple[int, int]]:
    """(first line number, number of lines) of every comment block longer than `limit` after the file's header."""
    lines = text.splitlines()
    i = 0
    while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
        i += 1  # the header: the comment (and blank) lines before the first value
    found = []
    block, start, cont_col = 0, None, None  # lines in the open block, its first line, the inline comment's column

    def close():
        nonlocal block, start, cont_col
        if block > limit:
            found.append((start + 1, block))
        block, start, cont_col = 0, None, None

    for j in range(i, len(lines)):
        line = lines[j]
        col = _comment_column(line)
        if not line.strip():
            close()
        elif line.lstrip().startswith("#"):
            if cont_col is not None and col >= cont_col:  # continues the inline comment above
                block += 1
            else:
                if cont_col is not None:
                    close()
                if block == 0:
                    start = j
                block += 1
        else:  # a value line: the comment lines above belong to it, with its inline comment
            if cont_col is not None:
                close()
            if col is not None:
                if block == 0:
                    start = j
                block += 1
                cont_col = col
            else:
                close()
    close()
    return found


def _config_files() -> list[Path]:
    files = sorted({p for g in CONFIG_GLOBS for p in ROOT.glob(g)})
    assert len(files) > 50, "the config globs match almost nothing"
    return files


def test_the_checker_counts_leading_inline_and_continued_lines():
    ok = "# header line 1\n# header line 2\n# header line 3\na: 1  # one\n# two\nb: 2\nc:\n  d: 3  # x\n        # y\n"
    assert long_comment_blocks(ok) == []
    leading = "a: 1\n# one\n# two\n# three\nb: 2\n"
    assert long_comment_blocks(leading) == [(2, 3)]
    inline = "a: 1\nb: 2  # one\n      # two\n      # three\nc: 3\n"
    assert long_comment_blocks(inline) == [(2, 3)]
    both = "a: 1\n# one\n# two\nb: 2  # three\n"
    assert long_comment_blocks(both) == [(2, 3)]
    # a comment that continues one value's inline comment and a comment above the next key are two blocks
    apart = "a:\n  b: 1  # one\n        # two\n  # three\n  c: 2\n"
    assert long_comment_blocks(apart) == []
    assert long_comment_blocks('a: "x # not a comment"\n# one\n# two\nb: 1\n') == []


@pytest.mark.parametrize("path", _config_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_config_comment_blocks_are_at_most_two_lines(path):
    blocks = long_comment_blocks(path.read_text())
    assert not blocks, (f"{path.relative_to(ROOT)}: comment blocks longer than {MAX_LINES} lines at "
                        + ", ".join(f"line {n} ({k} lines)" for n, k in blocks)
                        + ": keep the source or [U] and the choice; move the measurement to BENCHMARKS.md or docs/")


# A comment that sends the reader elsewhere names a file and a heading there: BENCHMARKS.md 'Heading', docs/x.md
# "Heading", omnijet/README.md 'Heading' (a prefix of the heading's text is enough: BENCHMARKS headings end in a date).
HEADING_REF = re.compile(r"((?:BENCHMARKS|docs/[\w-]+|\w+/README)\.md),?\s+(['\"])([^'\"]{4,}?)\2")


def _comments(text: str) -> str:
    parts = []
    for line in text.splitlines():
        col = _comment_column(line)
        if col is not None:
            parts.append(line[col:].lstrip("#").strip())
    return re.sub(r"\s+", " ", " ".join(parts))


def _headings(path: Path) -> list[str]:
    return [re.sub(r"\s+", " ", ln.lstrip("#").strip()) for ln in path.read_text().splitlines()
            if re.match(r"#{1,6} ", ln)]


def heading_references(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(3)) for m in HEADING_REF.finditer(_comments(text))]


def test_heading_reference_pattern():
    text = ("a: 1  # see BENCHMARKS.md 'HEP-JEPA pretrained long enough'\n"
            "b: 2  # measured (BENCHMARKS.md, \"HEP-JEPA pretrained long\n"
            "      # enough\"); omnijet/README.md 'Fine-tuning heads'\n")
    assert heading_references(text) == [("BENCHMARKS.md", "HEP-JEPA pretrained long enough"),
                                        ("BENCHMARKS.md", "HEP-JEPA pretrained long enough"),
                                        ("omnijet/README.md", "Fine-tuning heads")]


def test_every_heading_a_config_comment_names_exists():
    refs, missing = 0, []
    for path in _config_files():
        for file, heading in heading_references(path.read_text()):
            refs += 1
            target = ROOT / file
            if not target.is_file():
                missing.append(f"{path.relative_to(ROOT)}: {file}: no such file")
            elif not any(h.startswith(heading) for h in _headings(target)):
                missing.append(f"{path.relative_to(ROOT)}: {file} has no heading '{heading}'")
    assert refs >= 10, "the config comments name almost no heading: the pattern is broken"
    assert not missing, "\n".join(missing)
