"""Output: an ms_print-style text chart of a series, for terminals and CI logs.

It draws what valgrind's ``ms_print`` draws for the massif.out export of the same series, with the
same algorithm: a 72x20 grid (by default) where each column holds the last snapshot falling in it,
``#`` for the peak, ``@`` for detailed snapshots, ``:`` for the others, gaps between snapshots
bridged at the previous height; the y axis in B/KB/MB (powers of 1024) with the unit on its own
line above, the x axis in seconds (or snapshot index when the series has no clock). Then the list
of snapshots and, after each detailed one, its allocation tree as ms_print prints it
(``->12.34% (1,234B) label``, ms_print's own 1% threshold applied on top of massif's).
"""

from __future__ import annotations

from ..massif_tree import DEFAULT_DEPTH, DEFAULT_THRESHOLD, MassifSnapshot, Node, massif_snapshots
from ..model import Detail, Series
from ..units import bytes_axis_label, commify, seconds_axis_label

PEAK_CHAR, DETAILED_CHAR, NORMAL_CHAR = "#", "@", ":"
RULE = "-" * 80
#: ms_print's significance threshold (percent) for printing tree nodes.
PRINT_THRESHOLD = 1.0


def render(series: Series, detail: Detail, width: int = 72, height: int = 20,
           threshold: float = DEFAULT_THRESHOLD, depth: int = DEFAULT_DEPTH) -> str:
    """The chart, the snapshot list and the detailed snapshots' trees, as one text."""
    if not 4 <= width <= 1000 or not 4 <= height <= 1000:
        raise ValueError("chart width and height must be between 4 and 1000 (as ms_print's --x, --y)")
    snapshots = massif_snapshots(series, detail, threshold, depth)
    out: list[str] = [
        RULE,
        f"Command:            {' '.join(series.command.split())}",
        f"Source:             {series.source}; " + "; ".join(series.notes),
        f"Chart arguments:    --width={width} --height={height} --threshold={threshold:.2f} "
        f"--detailed-freq={detail.every}",
        RULE,
        "",
        "",
    ]
    out.extend(graph_lines(snapshots, series.has_clock, width, height))
    out.append("")
    out.append(f"Number of snapshots: {len(snapshots)}")
    detailed = [f"{s.number} (peak)" if s.kind == "peak" else str(s.number) for s in snapshots if s.kind != "empty"]
    out.append(f" Detailed snapshots: [{', '.join(detailed)}]")
    out.append("")
    out.extend(_snapshot_table(snapshots, series.has_clock))
    return "\n".join(out) + "\n"


def graph_lines(snapshots: list[MassifSnapshot], has_clock: bool, width: int = 72, height: int = 20) -> list[str]:
    """The y-unit line, the ``height`` + 1 rows of the graph and the x-axis label line."""
    peak_number = next(s.number for s in snapshots if s.kind == "peak")
    peak_bytes = max(s.heap for s in snapshots) or 1  # a zero peak still gets a non-empty y range
    end_time = snapshots[-1].time or 1
    # grid[x][y]: column 0 is the y axis, row 0 the x axis.
    grid = [[" "] * (height + 1) for _ in range(width + 1)]
    grid[0][0] = "+"
    for x in range(1, width + 1):
        grid[x][0] = "-"
    for y in range(1, height + 1):
        grid[0][y] = "|"
    grid[width][0] = ">"
    grid[0][height] = "^"

    row_bytes = peak_bytes / height
    x = previous_x = previous_top = 0
    previous_char = NORMAL_CHAR
    for snapshot in snapshots:
        previous_x = x
        x = int(snapshot.time / end_time * width) + 1
        if snapshot.time >= end_time:  # the last snapshot would fall one column past the end
            x = width
        x = min(max(x, 1), width)
        if previous_top > 0:  # bridge the gap since the previous snapshot at its height
            for gap_x in range(previous_x + 1, x):
                grid[gap_x][previous_top] = previous_char
        char = (PEAK_CHAR if snapshot.number == peak_number
                else DETAILED_CHAR if snapshot.kind != "empty" else NORMAL_CHAR)
        top = 0
        for y in range(1, height + 1):
            if snapshot.heap >= y * row_bytes:
                current = grid[x][y]
                # Priority: peak over detailed over normal, within a shared column.
                if (char == PEAK_CHAR
                        or (char == DETAILED_CHAR and current != PEAK_CHAR)
                        or (char == NORMAL_CHAR and current not in (PEAK_CHAR, DETAILED_CHAR))):
                    grid[x][y] = char
                top = y
        previous_top, previous_char = top, char

    y_label, y_unit = bytes_axis_label(peak_bytes)
    if has_clock:
        x_label, x_unit = seconds_axis_label(snapshots[-1].time / 1000)
    else:
        x_label, x_unit = f"{snapshots[-1].time:5d}", "snapshot"
    lines = [f"    {y_unit:>2}"]
    for y in range(height, -1, -1):
        prefix = y_label if y == height else "   0 " if y == 0 else "     "
        row = "".join(grid[column][y] for column in range(width + 1))
        lines.append(prefix + row + (x_unit if y == 0 else ""))
    lines.append(f"     0{' ' * (width - 5)}{x_label:>5}")
    return lines


