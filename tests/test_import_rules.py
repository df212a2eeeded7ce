"""Import rules of server/, experiments/ and tracemalloc_viewer/, read from the source (nothing imported).

Every import counts: at module level, inside a function, and under ``if TYPE_CHECKING:``. A
function-local or type-only import is still a dependency a reader has to follow, and it is how cycles
used to hide. A module is named by its dotted path; a rule naming a package covers its submodules,
and ``pkg.__init__`` names the package module alone.

The rules below are the only place they are written: :func:`parse_rules` reads them from this
docstring. One rule a line; a line indented deeper continues the rule above.

``layers`` (top to bottom, ``>`` between layers): a module imports its own layer and those below,
never one above; every module of experiments/ is in a layer, so a new module is placed consciously.
The commands sit on top, so nothing but ``experiments/__main__.py`` imports ``experiments.cli``; the
result files (``dataset``) at the bottom, with ``paths`` and ``errors`` that everything may use.
Within the middle layer a module may import another (bench is built on measure, the runner drives
loadgen) except as the ``forbid`` rules say.

``forbid A imports B...``: no module of A imports a module of B. ``forbid A reaches B...``: nor does it
get to one through another package: every import leaving A is followed to the end. ``except``
names what is allowed although it matches.

- ``regress`` compares datasets; what is shown of the comparison is the renderers' business.
- ``render`` reads files, never live code: it neither measures nor imports the code it describes,
  directly or through another package. ``experiments.bench.metrics`` is allowed: it is the bench's
  metric catalog and the statistics over values already recorded (no I/O, no process, no clock), the
  same kind of thing as the dataset's catalog. Because the rule follows it, it stays allowed only while
  it imports nothing live. The bench's other modules launch and measure processes.
- ``dataset`` is read by everything; it imports nothing of experiments but paths and errors (the
  layers) and nothing of the server.
- The viewer reads files and stands alone; the server is the subject under measurement.

``stdlib-only P``: P imports the standard library and the project's own packages only: the server's
idle RSS is measured, and a third-party import would be measured with it. An ``except M: NAME`` lets
module M import NAME inside a function only, so that only the process that takes that path pays for
it: ``server.cli`` imports memray when asked for ``--trace memray``, that configuration's own cost.

``acyclic``: no import cycle among the modules of these packages. A package ``__init__`` that imports
its submodules is not imported back by them either: what they share goes into a module of its own.

The rules::

    layers      experiments.cli experiments.__main__
              > experiments.measure experiments.regress experiments.bench experiments.render
                experiments.study experiments.loadgen experiments.notebook_runner
                experiments.revisions
              > experiments.dataset
              > experiments.paths experiments.errors experiments.__init__
    forbid      experiments.regress imports experiments.render
    forbid      experiments.render reaches server experiments.measure experiments.bench
                experiments.loadgen experiments.revisions except experiments.bench.metrics
    forbid      experiments.dataset imports server
    forbid      tracemalloc_viewer imports server experiments
    forbid      server imports experiments tracemalloc_viewer
    stdlib-only server except server.cli: memray
    acyclic     server experiments tracemalloc_viewer

:func:`test_the_tree_keeps_the_import_rules` lists every violation at once; the tests after it build
small trees with one forbidden import each and show that each rule reports it, naming the importing
module, its line and the rule.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures import REPO


# --- the import graph ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    """One imported name of one import statement: ``target`` is a project module, or for an import
    from outside the project its top-level package with ``external`` set."""

    module: str
    path: Path
    line: int
    target: str
    external: bool
    where: str  # "module level", "inside a function" or "under TYPE_CHECKING"


def module_files(root: Path, packages: list[str]) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` of ``packages`` under ``root``."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str:
    """The module ``name`` imports: itself, or the longest known module it is inside."""
    while name not in modules and "." in name:
        name = name.rpartition(".")[0]
    return name


def _import_sites(tree: ast.Module):
    """(node, where) for every import statement of ``tree``."""

    def visit(nodes, where: str):
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                yield node, where
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                yield from visit(ast.iter_child_nodes(node), "inside a function")
            elif isinstance(node, ast.If) and where == "module level" and _is_type_checking(node.test):
                yield from visit(node.body, "under TYPE_CHECKING")
                yield from visit(node.orelse, where)
            else:
                yield from visit(ast.iter_child_nodes(node), where)

    yield from visit(tree.body, "module level")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_graph(root: Path, packages: list[str]) -> tuple[dict[str, Path], list[Import]]:
    """Every module of ``packages`` and every name they import."""
    modules = module_files(root, packages)
    imports = []
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        for node, where in _import_sites(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                wanted = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = module if is_package else module.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        base = base.rpartition(".")[0]
                    stem = f"{base}.{node.module}" if node.module else base
                else:
                    stem = node.module or ""
                # ``from package import submodule`` imports the submodule; any other name, the module.
                wanted = [f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in modules else stem for alias in node.names]
            for name in dict.fromkeys(wanted):
                top = name.partition(".")[0]
                if top in packages:
                    target = _resolve(name, modules)
                    if target != module:
                        imports.append(Import(module, path, node.lineno, target, False, where))
                elif top != "__future__":
                    imports.append(Import(module, path, node.lineno, top, True, where))
    return modules, imports


# --- the rules ----------------------------------------------------------------------------------


def _matches(module: str, pattern: str) -> bool:
    if pattern.endswith(".__init__"):
        return module == pattern.removesuffix(".__init__")
    return module == pattern or module.startswith(pattern + ".")


def _matches_any(module: str, patterns: list[str]) -> bool:
    return any(_matches(module, pattern) for pattern in patterns)


@dataclass(frozen=True)
class Rule:
    kind: str  # layers, forbid, stdlib-only, acyclic
    text: str  # how a report names it (see _display)
    words: tuple[str, ...]

    def split(self, separator: str) -> tuple[list[str], list[str]]:
        """The words after the kind, before and after ``separator`` (empty when absent)."""
        words = list(self.words[1:])
        if separator not in words:
            return words, []
        at = words.index(separator)
        return words[:at], words[at + 1 :]


def parse_rules(docstring: str) -> list[Rule]:
    """The rules of the ``The rules::`` block of ``docstring`` (see this module's docstring)."""
    block = docstring.split("The rules::\n", 1)[1].lstrip("\n")
    lines: list[str] = []
    for line in block.splitlines():
        if line and not line.startswith(" "):
            break  # the block ends with the first line that is not indented
        if not line.strip():
            continue
        if len(line) - len(line.lstrip()) > 4 and lines:
            lines[-1] += " " + line.strip()
        else:
            lines.append(line.strip())
    rules = [Rule(line.split()[0], _display(line.split()), tuple(line.split())) for line in lines]
    unknown = [rule.text for rule in rules if rule.kind not in CHECKS]
    assert not unknown, f"unknown rule kinds: {unknown}"
    return rules


def _display(words: list[str]) -> str:
    """A rule as a report shows it: as written, but the layers (long) by what they forbid."""
    if words[0] == "layers":
        return "layers: a module never imports a layer above its own, and every module has a layer"
    return " ".join(words)


@dataclass(frozen=True, order=True)
class Violation:
    path: str  # relative to the checked root
    line: int
    module: str
    message: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.module} {self.message}\n    rule: {self.rule}"


