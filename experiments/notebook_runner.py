"""Execute the notebooks headless and keep the executed copies apart from the committed ones.

    python -m experiments.notebook_runner NOTEBOOK_DIR OUT_DIR [--timeout SECONDS]

Every ``*.ipynb`` in NOTEBOOK_DIR (name order) runs top to bottom with nbclient, in its own kernel,
with NOTEBOOK_DIR as working directory; the copy with its outputs goes to ``OUT_DIR/<name>.ipynb``
(also when a cell fails, up to that cell, to show what went wrong). The committed notebooks are never
written. Exit 0 when all ran; 1 after the first failure, with one line naming the notebook, the cell
and the error; 2 on bad arguments.

The kernel is always this interpreter (``sys.executable -m ipykernel_launcher``), built in memory
from ipykernel's own kernel spec: nothing is installed, and a ``python3`` kernel the user installed
for another Python cannot be picked up by mistake.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Sequence

#: Seconds one cell may run. The longest cells run a quick matrix (about 40 s on 2 cores) when no
#: results exist, or the sweep of notebook 02 (about 20 s); the bound leaves room for a slow CI.
DEFAULT_CELL_TIMEOUT_S = 300.0
KERNEL_NAME = "memdiet"
#: Seconds the kernel may take to start and answer (a cold start imports IPython, ~2 s).
STARTUP_TIMEOUT_S = 120


class NotebookFailed(Exception):
    """A notebook did not run to the end; ``str()`` names the notebook, the cell and the error."""

    def __init__(self, notebook: Path, cell_number: int | None, first_line: str, error: str) -> None:
        where = f"cell {cell_number}" + (f" ({first_line!r})" if first_line else "") if cell_number else "setup"
        super().__init__(f"{notebook}: {where}: {error}")
        self.notebook = notebook
        self.cell_number = cell_number
        self.error = error


def _kernel_manager_class() -> type:
    """A jupyter_client kernel manager that starts this interpreter's ipykernel, whatever kernel name
    the notebook asks for."""
    from ipykernel.kernelspec import get_kernel_dict
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpec

    class ThisInterpreterKernelManager(AsyncKernelManager):
        @property
        def kernel_spec(self) -> KernelSpec:
            if self._kernel_spec is None:
                self._kernel_spec = KernelSpec(resource_dir="", **get_kernel_dict())
            return self._kernel_spec

    return ThisInterpreterKernelManager


def _error_text(error: BaseException) -> str:
    """The kernel's exception name and value for a failed cell, else the runner's own error."""
    from nbclient.exceptions import CellExecutionError

    if isinstance(error, CellExecutionError):
        return f"{error.ename}: {error.evalue}"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def execute_notebook(path: Path, out_dir: Path, cell_timeout_s: float = DEFAULT_CELL_TIMEOUT_S) -> Path:
    """Run the notebook ``path`` and write the executed copy to ``out_dir``; return the copy's path.
    Raises :class:`NotebookFailed` (after writing the copy) if a cell raises, times out or the
    kernel dies."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    current: dict[str, Any] = {"index": None}

    def on_cell_execute(cell: Any, cell_index: int) -> None:
        current["index"] = cell_index

    client = NotebookClient(
        notebook,
        timeout=cell_timeout_s,
        startup_timeout=STARTUP_TIMEOUT_S,
        kernel_name=KERNEL_NAME,
        kernel_manager_class=_kernel_manager_class(),
        resources={"metadata": {"path": str(path.parent.resolve())}},
        on_cell_execute=on_cell_execute,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / path.name
    failure: NotebookFailed | None = None
    try:
        client.execute()
    except Exception as error:  # a cell's error, a cell timeout, a dead kernel: all end the notebook
        index = current["index"]
        first_line = notebook.cells[index].source.strip().split("\n", 1)[0][:60] if index is not None else ""
        failure = NotebookFailed(path, index + 1 if index is not None else None, first_line, _error_text(error))
    nbformat.write(notebook, target)
    if failure is not None:
        raise failure
    return target


def notebooks_in(directory: Path) -> list[Path]:
    """The notebooks of ``directory`` in name order (Jupyter's checkpoints left out)."""
    return sorted(p for p in directory.glob("*.ipynb") if p.is_file())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.notebook_runner",
                                     description="Execute every notebook of a folder; write the executed copies elsewhere.")
    parser.add_argument("notebook_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--timeout", type=float, default=DEFAULT_CELL_TIMEOUT_S,
                        help=f"seconds one cell may run (default {DEFAULT_CELL_TIMEOUT_S:.0f})")
    args = parser.parse_args(argv)
    notebooks = notebooks_in(args.notebook_dir)
    if not notebooks:
        print(f"notebook_runner: error: no .ipynb files in {args.notebook_dir}", file=sys.stderr)
        return 2
    if args.out_dir.resolve() == args.notebook_dir.resolve():
        print("notebook_runner: error: OUT_DIR must differ from NOTEBOOK_DIR (committed notebooks carry no outputs)",
              file=sys.stderr)
        return 2
    for path in notebooks:
        started = time.monotonic()
        try:
            target = execute_notebook(path, args.out_dir, args.timeout)
        except NotebookFailed as failure:
            print(f"FAILED {failure}", file=sys.stderr)
            print(f"  executed copy up to the failure: {args.out_dir / path.name}", file=sys.stderr)
            return 1
        print(f"ok {path.name} in {time.monotonic() - started:.1f} s -> {target}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
