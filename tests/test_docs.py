"""The documentation runs: every Python block of README.md and docs/*.md, the API reference.

Convention (also in docs/contributing.md):

- Every ```` ```python ```` block is executed, unless the line before it is an HTML comment
  ``<!-- doctest: skip (REASON) -->``; the reason (a download, a GPU, a placeholder ``...``) is
  required. ``<!-- doctest: slow -->`` marks a block that runs only in the slow suite; the fast
  test of that page stops before its first slow block.
- The blocks of one page run in order in one namespace (a page reads like one session), in a
  fresh temporary working folder, offline (``HF_HUB_OFFLINE=1``), with the ``Agg`` backend.
- The API pages (``docs/api/*.md``) name every public export; ``mkdocs build --strict`` builds
  the whole site without network.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# a marker is an HTML comment alone on its line
MARKER = re.compile(
    r"^[ \t]*<!--\s*doctest:\s*(?P<kind>\w+)\s*(?:\((?P<reason>.*)\))?\s*-->[ \t]*$", re.M
)
FENCE = re.compile(r"^```(?P<lang>[\w+-]*)\s*$")
PUBLIC_MODULES = [
    "gradiend",
    "gradiend.data",
    "gradiend.evaluator",
    "gradiend.model",
    "gradiend.trainer",
    "gradiend.visualizer",
]


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    code: str
    marker: str | None  # None (run), "skip" or "slow"
    reason: str | None


def python_blocks(page: Path) -> list[Block]:
    """The ```python blocks of a page with the doctest marker on the line before each."""
    lines = page.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or not m["lang"]:
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1
        if m["lang"] != "python":
            continue
        prev = next((ln for ln in reversed(lines[:start]) if ln.strip()), "")
        mark = MARKER.fullmatch(prev)
        blocks.append(
            Block(
                page,
                start + 1,
                "\n".join(body) + "\n",
                mark["kind"] if mark else None,
                (mark["reason"] or "").strip() or None if mark else None,
            )
        )
    return blocks


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def _run_page(page: Path, blocks: list[Block], tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict = {"__name__": f"doc:{_page_id(page)}"}
    for block in blocks:
        code = compile(block.code, f"{_page_id(page)}:{block.line}", "exec")
        try:
            exec(code, namespace)  # noqa: S102 - the documentation is the test
        except Exception as err:
            raise AssertionError(
                f"{_page_id(page)}, the python block at line {block.line} fails: "
                f"{type(err).__name__}: {err}"
            ) from err


def _fast_blocks(page: Path) -> list[Block]:
    out = []
    for block in python_blocks(page):
        if block.marker == "slow":
            break
        if block.marker is None:
            out.append(block)
    return out


# --------------------------------------------------------------------------- the parser itself
def test_block_parser_reads_markers_and_reasons(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(
        "text\n```python\na = 1\n```\n<!-- doctest: skip (needs a download) -->\n"
        "```python\nb = 2\n```\n```bash\nls\n```\n<!-- doctest: slow -->\n\n```python\nc = a\n```\n"
    )
    blocks = python_blocks(page)
    assert [(b.marker, b.reason, b.code) for b in blocks] == [
        (None, None, "a = 1\n"),
        ("skip", "needs a download", "b = 2\n"),
        ("slow", None, "c = a\n"),
    ]
    assert [b.line for b in blocks] == [2, 6, 14]
    assert [b.code for b in _fast_blocks(page)] == ["a = 1\n"]


def test_every_marker_is_known_and_every_skip_has_a_reason():
    for page in PAGES:
        text = page.read_text()
        for m in MARKER.finditer(text):
            where = f"{_page_id(page)}: {m[0]}"
            assert m["kind"] in ("skip", "slow"), f"unknown doctest marker in {where}"
            if m["kind"] == "skip":
                assert m["reason"] and len(m["reason"].strip()) >= 8, (
                    f"skip without reason: {where}"
                )


def test_markers_sit_right_before_a_python_block():
    """A marker that is not right before a python block is a mistake (it would mark nothing)."""
    for page in PAGES:
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            if MARKER.search(line):
                nxt = next((ln for ln in lines[i + 1 :] if ln.strip()), "")
                assert nxt.startswith("```python"), (
                    f"{_page_id(page)}:{i + 1} marks no python block"
                )


# --------------------------------------------------------------------------- running the pages
@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_page_python_blocks_run(page, tmp_path, monkeypatch):
    blocks = _fast_blocks(page)
    if not blocks:
        pytest.skip("no runnable fast python block")
    _run_page(page, blocks, tmp_path, monkeypatch)


SLOW_PAGES = [p for p in PAGES if any(b.marker == "slow" for b in python_blocks(p))]


@pytest.mark.slow
@pytest.mark.parametrize("page", SLOW_PAGES, ids=_page_id)
def test_page_python_blocks_run_with_slow_ones(page, tmp_path, monkeypatch):
    blocks = [b for b in python_blocks(page) if b.marker in (None, "slow")]
    _run_page(page, blocks, tmp_path, monkeypatch)


# --------------------------------------------------------------------------- skipped blocks
# variables the examples use by convention, and the class each one is
KNOWN_VARIABLES = {
    "trainer": "gradiend.trainer.TextPredictionTrainer",
    "mwg": "gradiend.model.ModelWithGradiend",
    "creator": "gradiend.data.TextPredictionDataCreator",
}
KNOWN_CALLS = (
    "TrainingArguments",
    "TextPredictionTrainer",
    "TextPredictionDataCreator",
    "TextFilterConfig",
    "TextPreprocessConfig",
    "PrePruneConfig",
    "PostPruneConfig",
)


