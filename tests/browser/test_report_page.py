"""The interactive report (index.html) in a real browser: headless Chromium opens the page from disk.

Checked as a reader would meet it: no error in the browser's console; every run's curve drawn with
all its traces; hovering a band shows its site; dragging across a curve turns the sites table to that
window, and a click on a column title sorts it; a legend click hides a site; the compare view lists
sites with signed differences that are, row for row, those of ``memdiet view diff`` on the same two
run folders. Two pages: the quick matrix's (built by ``memdiet matrix --quick`` like ``make experiment
QUICK=1``), and the committed ``reports/latest/index.html``, whose screenshot README shows (taken into
reports/latest/ under ``MEMDIET_UPDATE_SCREENSHOTS=1``, ``make screenshots``; else, like the quick
page's, to the test's tmp folder). Each test prints the page's size and
the time it took to open. Last, without a browser, what the page is made of for made-up runs: runs of
two probes are never compared, and an RSS ledger in result.json is drawn.
"""

from __future__ import annotations

import html as html_text
import json
import os
import re
import time
from pathlib import Path
from typing import Any


from experiments.dataset.results import RESULT_FILE, find_runs, load_run, write_json
from experiments.measure.matrix import read_matrix
from experiments.render.html_report import _ledger, build_html_report
from tests.browser.conftest import console_errors, open_page, page_data
from tests.conftest import memdiet
from tests.fixtures import REPO
from tests.fixtures.fake_runs import write_fake_matrix
from tracemalloc_viewer.outputs.html import PAGE_LIMIT_BYTES

LATEST = REPO / "reports" / "latest"
#: The screenshot README shows (and one of the compare view beside it).
README_SCREENSHOT = "index-html.png"
#: A row of ``view diff --bytes``: rank, size diff, size, blocks diff, blocks, site.
_DIFF_ROW = re.compile(r"^\s*\d+\s+([+-]?\d+) B\s+(\d+) B\s+([+-]?[\d,]+)\s+([\d,]+)\s+(.*)$")


#: The most a page may take to draw its first screen here, under load (measured: 3-7 s cold).
OPEN_LIMIT_MS = 15_000


def _report(page: Path, state: dict[str, Any]) -> None:
    print(f"\n{page}: {page.stat().st_size:,} B ({page.stat().st_size / 2 ** 20:.2f} MiB); figures on screen drawn "
          f"{state['openMs'] / 1000:.2f} s after navigation, all figures {state['allDrawnMs'] / 1000:.2f} s")


# --- what every page must do ------------------------------------------------------------------------------
def assert_every_curve_drawn(driver, data: dict) -> None:
    drawn = driver.execute_script("""
        return arguments[0].map(div => {
          const gd = document.getElementById(div);
          return {traces: gd.data ? gd.data.length : 0, svg: gd.querySelectorAll('.scatterlayer .trace').length,
                  filled: Array.from(gd.querySelectorAll('.scatterlayer .trace .fills path'))
                               .filter(path => (path.getAttribute('d') || '').length > 10).length};
        });""", [run["div"] for run in data["runs"]])
    assert len(drawn) == len(data["runs"]) > 0
    for run, figure in zip(data["runs"], drawn):
        expected = len(run["figure"]["data"])
        bands = sum(1 for trace in run["figure"]["data"] if trace.get("stackgroup"))
        assert expected > 0 and figure["traces"] == expected and figure["svg"] == expected, (run["name"], figure)
        assert figure["filled"] >= min(bands, 1), f"{run['name']}: no band drawn as an area"
        if run["moments"]:  # a run with allocation sites stacks them
            assert bands >= 2, run["name"]


def assert_every_figure_drawn(driver, data: dict) -> None:
    """The sections' plotly figures (layouts, anatomy, ledger) are drawn with all their traces."""
    figures = [section for section in data["sections"] if section["figure"]]
    drawn = driver.execute_script("return arguments[0].map(div => (document.getElementById(div).data || []).length)",
                                  [section["div"] for section in figures])
    assert drawn == [len(section["figure"]["data"]) for section in figures] and all(drawn)