class Graph:
    """The import graph of a tree, as the checks use it."""

    def __init__(self, root: Path, packages: list[str]) -> None:
        self.root = root
        self.modules, self.imports = import_graph(root, packages)
        self.internal = [item for item in self.imports if not item.external]
        self.targets: dict[str, list[Import]] = {module: [] for module in self.modules}
        for item in self.internal:
            self.targets[item.module].append(item)

    def violation(self, item: Import, message: str, rule: Rule) -> Violation:
        where = "" if item.where == "module level" else f" ({item.where})"
        return Violation(self.relative(item.path), item.line, item.module, message + where, rule.text)

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def path_to(self, start: str, goal: list[str], allowed: list[str]) -> list[str] | None:
        """The shortest import chain from ``start`` to a module matching ``goal`` and not ``allowed``,
        or None."""
        parents: dict[str, str | None] = {start: None}
        queue = [start]
        for module in queue:
            if module != start and _matches_any(module, goal) and not _matches_any(module, allowed):
                chain = [module]
                while parents[chain[-1]] is not None:
                    chain.append(parents[chain[-1]])
                return chain[::-1]
            for item in self.targets.get(module, ()):
                if item.target not in parents:
                    parents[item.target] = module
                    queue.append(item.target)
        return None


def check_layers(graph: Graph, rule: Rule) -> list[Violation]:
    layers = [layer.split() for layer in " ".join(rule.words[1:]).split(">")]

    def layer_of(module: str) -> int | None:
        placed = [(len(pattern), index) for index, layer in enumerate(layers) for pattern in layer if _matches(module, pattern)]
        return max(placed)[1] if placed else None

    roots = {pattern.partition(".")[0] for layer in layers for pattern in layer}
    found = []
    for module, path in graph.modules.items():
        if module.partition(".")[0] in roots and layer_of(module) is None:
            found.append(Violation(graph.relative(path), 1, module, "is in no layer: place it in the rule", rule.text))
    for item in graph.internal:
        source, target = layer_of(item.module), layer_of(item.target)
        if source is not None and target is not None and target < source:
            found.append(graph.violation(
                item, f"imports {item.target}, a layer above its own ({' '.join(layers[target])})", rule))
    return found


