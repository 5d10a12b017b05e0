"""Unsafe files: nothing loaded can run code, and no name taken from a test can leave its folder.

* The package's source is scanned (with :mod:`ast`, so comments and strings
  do not count) for everything that deserialises code: pickle and its
  relatives, ``torch.load`` without ``weights_only=True``, ``numpy.load`` with
  pickles allowed, any PyYAML loader that is not the safe one, and
  ``eval``/``exec``/``compile``.  The scanner is itself tested on snippets of
  each forbidden form, so an empty finding means something.
* Cache paths come from hexadecimal keys only, baseline paths from validated
  names, library entries from plain folder names: a hostile concept name, test
  id or baseline name is refused or stays a label.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pytest_tcav
from pytest_tcav import TCAV, Concept, ConceptDataError, MemoryStore
from pytest_tcav.session.library import ConceptLibrary, InputLibrary
from pytest_tcav.storage.disk import DiskStore

PACKAGE = Path(pytest_tcav.__file__).resolve().parent

#: Modules whose only purpose is (de)serialising Python objects, i.e. running code on load.
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal", "joblib",
                  "jsonpickle", "copyreg"}
#: PyYAML names that build arbitrary Python objects (or may, depending on the version).
UNSAFE_YAML = {"load", "load_all", "unsafe_load", "unsafe_load_all", "full_load", "full_load_all", "Loader",
               "UnsafeLoader", "FullLoader", "CLoader", "CUnsafeLoader", "CFullLoader"}
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}
CODE_BUILTINS = {"eval", "exec", "compile", "__import__"}


class _Scanner(ast.NodeVisitor):
    """Finds the forbidden forms, following ``import x as y`` and ``from x import y as z`` aliases."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.findings: list[str] = []
        self.modules: dict[str, str] = {}  # local name -> module (``import yaml as y``)
        self.names: dict[str, str] = {}  # local name -> "module.attribute" (``from torch import load``)

    def report(self, node: ast.AST, what: str) -> None:
        self.findings.append(f"{self.filename}:{getattr(node, 'lineno', '?')}: {what}")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            root = alias.name.split(".")[0]
            if root in PICKLE_MODULES:
                self.report(node, f"import {alias.name}")
            self.modules[alias.asname or root] = alias.name if alias.asname else root

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if module.split(".")[0] in PICKLE_MODULES:
            self.report(node, f"from {module} import ...")
        for alias in node.names:
            self.names[alias.asname or alias.name] = f"{module}.{alias.name}"
            if module == "yaml" and alias.name in UNSAFE_YAML:
                self.report(node, f"from yaml import {alias.name}")

    def qualified(self, node: ast.AST) -> str | None:
        """``torch.load`` for ``torch.load``, ``t.load`` (import torch as t) and ``load`` (from torch import load)."""
        if isinstance(node, ast.Name):
            if node.id in self.names:
                return self.names[node.id]
            return self.modules.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.qualified(node.value)
            return f"{base}.{node.attr}" if base is not None else None
        return None

    def visit_Attribute(self, node: ast.Attribute) -> None:
        name = self.qualified(node)
        if name is not None and name.startswith("yaml.") and name.split(".")[1] in UNSAFE_YAML:
            self.report(node, name)
        if name is not None and name.split(".")[0] in PICKLE_MODULES:
            self.report(node, name)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = self.qualified(node.func)
        keywords = {k.arg: k.value for k in node.keywords if k.arg is not None}
        if isinstance(node.func, ast.Name) and node.func.id in CODE_BUILTINS and node.func.id not in self.names:
            self.report(node, f"{node.func.id}()")
        if name == "torch.load":
            flag = keywords.get("weights_only")
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                self.report(node, "torch.load without weights_only=True")
        if name in ("numpy.load", "np.load"):
            flag = keywords.get("allow_pickle")
            if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                self.report(node, "numpy.load with allow_pickle")
        if name is not None and name.startswith("yaml."):
            loader = keywords.get("Loader")
            loader_name = self.qualified(loader) if loader is not None else None
            if loader is not None and (loader_name or "").split(".")[-1] not in SAFE_YAML_LOADERS:
                self.report(node, f"{name} with Loader={loader_name}")
        if name is not None and name.split(".")[-1] in ("pickle_module", "_load_from_bytes"):
            self.report(node, name)
        if "pickle_module" in keywords:
            self.report(node, f"{name} with pickle_module")
        self.generic_visit(node)


def find_unsafe(source: str, filename: str = "<snippet>") -> list[str]:
    scanner = _Scanner(filename)
    scanner.visit(ast.parse(source, filename))
    return scanner.findings


@pytest.mark.parametrize("snippet", [
    "import pickle",
    "import pickle as p\np.loads(b'')",
    "from pickle import loads",
    "import dill",
    "import shelve",
    "import marshal",
    "from joblib import load",
    "import torch\ntorch.load('f')",
    "import torch\ntorch.load('f', weights_only=False)",
    "import torch as t\nt.load('f')",
    "from torch import load\nload('f')",
    "import torch\ntorch.load('f', map_location='cpu', pickle_module=None, weights_only=True)",
    "import numpy as np\nnp.load('f', allow_pickle=True)",
    "import yaml\nyaml.load(text)",
    "import yaml\nyaml.load(text, Loader=yaml.SafeLoader)",  # safe in fact, but the rule is safe_load only
    "import yaml\nyaml.unsafe_load(text)",
    "import yaml\nyaml.full_load(text)",
    "import yaml\nyaml.load_all(text)",
    "from yaml import load",
    "import yaml\nyaml.compose(text, Loader=yaml.Loader)",
    "import yaml as y\ny.UnsafeLoader(stream)",
    "eval('1')",
    "exec('x = 1')",
    "compile('1', 'f', 'eval')",
])
def test_the_scanner_finds_each_forbidden_form(snippet: str) -> None:
    assert find_unsafe(snippet), snippet


