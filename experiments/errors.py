"""The toolkit's one error root, and the exit codes of ``memdiet``.

Rules: every error the toolkit raises on purpose derives from :class:`ExperimentError`; its message
is one line that names the file, run or figure at fault, with no program name and no traceback. The
class says what kind of failure it is, and so the exit code: :class:`BadInput` (2) when what the user
gave (arguments, run folders, a baseline file) cannot be used, :class:`ExperimentError` itself (1)
when the work a command started did not complete (a run of the server). ``memdiet``'s ``main()``
(:mod:`experiments.cli`) turns either into its line on stderr and its exit code, in one place; code
that catches them elsewhere (the matrix records a failed run and goes on) keeps the message.

An interrupt (SIGTERM, Ctrl-C) is not an error: :class:`experiments.measure.runner.Interrupted` is a
BaseException, so no ``except Exception`` swallows it, and it exits with :data:`EXIT_INTERRUPTED`.

This module imports nothing from the toolkit: any layer may raise these.
"""

from __future__ import annotations

EXIT_OK = 0
#: A run, a trial or a regression check failed (the command did its job and the answer is "no").
EXIT_FAILED = 1
#: Bad arguments or unusable input files: nothing was measured.
EXIT_BAD_INPUT = 2
#: Stopped by SIGINT or SIGTERM (128 + SIGINT), after stopping what the command started.
EXIT_INTERRUPTED = 130


class ExperimentError(Exception):
    """Work a command started did not complete; ``memdiet <command> failed: <message>``, exit 1."""

    exit_code = EXIT_FAILED

    def line(self, program: str) -> str:
        """The one line stderr shows for this error; ``program`` is ``memdiet <command>``."""
        return f"{program} failed: {self}"


class BadInput(ExperimentError):
    """What the user gave cannot be used (a run folder, a baseline, a combination of options);
    ``memdiet <command>: error: <message>``, exit 2."""

    exit_code = EXIT_BAD_INPUT

    def line(self, program: str) -> str:
        return f"{program}: error: {self}"
