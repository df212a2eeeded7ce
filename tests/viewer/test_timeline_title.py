"""The timeline's title fits in the image (issue 16, minor): a long title wraps or shrinks instead of
running off the figure's edges."""

from __future__ import annotations

import pytest

from tracemalloc_viewer.model import Frame, Sample, Series, Site
from tracemalloc_viewer.outputs import timeline


def _series(command: str) -> Series:
    site = (Frame("/srv/app/worker.py", 12, "Worker.run"),)
    samples = [Sample(float(i), 1000 * (i + 1), (Site(site, 1000 * (i + 1), i + 1),)) for i in range(5)]
    return Series(samples, command=command, source="memdiet-run:heap.csv", time_source="capture")


@pytest.mark.parametrize("title", [
    None,  # the default title: the source and the command line
    "memdiet view timeline reports/runs/20261130T053256Z-packed-tracemalloc-with-a-very-long-run-folder-name-indeed "
    "on a long scenario with many phases --top 10 --by lineno",
])
def test_the_title_lies_inside_the_figure(tmp_path, title):
    pytest.importorskip("matplotlib")
    command = ("/work/checkouts/a-rather-long-path/.venv/bin/python -m server --layout packed --max-conns 65536 "
               "--trace tracemalloc --trace-dir /tmp/memdiet-runs/20261130T053256Z-packed-tracemalloc-long-run-name/raw "
               "--trace-hz 50 --detail-interval 2.0")
    figure = timeline.figure(_series(command), title=title)
    try:
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        box = figure.axes[0].title.get_window_extent(renderer)
        whole = figure.bbox
        assert whole.x0 <= box.x0 and box.x1 <= whole.x1 and whole.y0 <= box.y0 and box.y1 <= whole.y1, (box, whole)
        # All of it: wrapped, not cut.
        assert figure.axes[0].title.get_text().split() == (title or f"memdiet-run:heap.csv: {command}").split()
    finally:
        import matplotlib.pyplot as plt
        plt.close(figure)
