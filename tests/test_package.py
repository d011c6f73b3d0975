"""One installed name: ``import metagrad`` is the public API, cheap to import, and the only thing the examples use;
the checkout's algorithms/ and bench/ are installed as metagrad's subpackages, never as top-level names."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import tomllib

from tests.limits import HANG_S

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _run(code: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=HANG_S)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return done.stdout


def test_import_metagrad_gives_the_public_api_without_importing_torch_until_a_name_is_used(tmp_path):
    """In a clean process outside the checkout (as a user's script runs): every name of __all__ resolves, and
    nothing is installed under the generic names algorithms or bench."""
    shown = json.loads(_run(
        "import importlib.util, json, sys\n"
        "import metagrad\n"
        "cheap = 'torch' not in sys.modules\n"
        "missing = [name for name in metagrad.__all__ if getattr(metagrad, name, None) is None]\n"
        "squatted = [name for name in ('algorithms', 'bench') if importlib.util.find_spec(name) is not None]\n"
        "print(json.dumps({'cheap': cheap, 'missing': missing, 'squatted': squatted, 'all': metagrad.__all__,\n"
        "                  'dir': sorted(set(metagrad.__all__) - set(dir(metagrad)))}))\n", tmp_path))
    assert shown["cheap"], "import metagrad imported torch"
    assert shown["missing"] == [] and shown["dir"] == []
    assert shown["squatted"] == []
    for name in ("register", "make_algorithm", "algorithm_names", "MetaGradient", "MetaGradientRecord",
                 "FunctionalModel", "ConfigError", "register_harness", "harness_names", "Harness"):
        assert name in shown["all"], name


def test_an_unknown_name_is_an_attribute_error():
    import metagrad

    try:
        metagrad.no_such_name  # noqa: B018
    except AttributeError as error:
        assert "no_such_name" in str(error)
    else:
        raise AssertionError("metagrad.no_such_name resolved")


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.add(node.module)
    return found


def test_the_examples_import_metagrad_and_nothing_beneath_it():
    """A plug-in depends on the public API only: ``metagrad``, never ``metagrad.algorithms...`` or ``metagrad.bench...``
    (their own tests included), so internal modules are free to move."""
    files = sorted(EXAMPLES.glob("*/**/*.py"))
    assert files
    wrong = {f"{path.relative_to(ROOT)}: {name}" for path in files for name in _imports(path)
             if name.split(".")[0] in ("metagrad", "algorithms", "bench") and name != "metagrad"}
    assert not wrong, sorted(wrong)
    assert any("metagrad" in _imports(path) for path in files)


def test_the_installed_packages_are_the_checkouts_folders():
    """pyproject.toml lists each package (metagrad.bench.data is bench/data/): none left out of a wheel."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    sources = setuptools["package-dir"]
    folders = set()
    for package, folder in sources.items():
        for init in (ROOT / folder).glob("**/__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            folders.add(".".join((package, *parts)))
    assert set(setuptools["packages"]) == folders


def test_no_code_imports_the_checkouts_folders_by_their_folder_names():
    """In the checkout, `import bench` would find the folder and load a second copy of every module beside
    metagrad.bench's: every import, code written into strings for other processes included, names metagrad."""
    import re

    pattern = re.compile(r"(?m)(^|[\s\"'(;])(from|import) (algorithms|bench)\b(?!/)")
    wrong = [f"{path.relative_to(ROOT)}:{text[:match.start()].count(chr(10)) + 1}"
             for path in sorted(ROOT.glob("**/*.py")) if ".git" not in path.parts and "runs" not in path.parts
             for text in [path.read_text()] for match in pattern.finditer(text)]
    assert not wrong, wrong
