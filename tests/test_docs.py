"""Every Python block of README.md and docs/quickstart.md runs, as a newcomer would run it.

The blocks are taken from the documents as they are and run in a fresh folder: a newcomer copies
them, so a helper a snippet calls but never defines, a wrong import or a path that depends on the
working directory must fail here, not in their project.

How a document becomes a project (the harness, kept minimal):

* The folder holds the example suite's model and data, under the names the documents use:
  ``model.py`` (``load_model``, ``transform``), ``mymodel/`` (``build_model``, and
  ``preprocessing.transform``, the same model and transform), ``weights/`` (the trained weights, as
  ``good.pt`` and as ``model.pt``), ``concepts/`` and ``inputs/`` (the suite's libraries).
* The document's ``ini`` blocks, merged in order, are its ``pytest.ini``.
* A Python block whose first line names a file (``# conftest.py``, ``# test_concepts.py``) is written
  to that file; pytest then runs the folder from a subfolder (so paths must not depend on the
  working directory), and every test must pass.
* Any other Python block is a script: it runs with ``python`` in the folder, in document order.
* A block whose first line is ``# not run by tests/test_docs.py: REASON`` is not run; it is reported
  here as a skipped test with its reason.  Keep it for what a test cannot have (a GPU, a download).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "example_suite"
DOCUMENTS = ("README.md", "docs/quickstart.md")

#: The marker of a block that is not run, with its reason: the block's first line, visible to readers.
SKIP_MARKER = re.compile(r"^#\s*not run by tests/test_docs\.py:\s*(?P<reason>\S.*)$")
#: A block's first line naming the file it is: ``# conftest.py``, ``# tests/test_x.py``.
FILE_MARKER = re.compile(r"^#\s*(?P<name>[\w/.-]+\.py)\s*$")
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")

#: The harness's model package, named as docs/quickstart.md names it.
MYMODEL = {
    "mymodel/__init__.py": '''"""The example suite's texture classifier, as the quickstart's "your model"."""
from model import TextureNet


def build_model():
    return TextureNet()
''',
    "mymodel/preprocessing.py": "from model import transform  # noqa: F401\n",
}


@dataclass(frozen=True)
class Block:
    """One fenced code block of a document."""

    document: str
    line: int  # of the opening fence, 1-based
    language: str
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    @property
    def skip_reason(self) -> str | None:
        match = SKIP_MARKER.match(self.first_line)
        return match.group("reason") if match else None

    @property
    def file_name(self) -> str | None:
        match = FILE_MARKER.match(self.first_line)
        return match.group("name") if match else None

    def __str__(self) -> str:
        return f"{self.document}:{self.line}"


def code_blocks(text: str, document: str = "<text>") -> list[Block]:
    """The fenced code blocks of a markdown text, in order (a block's closing fence is its opening's kind)."""
    blocks: list[Block] = []
    lines = text.splitlines()
    k = 0
    while k < len(lines):
        match = FENCE.match(lines[k])
        if match is None:
            k += 1
            continue
        fence, start, body = match.group("fence"), k, []
        k += 1
        while k < len(lines) and not (lines[k].strip().startswith(fence[0] * len(fence))
                                      and not lines[k].strip().strip(fence[0])):
            body.append(lines[k])
            k += 1
        blocks.append(Block(document, start + 1, match.group("info").lower(), "\n".join(body) + "\n"))
        k += 1
    return blocks


def python_blocks(document: str) -> list[Block]:
    return [b for b in code_blocks((ROOT / document).read_text(encoding="utf-8"), document)
            if b.language in ("python", "py")]


def make_harness(folder: Path) -> None:
    """The example suite's model and data under the documents' names (see the module's docstring)."""
    shutil.copy(SUITE / "model.py", folder / "model.py")
    for library in ("concepts", "inputs"):
        shutil.copytree(SUITE / library, folder / library)
    (folder / "weights").mkdir()
    shutil.copy(SUITE / "weights" / "good.pt", folder / "weights" / "good.pt")
    shutil.copy(SUITE / "weights" / "good.pt", folder / "weights" / "model.pt")
    for name, text in MYMODEL.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")


def ini_file(document: str) -> str:
    """The document's ini blocks, merged in order, as one ``pytest.ini``."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    for block in code_blocks((ROOT / document).read_text(encoding="utf-8"), document):
        if block.language == "ini":
            parser.read_string(block.text, source=str(block))
    lines = []
    for section in parser.sections():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = " + value.replace("\n", "\n    ") for key, value in parser.items(section))
    return "\n".join(lines) + "\n"


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """A process as a user starts it: the folder is on ``sys.path`` only as the ini or ``python`` put it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.pop("GITHUB_STEP_SUMMARY", None)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # over a second
@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_python_block_runs(document: str, tmp_path: Path) -> None:
    blocks = [b for b in python_blocks(document) if b.skip_reason is None]
    assert blocks, f"no Python block found in {document}: has the extractor broken?"
    folder = tmp_path / "project"
    folder.mkdir()
    make_harness(folder)
    (folder / "pytest.ini").write_text(ini_file(document), encoding="utf-8")
    scripts = []
    for number, block in enumerate(blocks):
        name = block.file_name
        if name is None:
            scripts.append((block, folder / f"snippet_{number}.py"))
            scripts[-1][1].write_text(block.text, encoding="utf-8")
            continue
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(block.text, encoding="utf-8")
    for block, path in scripts:
        result = run([sys.executable, str(path)], folder)
        assert result.returncode == 0, f"{block} failed:\n{block.text}\n{result.stdout}{result.stderr}"
    tests = [b for b in blocks if b.file_name and re.search(r"^def test_", b.text, re.M)]
    if not tests:
        return
    elsewhere = folder / "elsewhere"  # pytest started from another folder: no path may depend on it
    elsewhere.mkdir()
    result = run([sys.executable, "-m", "pytest", str(folder), "-p", "no:cacheprovider", "-q"], elsewhere)
    out = result.stdout + result.stderr
    n_tests = sum(len(re.findall(r"^def test_", b.text, re.M)) for b in tests)
    assert result.returncode == 0, out
    assert f"{n_tests} passed" in out, out


def skipped_blocks() -> list[Block]:
    return [b for document in DOCUMENTS for b in python_blocks(document) if b.skip_reason is not None]


@pytest.mark.parametrize("block", skipped_blocks() or [None], ids=str)
def test_blocks_marked_not_to_run(block: Block | None) -> None:
    """Each block marked not to run is listed (``-rs``) with its reason, so that none is forgotten."""
    if block is None:
        return
    pytest.skip(f"{block}: {block.skip_reason}")


def test_the_extractor() -> None:
    text = """# Title

```python
# conftest.py
import pytest
```

```py
# not run by tests/test_docs.py: needs a GPU
x = 1
```

````python
print("```")
````

```bash
pip install .
```
"""
    blocks = code_blocks(text)
    assert [(b.line, b.language) for b in blocks] == [(3, "python"), (8, "py"), (13, "python"), (17, "bash")]
    assert blocks[0].file_name == "conftest.py" and blocks[0].skip_reason is None
    assert blocks[1].skip_reason == "needs a GPU" and blocks[1].file_name is None
    assert blocks[2].text == 'print("```")\n'
    assert code_blocks("# not run by tests/test_docs.py:\n") == []
    assert Block("d", 1, "python", "# not run by tests/test_docs.py:\nx\n").skip_reason is None  # a reason is required


# -- figures of the example suite quoted in docs/ci.md -----------------------------------------

CI_DOC = "docs/ci.md"
#: docs/ci.md's paragraph after its "Try it locally" commands: the diff's counts.
DIFF_FIGURES = re.compile(r"The diff lists (?P<checks>\d+) checks: (?P<verdict>\d+) whose verdicts changed .*?"
                          r"(?P<moved>\d+) that moved .*?and (?P<unchanged>\d+) unchanged .*?give\s+"
                          r"\"(?P<same>\d+) unchanged\"", re.S)


def try_it_locally_block() -> Block:
    text = (ROOT / CI_DOC).read_text(encoding="utf-8")
    start = text.index("## Try it locally")
    return next(b for b in code_blocks(text[start:], CI_DOC) if b.language == "bash")


@pytest.mark.slow  # two runs of the example suite: a minute or two
def test_ci_md_figures_are_the_example_suites(tmp_path: Path) -> None:
    """Run docs/ci.md's "Try it locally" commands as written and check the numbers the page quotes."""
    lines = [line for line in try_it_locally_block().text.splitlines() if line.strip()]
    assert lines[0] == "cp -r example_suite /tmp/suite && cd /tmp/suite", lines[0]
    suite = tmp_path / "suite"
    shutil.copytree(SUITE, suite, ignore=shutil.ignore_patterns(".pytest_cache", "__pycache__"))
    outputs: list[tuple[str, subprocess.CompletedProcess[str]]] = []
    for line in lines[1:]:
        command, _, comment = line.partition("#")
        command = re.sub(r"^python ", f"{sys.executable} ", command.strip())
        command = re.sub(r"^pytest-tcav ", f"{sys.executable} -m pytest_tcav ", command)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        env.pop("GITHUB_STEP_SUMMARY", None)
        result = subprocess.run(command, shell=True, cwd=suite, env=env, capture_output=True, text=True,
                                timeout=900)
        outputs.append((line, result))
        said = comment.strip()
        if (match := re.search(r"exit status (\d+)", said)) is not None:
            assert result.returncode == int(match.group(1)), (line, result.stdout, result.stderr)
        else:
            assert result.returncode in (0, 1), (line, result.stdout, result.stderr)
        if (match := re.search(r"(\d+) failed", said)) is not None:
            assert re.search(rf"\b{match.group(1)} failed\b", result.stdout.splitlines()[-1]), (line, result.stdout)
    diff = subprocess.run([sys.executable, "-m", "pytest_tcav", "diff", "main.json", "pr.json", "--json"],
                          cwd=suite, capture_output=True, text=True, timeout=300)
    summary = json.loads(diff.stdout)["summary"]
    figures = DIFF_FIGURES.search((ROOT / CI_DOC).read_text(encoding="utf-8"))
    assert figures is not None, "the paragraph after the commands no longer quotes the diff's counts"
    quoted = {key: int(value) for key, value in figures.groupdict().items()}
    main = json.loads((suite / "main.json").read_text())
    assert quoted == {"checks": summary["checks"], "verdict": summary["verdict"], "moved": summary["moved"],
                      "unchanged": summary["unchanged"], "same": main["summary"]["checks"]}, summary
