"""The two import rules import-linter has no contract type for, as custom contracts (pyproject.toml,
``[tool.importlinter]`` ``contract_types``): ``stdlib_only`` and ``acyclic``.

Rules: each contract reads only the graph import-linter built (grimp: module-level, function-local and
``if TYPE_CHECKING:`` imports alike) and, for an allowed function-local import, the importing file's
syntax tree; nothing is imported. A broken contract names the importing module, the line and what
it imports, as import-linter's own contracts do. lint-imports loads this module from the working
directory (it puts that first on sys.path), so it runs only from the repository root.
"""

from __future__ import annotations

import ast
import sys
from importlib.util import find_spec

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


def _lines(graph: ImportGraph, importer: str, imported: str) -> list[int]:
    return sorted({detail["line_number"] for detail in graph.get_import_details(importer=importer, imported=imported)})


def _function_lines(module: str) -> set[int]:
    """The line numbers of ``module``'s source that lie inside a function body."""
    spec = find_spec(module)
    if spec is None or spec.origin is None:
        return set()
    with open(spec.origin, encoding="utf-8") as source:
        tree = ast.parse(source.read(), spec.origin)
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
                        inside = _function_lines(module)
                        lines = [line for line in lines if line not in inside]
                    broken.extend((module, line, top) for line in lines)
        return ContractCheck(kept=not broken, warnings=[], metadata={"broken": broken})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for module, line, imported in check.metadata["broken"]:
            output.print_error(f"{module}:{line} imports {imported}, not from the standard library", bold=False)
            output.new_line()


class AcyclicContract(Contract):
    """No import cycle among the modules of ``packages``, a package's ``__init__`` included (a
    submodule that imports its own package back closes a cycle). Each cycle is reported once, as the
    shortest chain through its lexically first module, every step with its line."""

    type_name = "acyclic"

    packages = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        modules = set()
        for package in self.packages:  # type: ignore[attr-defined]
            modules |= {package} | graph.find_descendants(package)
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
