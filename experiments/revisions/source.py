"""A program's git history as ``memdiet revisions`` and ``memdiet bisect`` read it: the repository (a
path or a bundle), which commits a list or range names, each commit's date and subject line, and
the commits between a good and a bad one.

Rules: the source is never written to. A bundle, or a repository that is not this cache's, is cloned
once into the cache folder (``<cache>/repo``, keyed by the source's absolute path, so a second source
gets a clone of its own) and fetched again when the source is newer; every worktree is made from
that clone. A revision is anything ``git rev-parse`` accepts (a hash, a tag, ``HEAD``); a range is
``A..B`` (the commits after A up to B, oldest first, along first parents, as ``git bisect`` walks a
merge-heavy history) with an optional ``:STEP`` (every STEP-th, B always kept). Git's own errors are
one line in a :class:`BadInput`.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from ..errors import BadInput

#: Seconds any one git command may take (a clone of Lwan's bundle takes ~2 s here).
GIT_TIMEOUT_S = 600.0


class Commit:
    """One commit: full ``sha``, ``short`` (8 hex digits), author ``date`` (ISO 8601), ``subject``."""

    __slots__ = ("sha", "short", "date", "subject")

    def __init__(self, sha: str, date: str, subject: str) -> None:
        self.sha, self.short, self.date, self.subject = sha, sha[:8], date, subject

    def as_dict(self) -> dict[str, str]:
        return {"commit": self.sha, "short": self.short, "date": self.date, "subject": self.subject}


def git(repo: Path, *args: str, timeout_s: float = GIT_TIMEOUT_S) -> str:
    """``git -C repo ARGS``'s stdout; a failure is a BadInput naming the command and git's last line."""
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=timeout_s)
    except FileNotFoundError:
        raise BadInput("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise BadInput(f"git {' '.join(args)} took more than {timeout_s:.0f} s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise BadInput(f"git {' '.join(args[:3])}: {last}")
    return done.stdout


class Source:
    """A repository to read revisions from, cloned into ``cache_dir`` (see the module's rules)."""

    __slots__ = ("origin", "cache_dir", "repo")

    def __init__(self, origin: Path, cache_dir: Path) -> None:
        origin = origin.expanduser().resolve()
        if not origin.exists():
            raise BadInput(f"--repo {origin}: no such repository or bundle")
        self.origin = origin
        key = hashlib.sha256(str(origin).encode()).hexdigest()[:12]
        self.cache_dir = cache_dir.resolve() / f"{origin.name}-{key}"
        self.repo = self.cache_dir / "repo"

    def open(self) -> "Source":
        """Clone the source (once), or fetch what it gained since; returns self."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        if not (self.repo / ".git").exists():
            git(self.cache_dir, "clone", "--quiet", "--no-checkout", str(self.origin), str(self.repo))
        else:
            git(self.repo, "fetch", "--quiet", "--tags", str(self.origin), "+refs/heads/*:refs/remotes/origin/*")
        return self

    def commit(self, revision: str) -> Commit:
        """The commit ``revision`` names (BadInput when none)."""
        try:
            out = git(self.repo, "log", "-1", "--format=%H%x00%aI%x00%s", f"{revision}^{{commit}}", "--")
        except BadInput:
            raise BadInput(f"revision {revision!r} is not a commit of {self.origin}") from None
        sha, date, subject = out.rstrip("\n").split("\x00", 2)
        return Commit(sha, date, subject)

    def between(self, good: str, bad: str) -> list[Commit]:
        """The commits after ``good`` up to ``bad``, oldest first, along first parents."""
        good_sha, bad_sha = self.commit(good).sha, self.commit(bad).sha
        out = git(self.repo, "log", "--first-parent", "--reverse", "--format=%H%x00%aI%x00%s", f"{good_sha}..{bad_sha}")
        commits = [Commit(*line.split("\x00", 2)) for line in out.splitlines() if line]
        if not commits or commits[-1].sha != bad_sha:
            raise BadInput(f"{bad} does not follow {good} along first parents: nothing between them to walk")
        return commits

    def resolve(self, specs: list[str]) -> list[Commit]:
        """The commits a list of revisions and ranges (``A..B[:STEP]``) names, in the order given,
        each once."""
        commits: list[Commit] = []
        for spec in specs:
            if ".." in spec:
                span, _colon, step_text = spec.partition(":")
                start, _dots, end = span.partition("..")
                try:
                    step = int(step_text) if step_text else 1
                except ValueError:
                    step = 0
                if step < 1:
                    raise BadInput(f"revision range {spec!r}: the step after ':' must be a whole number >= 1")
                inside = self.between(start, end)
                picked = inside[step - 1::step]
                if picked[-1:] != inside[-1:]:
                    picked.append(inside[-1])
                commits.extend(picked)
            else:
                commits.append(self.commit(spec))
        seen: set[str] = set()
        return [c for c in commits if not (c.sha in seen or seen.add(c.sha))]

    def worktree(self, commit: Commit, path: Path) -> None:
        """A fresh detached worktree of ``commit`` at ``path`` (one made before is removed first)."""
        if path.exists():
            git(self.repo, "worktree", "remove", "--force", str(path))
        git(self.repo, "worktree", "prune")
        git(self.repo, "worktree", "add", "--quiet", "--detach", str(path), commit.sha)
