"""A program's history measured by memdiet: revisions built in worktrees (a cache keyed by commit),
struct layouts read from their DWARF, each run through the scenario by the runner, revisions.json,
and the bisection of a figure across commits (``memdiet revisions``, ``memdiet bisect``).

Modules: :mod:`.source` (git: the repository or bundle, ranges, worktrees), :mod:`.builds` (the build
cache and its logs), :mod:`.dwarf` (struct layouts from debug information), :mod:`.runs` (one revision
through :func:`experiments.measure.runner.run_once`, its config templates rendered), :mod:`.study`
(revisions.json), :mod:`.bisect`, :mod:`.lwan` (the flagship study's recipe: Lwan's own history).
"""
