"""The package's shape, read from the source with `ast`: imports point down, without cycles.

docs/architecture.md draws the layers these tests hold the code to.
"""

from __future__ import annotations

import ast
import dataclasses
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "gan_jax"
MAX_LINES = 500

# Function-level imports of gan_jax modules that are allowed, each with its reason:
# (importing module, imported module) -> why. The lazy `__getattr__` of gan_jax/__init__.py
# imports by name (importlib), which is not an import statement, so it needs no entry.
FUNCTION_LEVEL_IMPORTS = {
    ("gan_jax.trainer", "gan_jax.input_pipeline"): (
        "TensorFlow takes seconds to import: a bad config or checkpoint is reported first"
    ),
    ("gan_jax.evaluate", "gan_jax.input_pipeline"): (
        "TensorFlow takes seconds to import and defines absl flags, which importing the "
        "evaluation command (e.g. next to train.py) must not"
    ),
}

# What gan_jax.metrics may import from the rest of gan_jax (besides itself).
METRICS_MAY_IMPORT = {"gan_jax.errors", "gan_jax.conv"}


@dataclasses.dataclass(frozen=True)
class Import:
    importer: str
    target: str  # The gan_jax module imported (a package when a name comes from its __init__).
    names: tuple[str, ...]  # The names taken from it (`from target import a, b`); () for `import`.
    line: int
    in_function: bool
    type_checking: bool


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(importer: str, node: ast.ImportFrom) -> str | None:
    """The absolute module of a `from ... import`, relative imports included."""
    if not node.level:
        return node.module
    base = importer.split(".")
    if not is_package(importer):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(name: str) -> list[Import]:
    """Every import of a gan_jax module in module `name`, with where it happens."""
    tree = ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool, type_checking: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            in_function = True
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, in_function, True)
            for child in node.orelse:
                visit(child, in_function, type_checking)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "gan_jax":
                    found.append(
                        Import(name, alias.name, (), node.lineno, in_function, type_checking)
                    )
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(name, node)
            if source and source.split(".")[0] == "gan_jax":
                # `from pkg import sub` imports the submodule; other names come from pkg itself.
                names: list[str] = []
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    if sub in MODULES:
                        found.append(Import(name, sub, (), node.lineno, in_function, type_checking))
                    else:
                        names.append(alias.name)
                if names:
                    found.append(
                        Import(name, source, tuple(names), node.lineno, in_function, type_checking)
                    )
        for child in ast.iter_child_nodes(node):
            visit(child, in_function, type_checking)

    visit(tree, False, False)
    return found


ALL_IMPORTS = [i for name in MODULES for i in imports_of(name)]


def module_graph() -> dict[str, set[str]]:
    """Module-level imports between gan_jax modules (TYPE_CHECKING imports are not edges)."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for i in ALL_IMPORTS:
        if not i.in_function and not i.type_checking and i.target != i.importer:
            graph[i.importer].add(i.target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in graph:
                continue
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def _where(i: Import) -> str:
    return f"{MODULES[i.importer].relative_to(PACKAGE.parent)}:{i.line}"


def test_the_parser_sees_the_package():
    # Guards the tests below against passing because they read nothing.
    assert {"gan_jax", "gan_jax.trainer", "gan_jax.metrics", "gan_jax.rundir"} <= set(MODULES)
    graph = module_graph()
    assert "gan_jax.rundir" in graph["gan_jax.trainer"]
    assert "gan_jax.metrics.stats" in graph["gan_jax.metrics.scorer"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    found = cycles(module_graph())
    assert not found, "import cycles between gan_jax modules: " + "; ".join(
        " <-> ".join(c) for c in found
    )


def test_no_function_level_imports_of_gan_jax_modules():
    bad = [
        f"{_where(i)} imports {i.target}"
        for i in ALL_IMPORTS
        if i.in_function and (i.importer, i.target) not in FUNCTION_LEVEL_IMPORTS
    ]
    assert not bad, (
        "import gan_jax modules at the top of the module (or list the exception, with its "
        "reason, in FUNCTION_LEVEL_IMPORTS): " + "; ".join(bad)
    )


def test_the_listed_function_level_imports_still_exist():
    present = {(i.importer, i.target) for i in ALL_IMPORTS if i.in_function}
    stale = set(FUNCTION_LEVEL_IMPORTS) - present
    assert not stale, f"remove these from FUNCTION_LEVEL_IMPORTS: {sorted(stale)}"


def test_metrics_imports_nothing_above_it():
    bad = [
        f"{_where(i)} imports {i.target}"
        for i in ALL_IMPORTS
        if i.importer.startswith("gan_jax.metrics")
        and not i.target.startswith("gan_jax.metrics")
        and i.target not in METRICS_MAY_IMPORT
    ]
    assert not bad, (
        "gan_jax.metrics scores image batches and imports only itself, gan_jax.errors and "
        "gan_jax.conv; pass what it needs in instead: " + "; ".join(bad)
    )


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_are_at_most_500_lines(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name]} has {lines} lines (at most {MAX_LINES}): split it"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_private_names_are_imported_across_modules():
    bad = []
    for i in ALL_IMPORTS:
        bad += [f"{_where(i)}: {i.target}.{n}" for n in i.names if _private(n)]
        # A private module (datasets/_common.py) serves its own package only.
        for depth, part in enumerate(i.target.split(".")):
            if _private(part):
                owner = ".".join(i.target.split(".")[:depth])
                if not (i.importer + ".").startswith(owner + "."):
                    bad.append(f"{_where(i)}: {i.target}")
    bad += _private_attributes_of_imported_modules()
    assert not bad, "private names used outside their module; make them public: " + "; ".join(
        sorted(set(bad))
    )


def _private_attributes_of_imported_modules() -> list[str]:
    """`module._name` where `module` is a gan_jax module imported by name."""
    bad = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source = _resolve(name, node)
                for alias in node.names:
                    if f"{source}.{alias.name}" in MODULES:
                        aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname and alias.name in MODULES:
                        aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and _private(node.attr)
            ):
                rel = path.relative_to(PACKAGE.parent)
                bad.append(f"{rel}:{node.lineno}: {aliases[node.value.id]}.{node.attr}")
    return bad