def check_forbid(graph: Graph, rule: Rule) -> list[Violation]:
    words, allowed = rule.split("except")
    source, verb, forbidden = words[0], words[1], words[2:]
    assert verb in ("imports", "reaches"), rule.text
    found = []
    for item in graph.internal:
        if not _matches(item.module, source) or _matches(item.target, source):
            continue
        if _matches_any(item.target, forbidden) and not _matches_any(item.target, allowed):
            found.append(graph.violation(item, f"imports {item.target}", rule))
        elif verb == "reaches":
            chain = graph.path_to(item.target, forbidden, allowed)
            if chain is not None:
                found.append(graph.violation(
                    item, f"imports {item.target}, which leads to {chain[-1]} ({' -> '.join(chain)})", rule))
    return found


def check_stdlib_only(graph: Graph, rule: Rule) -> list[Violation]:
    packages, exceptions = rule.split("except")
    allowed = {(module.rstrip(":"), name) for module, name in zip(exceptions[::2], exceptions[1::2])}
    found = []
    for item in graph.imports:
        if not item.external or not _matches_any(item.module, packages) or item.target in sys.stdlib_module_names:
            continue
        if (item.module, item.target) in allowed and item.where == "inside a function":
            continue
        found.append(graph.violation(item, f"imports {item.target}, not from the standard library", rule))
    return found


def check_acyclic(graph: Graph, rule: Rule) -> list[Violation]:
    packages = list(rule.words[1:])
    edges: dict[str, dict[str, Import]] = {}
    for item in graph.internal:
        if _matches_any(item.module, packages) and _matches_any(item.target, packages):
            edges.setdefault(item.module, {}).setdefault(item.target, item)
    found = []
    for component in _strongly_connected(edges):
        members = set(component)
        start = min(members)
        # The shortest cycle through ``start`` inside the component, each step with its import line.
        parents: dict[str, Import | None] = {start: None}
        queue = [start]
        closing = None
        for module in queue:
            for target, item in sorted(edges.get(module, {}).items()):
                if target == start:
                    closing = item
                    break
                if target in members and target not in parents:
                    parents[target] = item
                    queue.append(target)
            if closing:
                break
        steps = [closing]
        while parents[steps[-1].module] is not None:
            steps.append(parents[steps[-1].module])
        steps.reverse()
        cycle = " -> ".join(f"{step.module} (line {step.line}{'' if step.where == 'module level' else ', ' + step.where})" for step in steps)
        others = f"; {len(members)} modules in the cycle" if len(members) > len(steps) else ""
        first = steps[0]
        found.append(Violation(graph.relative(first.path), first.line, start, f"is in an import cycle: {cycle} -> {start}{others}", rule.text))
    return found


def _strongly_connected(edges: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, {}))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(edges.get(child, {})))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components


CHECKS = {"layers": check_layers, "forbid": check_forbid, "stdlib-only": check_stdlib_only, "acyclic": check_acyclic}

RULES = parse_rules(__doc__)