def hover_a_band(driver, run: dict) -> tuple[str, str]:
    """Move the mouse onto the run's largest (bottom) band, just under its top edge, where it is
    thickest in the middle half of the run; return the site the band's hover names and the hover
    label's text."""
    from selenium.webdriver.common.action_chains import ActionChains

    element = driver.find_element("id", run["div"])
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    time.sleep(0.2)
    spot = driver.execute_script("""
        const gd = document.getElementById(arguments[0]), L = gd._fullLayout;
        const band = gd.data[0];
        const first = Math.floor(band.y.length / 4), last = Math.max(first, Math.ceil(band.y.length * 3 / 4) - 1);
        // Bands of zero bytes at a point share the bottom band's top edge there, and the hover may
        // name one of them: look only at points where every band stacked on it has bytes.
        const stacked = gd.data.filter(t => t !== band && t.stackgroup && t.stackgroup === band.stackgroup);
        const clear = i => stacked.every(t => t.y[i] > 0);
        let best = -1;  // the thickest such point away from the curve's ends, where lines rise steeply
        for (let i = first; i <= last; i++) if (clear(i) && (best < 0 || band.y[i] > band.y[best])) best = i;
        if (best < 0) { best = first; for (let i = first; i <= last; i++) if (band.y[i] > band.y[best]) best = i; }
        const rect = gd.getBoundingClientRect();
        // Just inside the band's top edge, where its point is (the bottom band's top is its own size).
        return {x: L._size.l + L.xaxis.l2p(band.x[best]), y: L._size.t + L.yaxis.l2p(band.y[best]) + 3,
                width: rect.width, height: rect.height, template: band.hovertemplate};""", run["div"])
    ActionChains(driver).move_to_element_with_offset(
        element, int(spot["x"] - spot["width"] / 2), int(spot["y"] - spot["height"] / 2)).perform()
    text = ""
    for _attempt in range(40):
        text = driver.execute_script("return Array.from(document.getElementById(arguments[0])"
                                     ".querySelectorAll('.hoverlayer .hovertext')).map(n => n.textContent).join('|')",
                                     run["div"])
        if text:
            break
        time.sleep(0.05)
    site = html_text.unescape(re.match(r"<b>(.*?)</b>", spot["template"]).group(1))
    return site, text


def compare_rows(driver) -> list[dict[str, str]]:
    return driver.execute_script("""
        return Array.from(document.querySelectorAll('#cmp-table tbody tr')).map(tr => Object.assign(
          {sizeDiffText: tr.cells[1].textContent}, tr.dataset));""")


