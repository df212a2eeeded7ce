"""The two import rules import-linter has no contract type for, as custom contracts (pyproject.toml,
``[tool.importlinter]`` ``contract_types``): ``stdlib_only`` and ``acyclic``.

Rules: each contract reads only the graph import-linter built (grimp: module-level, function-local and
``if TYPE_CHECKING:`` imports alike) and, for an allowed function-local import, the importing file's
syntax tree (``acyclic`` reads every module's syntax tree for the package a ``from`` import names);
nothing is imported. A broken contract names the importing module, the line and what
it imports, as import-linter's own contracts do. lint-imports loads this module from the working
directory (it puts that first on sys.path), so it runs only from the repository root.
"""

from __future__ import annotations

import ast
import sys
from importlib.util import find_spec
from pathlib import Path

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


def _lines(graph: ImportGraph, importer: str, imported: str) -> list[int]:
    return sorted({detail["line_number"] for detail in graph.get_import_details(importer=importer, imported=imported)})


def _source(graph: ImportGraph, module: str) -> tuple[Path, ast.Module] | None:
    """``module``'s file and syntax tree, found from its root package's folder without importing anything
    (``find_spec`` of a submodule would import its parents)."""
    root, *parts = module.split(".")
    spec = find_spec(root)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    package = bool(graph.find_children(module)) or (path / "__init__.py").is_file()
    path = path / "__init__.py" if package else path.with_suffix(".py")
    if not path.is_file():
        return None
    return path, ast.parse(path.read_text(encoding="utf-8"), str(path))


def _function_lines(graph: ImportGraph, module: str) -> set[int]:
    """The line numbers of ``module``'s source that lie inside a function body."""
    found = _source(graph, module)
    if found is None:
        return set()
    path, tree = found
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return lines


class StdlibOnlyContract(Contract):
    """The modules of ``packages`` import the standard library and the project's own packages only
    (the graph must be built with ``include_external_packages``). ``exceptions`` lists
    ``"module: package"`` pairs: that module may import that package inside a function only."""

    type_name = "stdlib_only"

    packages = fields.ListField(subfield=fields.StringField())
    exceptions = fields.ListField(subfield=fields.StringField(), required=False)

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        allowed = {tuple(part.strip() for part in pair.split(":", 1)) for pair in self.exceptions or ()}
        roots = {module for module in graph.modules if "." not in module and not graph.is_module_squashed(module)}
        broken = []
        for package in self.packages:  # type: ignore[attr-defined]
            for module in sorted({package} | graph.find_descendants(package)):
                for imported in sorted(graph.find_modules_directly_imported_by(module)):
                    top = imported.partition(".")[0]
                    if top in roots or top in sys.stdlib_module_names:
                        continue
                    lines = _lines(graph, module, imported)
                    if (module, top) in allowed:
                        inside = _function_lines(graph, module)
                        lines = [line for line in lines if line not in inside]
                    broken.extend((module, line, top) for line in lines)
        return ContractCheck(kept=not broken, warnings=[], metadata={"broken": broken})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for module, line, imported in check.metadata["broken"]:
            output.print_error(f"{module}:{line} imports {imported}, not from the standard library", bold=False)
            output.new_line()


def _package_imports(graph: ImportGraph, module: str, modules: set[str]) -> list[tuple[str, int, str]]:
    """``(package, line, statement)`` for each ``from package import submodule`` in ``module``: grimp
    records only ``package.submodule``, but the statement reads an attribute of ``package`` and so runs
    its ``__init__`` first (``from .. import pickle_bounds`` in ``tracemalloc_viewer.sources`` imports
    ``tracemalloc_viewer``, whose ``__init__`` imports ``sources``: a cycle)."""
    found = _source(graph, module)
    if found is None:
        return []
    path, tree = found
    here = module if path.name == "__init__.py" else module.rpartition(".")[0]
    imports = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base_parts = here.split(".")[: len(here.split(".")) - node.level + 1]
            package = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            package = node.module or ""
        if package in modules and any(f"{package}.{alias.name}" in graph.modules for alias in node.names):
            imports.append((package, node.lineno, ast.unparse(node)))
    return imports


class AcyclicContract(Contract):
    """No import cycle among the modules of ``packages``, a package's ``__init__`` included (a
    submodule that imports its own package back closes a cycle, and so does ``from package import
    submodule``, which runs ``package``'s ``__init__``). Each cycle is reported once, as the shortest
    chain through its lexically first module, every step with its line."""

    type_name = "acyclic"

    packages = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        modules = set()
        for package in self.packages:  # type: ignore[attr-defined]
            modules |= {package} | graph.find_descendants(package)
        for module in sorted(modules):  # the graph is this contract's own copy
            for package, line, statement in _package_imports(graph, module, modules):
                if package != module:
                    graph.add_import(importer=module, imported=package, line_number=line, line_contents=statement)
        cycles: dict[frozenset[str], list[str]] = {}
        for module in sorted(modules):
            for imported in sorted(graph.find_modules_directly_imported_by(module) & modules):
                if any(module in members and imported in members for members in cycles):
                    continue
                back = graph.find_shortest_chain(importer=imported, imported=module)
                if back is not None:
                    chain = [module, *back]
                    cycles.setdefault(frozenset(chain), chain)
        steps = [
            [(importer, _lines(graph, importer, imported)) for importer, imported in zip(chain, chain[1:])]
            for chain in cycles.values()
        ]
        return ContractCheck(kept=not cycles, warnings=[], metadata={"cycles": steps})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for steps in check.metadata["cycles"]:
            chain = " -> ".join(f"{module} (line {', '.join(map(str, lines))})" for module, lines in steps)
            output.print_error(f"import cycle: {chain} -> {steps[0][0]}", bold=False)
            output.new_line()
