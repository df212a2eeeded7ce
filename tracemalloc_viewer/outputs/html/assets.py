"""The page's style, its fixed panels and its script, inlined into every page by :mod:`.document`:
the panels are here, the style sheet and the script are ``static/page.css`` and ``static/page.js``.

Rules: the script computes no figure. It draws the plotly figures the page's data holds (adding only
each point's phase name, for the hover), fills the sites table and the comparison from rows the
builder computed, sorts, and reacts to clicks, zooms and choices. It reads the data from the
``memdiet-data`` block. It draws the figures on screen first, then the others one at a time (one the
reader scrolls to goes first), so a page with many curves opens as fast as one with a few. It
reports its state in ``window.memdietPage``, which the browser test reads: ``ready`` and ``openMs``
(milliseconds from navigation start until the figures on screen are drawn), ``allDrawn`` and
``allDrawnMs`` (every figure), ``errors``.
"""

from importlib.resources import files

CURVE_HELP = (
    "One curve per capture, massif-style: the largest allocation sites stacked (the rest as <i>other</i>), the "
    "heap total and, where recorded, the process's RSS as lines, phases shaded and named. Hover for the time, "
    "phase, site (with its stack when the capture has one) and bytes. Click a legend entry to hide a site, "
    "double-click it to show that site alone. Drag across a curve to zoom to a time window (double-click to zoom "
    "out): the sites table below follows the window; click a point for the sites at that instant."
)

SITES_PANEL = """<section id="sites">
<h2>Sites at an instant or window</h2>
<p class="help">The sites live at one sample, grouped by allocating line as <code>memdiet view top</code> groups them.
An instant shows the nearest sample that has sites; a window (zoom on a curve) shows its largest one.
Click a column title to sort.</p>
<div class="controls"><label>capture <select id="sites-run"></select></label>
<label>sample <select id="sites-sample"></select></label></div>
<p id="sites-caption" class="caption"></p>
<table id="sites-table" class="data sortable"><thead><tr>
<th data-key="rank" class="num">#</th><th data-key="site">site</th><th data-key="size" class="num">size</th>
<th data-key="count" class="num">blocks</th><th data-key="share" class="num">share</th>
</tr></thead><tbody></tbody><tfoot></tfoot></table>
</section>
"""

COMPARE_PANEL = """<section id="compare">
<h2>Compare</h2>
<p class="help">Pick two captures (two layouts, your program and a layout, ...) or two moments of one capture (the
peak, the end of a phase, ...): the table lists, per allocating line, how B differs from A, largest change first,
computed as <code>memdiet view diff A B</code> computes it (the same figures, the same order).</p>
<div class="controls compare-controls">
<div><span class="side">A, before</span> <select id="cmp-a-run"></select> <select id="cmp-a-moment"></select></div>
<div><span class="side">B, after</span> <select id="cmp-b-run"></select> <select id="cmp-b-moment"></select>
<button id="cmp-swap" type="button">swap A and B</button></div>
</div>
<p id="cmp-caption" class="caption"></p>
<ul id="cmp-notes" class="basis"></ul>
<table id="cmp-table" class="data"><thead><tr>
<th class="num">#</th><th class="num">size diff</th><th class="num">size in B</th><th class="num">blocks diff</th>
<th class="num">blocks in B</th><th>site</th>
</tr></thead><tbody></tbody><tfoot></tfoot></table>
</section>
"""

#: The page's style sheet and script: real files beside this module (``static/``, shipped as package data
#: by pyproject.toml), so they can be read and linted as CSS and JavaScript. Read once, at import.
STYLE = (files(__package__) / "static" / "page.css").read_text(encoding="utf-8")
SCRIPT = (files(__package__) / "static" / "page.js").read_text(encoding="utf-8")
