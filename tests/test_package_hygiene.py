"""Package-wide rules, checked on the source of every module of ``monai_das``:

- no module reads a private attribute (``x._name``, ``getattr(x, "_name")``) of another library (MONAI, MONAI Label,
  ignite, torch), nor imports a private name from them;
- no file over 450 lines, no function over 80 lines;
- one licence policy: the Apache-2.0 text in ``LICENSE``, its SPDX name in ``pyproject.toml``, no per-file licence
  header in the project's Python files;
- the slow-tier files named in ``tests/slow_tier.py`` exist (a renamed file would silently join the quick tier).

Files that break a rule today while another change rewrites them are listed in ``KNOWN_*`` as strict expected
failures: once the rewrite lands, the test passes, pytest reports XPASS as a failure, and the entry goes.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from slow_tier import SLOW_FILES, SLOW_FOLDERS, TESTS

ROOT = TESTS.parent
PACKAGE = ROOT / "monai_das"
MODULES = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py"))
OTHER_LIBRARIES = ("torch", "monai", "ignite", "monailabel")
MAX_FILE_LINES, MAX_FUNCTION_LINES = 450, 80

KNOWN_PRIVATE_ACCESS = {
    "apps/monailabel/infer.py": "MONAI Label BasicInferTask._config",
    "apps/monailabel/sample_app/main.py": "MONAI Label MONAILabelApp._infers/_trainers, LocalDatastore._extensions",
}
KNOWN_LONG_FILES = {
}
KNOWN_LONG_FUNCTIONS = {
}


def params(known: dict[str, str]) -> list:
    """One parameter per module, the ``known`` ones marked as strict expected failures."""
    return [
        pytest.param(m, marks=pytest.mark.xfail(strict=True, reason=known[m])) if m in known else m for m in MODULES
    ]


def parse(module: str) -> ast.Module:
    return ast.parse((PACKAGE / module).read_text(encoding="utf-8"), filename=module)


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def package_private_names() -> set[str]:
    """Private names the package defines itself: methods and class attributes, ``self._x = ...`` assignments."""
    names = set()
    for module in MODULES:
        for node in ast.walk(parse(module)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
    return {n for n in names if is_private(n)}


def module_own_names(tree: ast.Module) -> set[str]:
    """Names bound at the top of a module by ``def``, ``class``, assignment or an import from the package itself."""
    own = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            own.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            own.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] == "monai_das"):
            own.update(alias.asname or alias.name for alias in node.names)
    return own


def private_accesses(module: str, tree: ast.Module, defined: set[str]) -> list[str]:
    """``file:line: expression`` of every private name the module takes from an object that is not its own.

    Its own: ``self``, ``cls`` or ``super()`` with a name the package defines (not one inherited from a library
    class), or an object bound at the top of the module. Anything else (a parameter, a local variable, a module of
    another library) is not.
    """
    own = module_own_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in OTHER_LIBRARIES:
            found += [f"{module}:{node.lineno}: from {node.module} import {a.name}" for a in node.names
                      if is_private(a.name)]
            continue
        if isinstance(node, ast.Attribute):
            name, base = node.attr, node.value
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "hasattr", "setattr", "delattr") and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
            name, base = node.args[1].value, node.args[0]
        else:
            continue
        if not is_private(name):
            continue
        is_self = (isinstance(base, ast.Name) and base.id in ("self", "cls")) or (
            isinstance(base, ast.Call) and isinstance(base.func, ast.Name) and base.func.id == "super")
        if (is_self and name in defined) or (isinstance(base, ast.Name) and base.id in own):
            continue
        found.append(f"{module}:{node.lineno}: {ast.unparse(base)}.{name}")
    return found


@pytest.fixture(scope="module")
def defined_private_names() -> set[str]:
    return package_private_names()


def test_the_check_finds_what_it_should():
    """The rule's own cases, on a made-up module: library privates are found, the module's own are not."""
    source = '''
from torch.nn.modules.batchnorm import _BatchNorm
from monai_das.utils import _helper
import torch
_CACHE = {}
class Saver(SomeLibraryClass):
    def __init__(self):
        self._mine = 1
    def run(self, checkpoint, net):
        a = checkpoint._handler + getattr(net, "_orig_mod") + torch._C + self._inherited
        b = self._mine + _CACHE.__len__() + _helper._x + super()._mine + net.__class__ + Saver._mine
'''
    found = private_accesses("probe.py", ast.parse(source), {"_mine"})
    expected = {"from torch.nn.modules.batchnorm import _BatchNorm", "checkpoint._handler", "net._orig_mod",
                "torch._C", "self._inherited"}
    assert {f.split(": ", 1)[1] for f in found} == expected


@pytest.mark.parametrize("module", params(KNOWN_PRIVATE_ACCESS))
def test_no_private_attribute_of_another_library(module, defined_private_names):
    found = private_accesses(module, parse(module), defined_private_names)
    assert not found, "private names of another library:\n" + "\n".join(found)


@pytest.mark.parametrize("module", params(KNOWN_LONG_FILES))
def test_file_length(module):
    lines = len((PACKAGE / module).read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_FILE_LINES, f"{module} has {lines} lines (at most {MAX_FILE_LINES})"


@pytest.mark.parametrize("module", params(KNOWN_LONG_FUNCTIONS))
def test_function_length(module):
    long = [
        f"{module}:{node.lineno}: {node.name} has {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(parse(module))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


def test_known_entries_name_existing_modules():
    """A file that was split or removed takes its ``KNOWN_*`` entry with it."""
    for known in (KNOWN_PRIVATE_ACCESS, KNOWN_LONG_FILES, KNOWN_LONG_FUNCTIONS):
        assert set(known) <= set(MODULES), sorted(set(known) - set(MODULES))


def test_slow_tier_paths_exist():
    missing = [p for p in (*SLOW_FILES, *SLOW_FOLDERS) if not (TESTS / p).exists()]
    assert not missing, f"tests/slow_tier.py names slow tests that do not exist: {missing}"


def leading_comments(path: Path) -> str:
    """The comment lines a file starts with (a licence header would be there)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return "\n".join(line for line in lines[: next((i for i, x in enumerate(lines) if not x.startswith("#")), 0)])


def test_one_licence_policy():
    tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else pytest.importorskip("tomli")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    licence = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    files = [p for folder in ("monai_das", "tests", "benchmarks", "scripts") for p in (ROOT / folder).rglob("*.py")]
    assert len(files) > 50
    headed = [str(p.relative_to(ROOT)) for p in files
              if any(word in leading_comments(p) for word in ("Copyright", "License", "SPDX"))]
    assert not headed, f"per-file licence headers: {headed}"