def _snapshot_table(snapshots: list[MassifSnapshot], has_clock: bool) -> list[str]:
    time_header = "time(s)" if has_clock else "time(index)"
    row_format = "{:>3} {:>14} {:>16} {:>16} {:>13} {:>12}"
    header = [RULE, row_format.format("n", time_header, "total(B)", "useful-heap(B)", "extra-heap(B)", "stacks(B)"), RULE]
    lines = list(header)
    for position, snapshot in enumerate(snapshots):
        time = f"{snapshot.time / 1000:,.3f}" if has_clock else str(snapshot.time)
        lines.append(row_format.format(snapshot.number, time, commify(snapshot.heap), commify(snapshot.heap), 0, 0))
        if snapshot.tree is not None:
            lines.extend(tree_lines(snapshot.tree, snapshot.heap))
            if position + 1 < len(snapshots):
                lines.extend(header)
    return lines


def tree_lines(root: Node, total: int) -> list[str]:
    """The tree as ms_print prints it: percentages of ``total``, ``->`` arrows, ``| `` rails, and
    children under ms_print's 1% threshold summed into one ``in N+ places`` line."""
    lines: list[str] = []
    _print_node(root, True, "", "", "", total, lines)
    return lines


def _percent(size: int, total: int) -> float:
    return 100 * size / total if total else 0.0


def _print_node(node: Node, is_top: bool, prefix: str, midfix: str, arrow: str, total: int,
                lines: list[str]) -> tuple[bool, int]:
    """ms_print's read_heap_tree: returns (insignificant, bytes) so the parent can sum the skipped ones."""
    significant = is_top or (total != 0 and node.size * 100 / total >= PRINT_THRESHOLD)
    if significant:
        lines.append(f"{prefix}{arrow}{_percent(node.size, total):05.2f}% ({commify(node.size)}B) {node.label}")
    skipped = skipped_bytes = 0
    child_prefix = prefix + midfix
    for index, child in enumerate(node.children):
        child_midfix = "  " if index + 1 == len(node.children) else "| "
        insignificant, size = _print_node(child, False, child_prefix, child_midfix, "->", total, lines)
        skipped += insignificant
        skipped_bytes += size
    if not significant:
        return True, node.size
    if skipped:
        lines.append(f"{child_prefix}->{_percent(skipped_bytes, total):05.2f}% ({commify(skipped_bytes)}B) "
                     f"in {skipped}+ places, all below ms_print's threshold ({PRINT_THRESHOLD:05.2f}%)")
        lines.append(child_prefix)
    if not node.children:
        lines.append(child_prefix)
    return False, 0