def check(root: Path, rules: list[Rule] = RULES) -> list[Violation]:
    """Every violation of ``rules`` in the tree at ``root``, sorted by file and line."""
    words = {word.rstrip(":").partition(".")[0] for rule in rules for word in rule.words[1:]}
    packages = sorted(word for word in words if (root / word / "__init__.py").is_file())
    graph = Graph(root, packages)
    return sorted({violation for rule in rules for violation in CHECKS[rule.kind](graph, rule)})


def report(violations: list[Violation]) -> str:
    return f"{len(violations)} import-rule violation(s) (rules: tests/test_import_rules.py):\n" + "\n".join(
        str(violation) for violation in violations
    )


# --- the tree -----------------------------------------------------------------------------------


def test_the_tree_keeps_the_import_rules() -> None:
    violations = check(REPO)
    assert not violations, report(violations)


# --- each rule fails on a violation -------------------------------------------------------------

#: A tree that keeps every rule: one module per layer entry, render using the allowed bench metrics.
CLEAN_TREE = {
    "experiments/__init__.py": "",
    "experiments/__main__.py": "from .cli import main\n",
    "experiments/paths.py": "",
    "experiments/errors.py": "from .paths import REPO_ROOT\n",
    "experiments/cli/__init__.py": "from ..measure import runner\nfrom ..render import report\nfrom ..errors import Error\n",
    "experiments/dataset/__init__.py": "from ..paths import REPO_ROOT\n",
    "experiments/measure/__init__.py": "",
    "experiments/measure/runner.py": "import server.loop\nfrom ..dataset import results\nfrom ..loadgen import drive\n",
    "experiments/regress/__init__.py": "from ..dataset import results\nfrom ..measure import runner\n",
    "experiments/bench/__init__.py": "",
    "experiments/bench/metrics.py": "import statistics\nfrom ..dataset import results\n",
    "experiments/bench/launch.py": "import subprocess\nfrom ..measure import runner\n",
    "experiments/render/__init__.py": "from ..bench.metrics import catalog\nfrom ..dataset import results\n",
    "experiments/study.py": "from .measure import runner\n",
    "experiments/loadgen/__init__.py": "",
    "experiments/notebook_runner.py": "import nbclient\n",
    "server/__init__.py": "",
    "server/loop.py": "import os\nfrom .connection import serve\n",
    "server/connection.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .services import Services\n",
    "server/services.py": "from typing import Protocol\n",
    "server/cli.py": "import argparse\n\ndef main():\n    import memray\n    from .loop import Server\n",
    "tracemalloc_viewer/__init__.py": "import json\n",
}

