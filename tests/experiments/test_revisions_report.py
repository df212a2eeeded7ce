"""The committed Lwan report (reports/lwan/) is what its own revisions.json renders to: the tables
written again from the committed file match the committed index.md, and a fresh clone, which has no
run folders, still gets every table (the curves are left out, and the report says so)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from experiments.render.revisions_md import render_revisions
from tests.fixtures import REPO

LWAN = REPO / "reports" / "lwan"


def _section(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(title)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def test_the_committed_lwan_report_is_its_revisions_json_rendered(tmp_path: Path) -> None:
    document = json.loads((LWAN / "revisions.json").read_text())
    for revision in document["revisions"]:  # as in a fresh clone: run folders are not committed
        for run in revision["runs"].values():
            run["run"] = str(tmp_path / "gone" / Path(run["run"]).name)
    (tmp_path / "revisions.json").write_text(json.dumps(document))
    for bisection in LWAN.glob("bisect-*.json"):
        shutil.copy(bisection, tmp_path / bisection.name)
    render_revisions(tmp_path, anatomy_path=REPO / "reports" / "latest" / "anatomy.json")
    rendered = (tmp_path / "index.md").read_text()
    committed = (LWAN / "index.md").read_text()
    for title in ("## Per revision", "## Reduction from the first revision", "## Beside memdiet's layouts",
                  "## Struct layouts", "## Bisections"):
        assert _section(rendered, title) == _section(committed, title), title
    assert "run folders named in revisions.json are gone" in rendered and not list(tmp_path.glob("*.png"))
    # The post's commits are all there, each built, with its slot from DWARF and its idle RSS.
    shorts = [revision["short"] for revision in document["revisions"]]
    assert shorts[:6] == ["58c4bd8b", "ebda2aaf", "892017e6", "c9117ee7", "f9f5ce00", "e871417e"]
    assert all(revision["build"]["status"] == "built" for revision in document["revisions"])
    assert all(revision["runs"]["rss"]["summary"]["idle_rss_bytes"] for revision in document["revisions"])
