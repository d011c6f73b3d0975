"""The layout is the architecture: lower layers never import higher ones, nothing outside bench/cli/ (and ``python
-m metagrad``) imports the command line, and no module imports itself back through a cycle (imports read from the
source, function-level ones included)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# errors <- algorithms <- nets, data, measure <- training, checks <- harnesses, diagnostics <- reporting <- cli <- the
# public API
LAYERS = {"metagrad.errors": 0, "metagrad.plugins": 0, "metagrad.algorithms": 0, "metagrad.bench": 0, "metagrad.bench.atomic": 0,
          "metagrad.bench.options": 0, "metagrad.bench.plotting": 0, "metagrad.bench.nets": 1, "metagrad.bench.data": 1,
          "metagrad.bench.measure": 1, "metagrad.bench.training": 2, "metagrad.bench.checks": 2,
          "metagrad.bench.harnesses": 3,
          "metagrad.bench.diagnostics": 3, "metagrad.bench.regression": 4,
          "metagrad.bench.reporting": 4, "metagrad.bench.cli": 5, "metagrad": 6}
# where each installed package's source lies in the checkout (pyproject.toml's package-dir)
SOURCES = {"metagrad": "metagrad", "metagrad.algorithms": "algorithms", "metagrad.bench": "bench"}


def layer(module: str) -> int | None:
    for prefix, level in sorted(LAYERS.items(), key=lambda item: -len(item[0])):
        if module == prefix or module.startswith(prefix + "."):
            return level
    return None


def project_modules() -> dict[str, Path]:
    modules = {}
    for package, folder in SOURCES.items():
        for path in (ROOT / folder).glob("**/*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            modules[".".join((package, *parts)).removesuffix(".__init__")] = path
    return modules


def imports(module: str, path: Path) -> set[str]:
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            if node.module:  # `from . import name` imports the submodule, not its package
                found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] == "metagrad"}


def test_no_module_imports_a_higher_layer_or_the_command_line():
    modules = project_modules()
    assert "metagrad.bench.training.trainer" in modules and "metagrad.bench.cli.command" in modules
    wrong = []
    for module, path in modules.items():
        own = layer(module)
        assert own is not None, f"{module}: in no layer of the layout"
        for name in imports(module, path):
            other = layer(name)
            if other is not None and other > own:
                wrong.append(f"{module} imports {name}")
            if name.startswith("metagrad.bench.cli") and not module.startswith(("metagrad.bench.cli", "metagrad.__main__")):
                wrong.append(f"{module} imports the command line ({name})")
    assert not wrong, wrong


def test_no_import_cycle():
    modules = project_modules()
    # a module's own packages are loaded before it, whatever it imports: not an edge of a cycle
    graph = {module: {name for name in imports(module, path) if name in modules and not module.startswith(name)}
             for module, path in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for name in sorted(graph[module]):
            if state.get(name) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(name):], name]))
            if name not in state:
                visit(name, [*path, name])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