#: The files a case writes over the clean tree, and what the report must then say: the file and line,
#: the module and what it imports, and the rule broken.
VIOLATIONS = {
    "a module above the bottom imports a higher layer": (
        {"experiments/dataset/__init__.py": "from ..paths import REPO_ROOT\nfrom ..measure import runner\n"},
        ["experiments/dataset/__init__.py:2: experiments.dataset imports experiments.measure.runner, a layer above its own",
         "rule: layers: a module never imports a layer above its own"]),
    "a module outside cli imports cli": (
        {"experiments/study.py": "from .measure import runner\n\ndef run():\n    from experiments.cli import main\n"},
        ["experiments/study.py:4: experiments.study imports experiments.cli, a layer above its own "
         "(experiments.cli experiments.__main__) (inside a function)", "rule: layers"]),
    "a module in no layer": (
        {"experiments/stray.py": ""},
        ["experiments/stray.py:1: experiments.stray is in no layer", "rule: layers"]),
    "regress imports render inside a function": (
        {"experiments/regress/__init__.py": "from ..dataset import results\n\ndef show():\n    from ..render import report\n"},
        ["experiments/regress/__init__.py:4: experiments.regress imports experiments.render (inside a function)",
         "rule: forbid experiments.regress imports experiments.render"]),
    "render imports measure": (
        {"experiments/render/__init__.py": "from ..dataset import results\nfrom ..measure.runner import run\n"},
        ["experiments/render/__init__.py:2: experiments.render imports experiments.measure.runner",
         "rule: forbid experiments.render reaches server"]),
    "render imports server under TYPE_CHECKING": (
        {"experiments/render/__init__.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import server.loop\n"},
        ["experiments/render/__init__.py:3: experiments.render imports server.loop (under TYPE_CHECKING)",
         "rule: forbid experiments.render reaches server"]),
    "render reaches live code through the bench metrics it may import": (
        {"experiments/bench/metrics.py": "import statistics\nfrom .launch import start\n"},
        ["experiments/render/__init__.py:1: experiments.render imports experiments.bench.metrics, which leads to "
         "experiments.bench.launch (experiments.bench.metrics -> experiments.bench.launch)",
         "rule: forbid experiments.render reaches server"]),
    "dataset imports the server": (
        {"experiments/dataset/__init__.py": "from server.layouts import LAYOUTS\n"},
        ["experiments/dataset/__init__.py:1: experiments.dataset imports server", "rule: forbid experiments.dataset imports server"]),
    "the viewer imports experiments": (
        {"tracemalloc_viewer/__init__.py": "import json\nfrom experiments.paths import REPO_ROOT\n"},
        ["tracemalloc_viewer/__init__.py:2: tracemalloc_viewer imports experiments.paths",
         "rule: forbid tracemalloc_viewer imports server experiments"]),
    "the server imports experiments": (
        {"server/loop.py": "import os\nfrom .connection import serve\nfrom experiments.paths import REPO_ROOT\n"},
        ["server/loop.py:3: server.loop imports experiments.paths", "rule: forbid server imports experiments tracemalloc_viewer"]),
    "the server imports a third-party package": (
        {"server/loop.py": "import os\nimport psutil\nfrom .connection import serve\n"},
        ["server/loop.py:2: server.loop imports psutil, not from the standard library", "rule: stdlib-only server"]),
    "the allowed third-party import at module level": (
        {"server/cli.py": "import argparse\nimport memray\n"},
        ["server/cli.py:2: server.cli imports memray, not from the standard library", "rule: stdlib-only server"]),
    "a cycle through a function-local import": (
        {"server/services.py": "from typing import Protocol\n\ndef late():\n    from . import loop\n"},
        ["server/connection.py:3: server.connection is in an import cycle: server.connection (line 3, under TYPE_CHECKING) "
         "-> server.services (line 4, inside a function) -> server.loop (line 2) -> server.connection",
         "rule: acyclic server experiments tracemalloc_viewer"]),
    "a package __init__ imported back by its submodule": (
        {"experiments/cli/__init__.py": "from . import bench\nHELPER = 1\n",
         "experiments/cli/bench.py": "from . import HELPER\n"},
        ["experiments/cli/__init__.py:1: experiments.cli is in an import cycle: experiments.cli (line 1) -> "
         "experiments.cli.bench (line 1) -> experiments.cli", "rule: acyclic"]),
}


def _write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_clean_tree_keeps_every_rule(tmp_path: Path) -> None:
    _write_tree(tmp_path, CLEAN_TREE)
    assert check(tmp_path) == [], report(check(tmp_path))


@pytest.mark.parametrize("case", list(VIOLATIONS))
def test_each_rule_reports_its_violation(tmp_path: Path, case: str) -> None:
    changed, expected = VIOLATIONS[case]
    _write_tree(tmp_path, dict(CLEAN_TREE, **changed))
    violations = check(tmp_path)
    found = [violation for violation in violations if all(part in str(violation) for part in expected)]
    assert found, f"{case}: expected a violation saying {expected}, got:\n{report(violations)}"


def test_the_report_lists_every_violation_at_once(tmp_path: Path) -> None:
    """The violations above in one tree (the first case of each file): the report names them all."""
    files = dict(CLEAN_TREE)
    reported_at = set()
    for changed, expected in VIOLATIONS.values():
        if not any(name in files and files[name] != CLEAN_TREE.get(name) for name in changed):
            files.update(changed)
            reported_at.add(expected[0].split(": ")[0])
    _write_tree(tmp_path, files)
    violations = check(tmp_path)
    message = report(violations)
    assert message.startswith(f"{len(violations)} import-rule violation(s)"), message
    assert len(violations) >= len(reported_at) > 5, message
    for place in reported_at:
        assert place + ":" in message, message