@pytest.mark.parametrize("snippet", [
    "import torch\ntorch.load('f', weights_only=True)",
    "import torch\ntorch.load('f', map_location='cpu', weights_only=True)",
    "import numpy as np\nnp.load('f')",
    "import yaml\nyaml.safe_load(text)",
    "import yaml\nyaml.safe_dump(data)",
    "import yaml\nyaml.compose(text, Loader=yaml.SafeLoader)",
    "import yaml\nloader = yaml.SafeLoader(stream)",
    "model.eval()",
    "re.compile('x')",
    "x = 'import pickle; eval(1)'  # strings and comments are not code",
])
def test_the_scanner_accepts_the_safe_forms(snippet: str) -> None:
    assert find_unsafe(snippet) == [], snippet


def test_the_package_loads_nothing_that_can_run_code() -> None:
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 10
    findings = [f for path in sources
                for f in find_unsafe(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE.parent)))]
    assert findings == []


def test_no_pickle_in_the_cache_format() -> None:
    """Beyond the source: loading a cache entry never touches the pickle machinery at run time."""
    import pickle
    import tempfile

    from pytest_tcav.engine.fingerprints import make_key

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pickle was used")

    with tempfile.TemporaryDirectory() as root, pytest.MonkeyPatch.context() as patch:
        for name in ("load", "loads", "Unpickler", "dump", "dumps", "Pickler"):
            patch.setattr(pickle, name, refuse)
        key = make_key("cav", {"x": 1})
        DiskStore(root).fetch("cav", key, lambda: {"w": torch.arange(5.0)})
        assert torch.equal(DiskStore(root).fetch("cav", key, refuse)["w"], torch.arange(5.0))  # type: ignore[arg-type]


# -- names that could leave their folders -----------------------------------------------------


HOSTILE_NAMES = ["../../escape", "/tmp/absolute", "..", ".", "a/../../b", "..\\..\\windows", "C:\\evil",
                 "~root", "name\0with-nul", "\n", "con", "x" * 300]


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_concept_names_never_reach_the_cache_paths(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    randoms = [torch.rand(6, 4, generator=gen) for _ in range(3)]
    inputs = torch.rand(5, 4, generator=gen)
    root = tmp_path / "work" / "cache"
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    for k, name in enumerate(HOSTILE_NAMES):
        concept = Concept(name, torch.rand(6, 4, generator=gen) + k)
        random_sets = [Concept(f"{name}/random{j}", r) for j, r in enumerate(randoms)]
        TCAV(model, store=MemoryStore(backend=DiskStore(root))).test(
            concept, target=1, inputs=Concept(name, inputs), layers=["0"], random_sets=random_sets)
    written = _files(tmp_path)
    assert written and all(root in p.parents for p in written)
    for path in written:
        relative = path.relative_to(root)
        assert relative.parts[0] in ("activations", "gradients", "cav", "CACHEDIR.TAG", "evict.lock"), relative
        assert all(name not in str(relative) for name in ("escape", "absolute", "evil", "random0"))


@settings(max_examples=60, deadline=None)
@given(kind=st.text(max_size=40), key=st.text(max_size=140))
def test_cache_paths_stay_in_the_cache_whatever_the_kind_and_key(kind: str, key: str) -> None:
    root = Path("/nonexistent/cache-root")
    store = DiskStore(root)
    try:
        path = store.path(kind, key)
    except ValueError:
        return
    assert path.parent.parent.parent == root and path.suffix == ".tcav" and ".." not in path.parts


@settings(max_examples=80, deadline=None)
@given(name=st.one_of(st.text(max_size=140), st.sampled_from(HOSTILE_NAMES),
                      st.from_regex(r"\A[a-z.]{0,4}(/|\\|\.\.)[a-z.]{0,4}\Z")))
def test_baseline_paths_stay_in_their_folder_whatever_the_name(name: str) -> None:
    from pytest_tcav.checks.baseline_names import baseline_path, is_baseline_file
    from pytest_tcav.errors import BaselineError

    directory = Path("/nonexistent/tests/tcav_baselines")
    try:
        path = baseline_path(directory, name)
    except BaselineError:
        return
    assert path.parent == directory and is_baseline_file(path)
    assert os.path.normpath(path) == str(path) and not path.name.startswith(".")


def _image_folder(folder: Path) -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    for k in range(5):
        Image.new("RGB", (4, 4), (40 * k, 0, 0)).save(folder / f"{k}.png")
    return folder


@pytest.mark.parametrize("name", ["../outside", "../outside/", "/abs/outside", "..", ".", "sub/../../outside", ""])
def test_library_names_cannot_reach_folders_outside_the_library(tmp_path: Path, name: str) -> None:
    _image_folder(tmp_path / "outside")
    _image_folder(tmp_path / "library" / "striped")
    _image_folder(tmp_path / "library" / "random_0")
    concepts = ConceptLibrary(tmp_path / "library")
    inputs = InputLibrary(tmp_path / "library", classes={name: 1} if name else {})
    name = name.replace("/abs/outside", str(tmp_path / "outside"))
    assert name not in concepts
    with pytest.raises(ConceptDataError, match="no concept"):
        concepts.concept(name)
    with pytest.raises(ConceptDataError, match="no random folder"):
        concepts.random_set(name)
    with pytest.raises(ConceptDataError, match="no input set"):
        inputs.named(name)
    with pytest.raises(ConceptDataError, match="no inputs for target"):
        inputs.for_target(name)
    assert concepts.concept("striped").examples.shape[0] == 5  # a plain name still works