def choose(driver, side: str, run_name: str, moment_start: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", f"cmp-{side}-run")).select_by_visible_text(run_name)
    moments = Select(driver.find_element("id", f"cmp-{side}-moment"))
    [label] = [option.text for option in moments.options if option.text.startswith(moment_start)]
    moments.select_by_visible_text(label)


def view_diff(old: Path, new: Path) -> list[tuple[str, int, int, int, int]]:
    """(site, size diff, size, blocks diff, blocks) per row of ``memdiet view diff OLD NEW --bytes``."""
    result = memdiet("view", "diff", str(old), str(new), "--bytes", "--limit", "0")
    assert result.returncode == 0, result.stderr
    return [(match[5], int(match[1]), int(match[2]), int(match[3].replace(",", "")), int(match[4].replace(",", "")))
            for line in result.stdout.splitlines() if (match := _DIFF_ROW.match(line))]


def assert_compare_matches_view_diff(driver, data: dict, old: Path, new: Path, old_name: str, new_name: str) -> None:
    choose(driver, "a", old_name, "peak")
    choose(driver, "b", new_name, "peak")
    rows = compare_rows(driver)
    expected = view_diff(old, new)
    assert rows, driver.find_element("id", "cmp-caption").text
    shown = [(row["site"], int(row["sizeDiff"]), int(row["size"]), int(row["countDiff"]), int(row["count"]))
             for row in rows]
    assert shown == expected[:len(shown)], "the compare view's rows are view diff's, in its order"
    assert any(size_diff for _site, size_diff, *_ in shown), "some site changed"
    for row in rows:  # signed: growth +, shrinkage -, no change without a sign
        size_diff = int(row["sizeDiff"])
        assert row["sizeDiffText"].startswith("+" if size_diff > 0 else "-" if size_diff < 0 else "0"), row


def capture(driver, element_id: str | None, path: Path) -> Path:
    if element_id is None:
        driver.execute_script("window.scrollTo(0, 0)")
        time.sleep(0.2)
        driver.save_screenshot(str(path))
    else:
        element = driver.find_element("id", element_id)
        driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", element)
        time.sleep(0.3)
        element.screenshot(str(path))
    assert path.stat().st_size > 10_000, f"{path}: an empty screenshot?"
    return path


def _open_checked(browser: Any, page: Path) -> dict[str, Any]:
    """Open a report page and check what every page must do: under the size limit, drawn in time,
    no console error, every run's curve with its traces; return the page's data."""
    assert page.stat().st_size < PAGE_LIMIT_BYTES
    state = open_page(browser, page)
    _report(page, state)
    assert state["openMs"] < OPEN_LIMIT_MS
    assert console_errors(state) == []
    data = page_data(browser)
    assert_every_curve_drawn(browser, data)
    return data


# --- the quick matrix's page -------------------------------------------------------------------------------
def test_quick_report_page_in_a_real_browser(quick_matrix, browser, tmp_path):
    page = quick_matrix.latest / "index.html"
    assert page.is_file(), "memdiet matrix writes index.html beside index.md"
    data = _open_checked(browser, page)
    runs = {run["name"]: run for run in data["runs"]}
    assert set(runs) == {f"{layout} · {probe} probe" for layout in ("naive", "split", "bitfields", "nofd", "packed")
                         for probe in ("tracemalloc", "rss")}
    titles = [section["title"] for section in data["sections"]]
    ledgers = any(_ledger(load_run(path).document) for path in quick_matrix.run_dirs())
    assert titles == ["Layouts compared", "Per-slot anatomy"] + ["RSS ledger"] * ledgers + ["Runs"]
    assert_every_figure_drawn(browser, data)

    # Hovering a band shows its site, the time, the phase and the bytes.
    site, text = hover_a_band(browser, runs["nofd · tracemalloc probe"])
    assert site in text and re.search(r"\d\.\d{3} s · ", text) and re.search(r"[\d,]+ B", text), (site, text)

    # Dragging across the curve over idle-held zooms to that window: the sites table follows it.
    run = runs["nofd · tracemalloc probe"]
    [(_name, start, end)] = [phase for phase in run["phases"] if phase[0] == "idle-held"]
    window = drag_across(browser, run["div"], start, end)
    caption = browser.find_element("id", "sites-caption").text
    assert caption.startswith("nofd · tracemalloc probe at ") and "window" in caption, caption
    shown_at = float(re.search(r" at (\d+\.\d+) s", caption).group(1))
    assert window[0] - 0.01 <= shown_at <= window[1] + 0.01 or "holds no sample" in caption, (window, caption)
    # A click on "blocks" sorts the table by block count, largest first.
    browser.find_element("css selector", "#sites-table th[data-key=count]").click()
    counts = browser.execute_script("return Array.from(document.querySelectorAll('#sites-table tbody tr'))"
                                    ".map(tr => Number(tr.dataset.count))")
    assert len(counts) > 3 and counts == sorted(counts, reverse=True)

    # A legend click hides a site (plotly's own legend).
    hidden = legend_click_hides(browser, run["div"])
    assert len(hidden) == 1 and run["figure"]["data"][hidden[0]].get("stackgroup"), hidden

    # Compare two layouts' peaks: the rows are view diff's.
    by_name = {(path.name.split("-", 1)[1]): path for path in quick_matrix.run_dirs()}
    assert_compare_matches_view_diff(browser, data, by_name["naive-tracemalloc"], by_name["packed-tracemalloc"],
                                     "naive · tracemalloc probe", "packed · tracemalloc probe")
    capture(browser, "compare", tmp_path / "quick-compare.png")
    # Two windows of one run: the end of idle-empty against the end of idle-held.
    choose(browser, "a", "nofd · tracemalloc probe", "end of idle-empty")
    choose(browser, "b", "nofd · tracemalloc probe", "end of idle-held")
    rows = compare_rows(browser)
    assert rows and any(int(row["sizeDiff"]) > 0 for row in rows), "holding C connections grows some site"
    capture(browser, None, tmp_path / "quick-top.png")
    assert console_errors({"console": browser.get_log("browser"), "errors": browser.execute_script(
        "return window.memdietPage.errors")}) == []


def legend_click_hides(driver, div: str) -> list[int]:
    """Click the first legend entry; return the indices of the traces then hidden."""
    from selenium.webdriver.common.action_chains import ActionChains

    element = driver.find_element("id", div)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    toggle = element.find_element("css selector", ".legend .traces .legendtoggle")
    ActionChains(driver).move_to_element(toggle).click().perform()
    hidden: list[int] = []
    for _attempt in range(40):  # plotly waits out a double-click first
        hidden = driver.execute_script("return document.getElementById(arguments[0]).data"
                                       ".map((t, i) => t.visible === 'legendonly' ? i : -1).filter(i => i >= 0)", div)
        if hidden:
            break
        time.sleep(0.05)
    return hidden


def drag_across(driver, div: str, start_s: float, end_s: float) -> tuple[float, float]:
    """Drag the mouse across the curve from ``start_s`` to ``end_s`` (plotly zooms to that window);
    return the x range the plot then shows."""
    from selenium.webdriver.common.action_chains import ActionChains

    element = driver.find_element("id", div)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    time.sleep(0.2)
    spot = driver.execute_script("""
        const gd = document.getElementById(arguments[0]), L = gd._fullLayout, rect = gd.getBoundingClientRect();
        return {x0: L._size.l + L.xaxis.l2p(arguments[1]), x1: L._size.l + L.xaxis.l2p(arguments[2]),
                y: L._size.t + L._size.h * 0.4, width: rect.width, height: rect.height};""", div, start_s, end_s)
    left, top = -spot["width"] / 2, -spot["height"] / 2
    ActionChains(driver).move_to_element_with_offset(element, int(left + spot["x0"]), int(top + spot["y"])) \
        .click_and_hold().move_by_offset(int((spot["x1"] - spot["x0"]) / 2), 2) \
        .move_by_offset(int((spot["x1"] - spot["x0"]) / 2), 0).release().perform()
    for _attempt in range(40):
        shown = driver.execute_script("return document.getElementById(arguments[0])._fullLayout.xaxis.range", div)
        if abs(shown[0] - start_s) < 0.5 and abs(shown[1] - end_s) < 0.5:
            return shown[0], shown[1]
        time.sleep(0.05)
    raise AssertionError(f"the drag did not zoom to {start_s}-{end_s} s (shows {shown})")


# --- the committed report's page -----------------------------------------------------------------------------
def test_committed_report_page_in_a_real_browser(browser, tmp_path):
    page = LATEST / "index.html"
    # README's screenshots are rewritten only when asked (make screenshots): a test run leaves the
    # committed files as they are, and `git status` clean.
    shots = LATEST if os.environ.get("MEMDIET_UPDATE_SCREENSHOTS") == "1" else tmp_path
    assert page.is_file(), "reports/latest/index.html is committed beside index.md (memdiet report writes it)"
    data = _open_checked(browser, page)
    assert_every_figure_drawn(browser, data)
    # The page was made from the committed report's runs: its Runs table names matrix.json's.
    matrix = read_matrix(LATEST / "matrix.json")
    named = set(re.findall(r"`(\.\./runs/[^`]+)`", json.dumps([section["table"] for section in data["sections"]
                                                                   if section["title"] == "Runs"])))
    assert named == set(json.loads((LATEST / "matrix.json").read_text())["runs"])
    assert str(REPO) not in page.read_text(encoding="utf-8"), "the committed page names no folder of this machine"
    # README's picture: a memray curve on the heap's own scale, a band hovered (its stack shown).
    runs_by_name = {run["name"]: (number, run) for number, run in enumerate(data["runs"])}
    number, shown = runs_by_name["nofd · memray probe"]
    heap_scale = browser.find_elements("css selector", f"#{shown['div']} .updatemenu-button")
    assert [button.text for button in heap_scale] == ["y: everything", "y: the heap"]
    heap_scale[1].click()
    time.sleep(0.5)
    site, text = hover_a_band(browser, shown)
    assert site in text and "called from" in text, text
    browser.find_element("id", f"run-{number}").screenshot(str(shots / README_SCREENSHOT))
    capture(browser, "compare", shots / "index-html-compare.png")
    if matrix.missing_runs():  # a fresh clone: run folders are not committed
        return
    runs = {path.name.split("-", 1)[1]: path for path in matrix.run_paths}
    # (nofd and packed: naive's dumps take seconds to read for view diff)
    assert_compare_matches_view_diff(browser, data, runs["nofd-tracemalloc"], runs["packed-tracemalloc"],
                                     "nofd · tracemalloc probe", "packed · tracemalloc probe")


# --- the page's data, from made-up runs (no browser) ------------------------------------------------------------
def test_report_page_data_groups_runs_by_probe_and_draws_a_ledger(tmp_path):
    """Runs are compared within one probe only; a result.json's RSS ledger is drawn, from the rss run."""
    paths = write_fake_matrix(tmp_path / "runs", ("naive", "packed"), probes=("rss", "tracemalloc", "memray"))

    def moment(parts: dict[str, int]) -> dict:  # one ledger as the runner writes it
        return {"rss_bytes": sum(parts.values()),
                "parts": [{"part": name, "label": name, "bytes": size, "source": "made up"} for name, size in parts.items()]}

    ledger = {"phases": {"idle-empty": moment({"interpreter": 12_000_000, "table": 4_000_000}),
                         "idle-held": moment({"interpreter": 12_000_000, "table": 4_000_000, "connections": 300_000})}}
    for path in paths:
        document = json.loads((path / RESULT_FILE).read_text())
        document["rss_ledger"] = ledger
        write_json(path / RESULT_FILE, document)
    runs = [load_run(path) for path in find_runs(tmp_path / "runs")]
    page = build_html_report(runs, tmp_path / "anatomy.json", out_dir=tmp_path / "report")
    data = page.data
    assert [run["name"] for run in data["runs"]] == [f"{layout} · {probe} probe" for layout in ("naive", "packed")
                                                     for probe in ("tracemalloc", "memray", "rss")]
    groups = [run["group"] for run in data["runs"]]
    for key in data["pairs"]:
        a, b = (int(side.split(".")[0]) for side in key.split(">"))
        assert groups[a] == groups[b], f"{key}: runs of two probes compared"
    assert "0.0>3.0" in data["pairs"] and "1.0>4.0" in data["pairs"]  # naive -> packed, per probe
    assert not any(run["moments"] for run in data["runs"] if run["group"] == "rss"), "an rss curve has no sites"
    sections = {section["title"]: section for section in data["sections"]}
    assert list(sections) == ["Layouts compared", "Per-slot anatomy", "RSS ledger", "Runs"]
    bars = sections["RSS ledger"]["figure"]["data"]
    assert [bar["name"] for bar in bars] == ["interpreter", "table", "connections"]
    assert bars[0]["y"] == ["naive · rss · idle-empty", "naive · rss · idle-held",
                            "packed · rss · idle-empty", "packed · rss · idle-held"]
    assert bars[2]["x"] == [0, 300_000, 0, 300_000]
    assert "Missing" in sections["Per-slot anatomy"]["text"][0]  # no anatomy.json: said, not measured
    rows = sections["Runs"]["table"][1]
    assert [row[2] for row in rows] == [f"`../runs/{path.name}`" for path in sorted(paths, key=lambda p: p.name)]