def _source(cls) -> str:
    """The source of a class and its bases (instance attributes are set in their methods)."""
    import inspect

    return "".join(inspect.getsource(c) for c in cls.__mro__ if c.__module__.startswith("gradiend"))


def static_problems(code: str) -> list[str]:
    """What can be checked without running a block: it parses, its imports from gradiend exist,
    ``trainer.x``/``mwg.x``/``creator.x`` exist, and the keyword arguments of the library's
    constructors are parameters of theirs."""
    import ast
    import inspect

    import gradiend

    problems = []
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gradiend"):
            module = importlib.import_module(node.module)
            problems += [
                f"{node.module}.{a.name}" for a in node.names if not hasattr(module, a.name)
            ]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in KNOWN_VARIABLES
        ):
            cls = _resolve(KNOWN_VARIABLES[node.value.id])
            if not hasattr(cls, node.attr) and f"self.{node.attr} =" not in _source(cls):
                problems.append(f"{node.value.id}.{node.attr}")
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in KNOWN_CALLS:
            params = inspect.signature(getattr(gradiend, node.func.id)).parameters
            if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
                problems += [
                    f"{node.func.id}({k.arg}=)"
                    for k in node.keywords
                    if k.arg and k.arg not in params
                ]
    return problems


def test_static_check_catches_drift():
    assert static_problems("from gradiend import TrainingArguments\ntrainer.train()\n") == []
    assert static_problems("from gradiend import Nope\n") == ["gradiend.Nope"]
    assert static_problems("trainer.evaluate_everything()\n") == ["trainer.evaluate_everything"]
    assert static_problems("TrainingArguments(lerning_rate=1)\n") == [
        "TrainingArguments(lerning_rate=)"
    ]


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_python_block_parses_and_names_real_api(page):
    """Skipped blocks too: a renamed method, class or argument fails here without running."""
    problems = []
    for block in python_blocks(page):
        try:
            problems += [f"line {block.line}: {p}" for p in static_problems(block.code)]
        except SyntaxError as err:
            problems.append(f"line {block.line}: does not parse: {err}")
    assert not problems, f"{_page_id(page)}: {problems}"


# --------------------------------------------------------------------------- links
LINK = re.compile(r"\]\((?!https?://|#|mailto:)(?P<target>[^)#\s]+)")
CODE_PATH = re.compile(r"`(?P<target>docs/[\w./-]+\.md)`")


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_links_to_repo_files_exist(page):
    """Relative links and `docs/x.md` mentions name files of this repository."""
    text = page.read_text()
    missing = []
    for m in LINK.finditer(text):
        target = (page.parent / m["target"]).resolve()
        if not target.exists():
            missing.append(m["target"])
    for m in CODE_PATH.finditer(text):
        if not (ROOT / m["target"]).exists():
            missing.append(m["target"])
    assert not missing, f"{_page_id(page)} points to missing files: {missing}"
    assert "shared/" not in text and "DESIGN.md" not in text, "a page points outside the repo"


# --------------------------------------------------------------------------- API reference
def public_names() -> dict[str, list[str]]:
    return {m: list(importlib.import_module(m).__all__) for m in PUBLIC_MODULES}


def _resolve(path: str):
    """The object a ``::: a.b.C`` directive documents."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(path)


def test_api_pages_cover_every_public_name():
    """Every name in a public ``__all__`` has a ``::: path.to.name`` entry in docs/api/ (an alias
    under its own name), so a new export without documentation fails here."""
    text = "\n".join(p.read_text() for p in sorted((ROOT / "docs" / "api").glob("*.md")))
    directives = re.findall(r"^:::\s*([\w.]+)", text, flags=re.M)
    documented = {(d.rsplit(".", 1)[-1], id(_resolve(d))) for d in directives}
    missing = [
        f"{module}.{name}"
        for module, names in public_names().items()
        for name in names
        if (name, id(getattr(importlib.import_module(module), name))) not in documented
    ]
    assert not missing, f"public names without a ::: entry in docs/api/: {missing}"


def test_mkdocs_nav_lists_every_page():
    yml = (ROOT / "mkdocs.yml").read_text()
    for page in [*sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "docs/api").glob("*.md"))]:
        rel = str(page.relative_to(ROOT / "docs"))
        if rel == "index.md":
            continue
        assert rel in yml, f"{rel} is not in mkdocs.yml's nav"


def test_mkdocs_builds_strict_offline(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[dev]')")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    html = (tmp_path / "site" / "api" / "trainer" / "index.html").read_text()
    assert "learning_rate" in html and "TrainingArguments" in html


# --------------------------------------------------------------------------- TrainingArguments
def test_arguments_table_lists_every_field_with_its_default():
    """docs/arguments.md has a row per TrainingArguments field whose default is the code's."""
    from gradiend import TrainingArguments

    rows = {}
    for line in (ROOT / "docs" / "arguments.md").read_text().splitlines():
        m = re.match(r"\|\s*`(\w+)`\s*\|\s*(?P<default>[^|]*)\|", line)
        if m:
            rows[m[1]] = m["default"].strip()
    for f in dataclasses.fields(TrainingArguments):
        assert f.name in rows, f"docs/arguments.md has no row for TrainingArguments.{f.name}"
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        assert rows[f.name].strip("`").replace('"', "'") == repr(default), (
            f.name,
            rows[f.name],
            default,
        )
    doc = TrainingArguments.__doc__
    for f in dataclasses.fields(TrainingArguments):
        assert re.search(rf"^\s+{f.name}\b.*:", doc, flags=re.M), f"docstring lacks {f.name}"
