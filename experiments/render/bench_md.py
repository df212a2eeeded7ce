"""``bench.md`` from a ``bench.json`` document: the machine, the targets, a summary, a table per
metric with ratios to the baselines, the trials (which machine load each was timed under) and, with
``--profile``, where each server's time goes under cProfile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..dataset.bench_format import SHARED_CATEGORIES, SYSTEM_CALLS, held_key
from ..dataset.results import write_atomic, write_json
from .bench_chart import render_chart
from .markdown import table
from .units import MISSING, format_in_unit, human_bytes, share

JSON_FILE = "bench.json"
MARKDOWN_FILE = "bench.md"
CHART_FILE = "bench.png"
TITLE = "memdiet bench: the layouts beside uvicorn, aiohttp and plain asyncio"


#: A bench metric's value in its unit: ``5.4 KiB``, ``36,120 req/s``, ``9.81 s``, ``27.2 us``.
format_value = format_in_unit


def _fraction(value: float | None) -> str:
    """A share recorded as a fraction of 1 (a profile's ``share``), in the report's one rule for shares."""
    return share(value, 1.0)


def format_ratio(ratio: float | None) -> str:
    if ratio is None:
        return MISSING
    return f"{ratio:.3f}x" if ratio < 0.1 else f"{ratio:.2f}x"


def _machine_section(document: dict[str, Any]) -> list[str]:
    machine, tool, busy = document["machine"], document["throughput_tool"], document["busy"]
    memory = machine.get("memory_total_bytes")
    versions = ", ".join(f"{name} {version or 'not installed'}" for name, version in machine["peer_versions"].items())
    if machine.get("server_cpus"):
        pinning = f"server on CPU {machine['server_cpus'][0]}, client on CPU {machine['client_cpus'][0]} (taskset)"
    else:
        pinning = "not pinned (one CPU: server and client share it)"
    commit = machine.get("commit")
    rows = [
        ["CPU", f"{machine.get('cpu_model') or '?'}, {machine.get('cpu_count')} logical CPUs"],
        ["Memory", human_bytes(memory) if memory else MISSING],
        ["Kernel", f"Linux {machine.get('kernel')} ({machine.get('machine')})"],
        ["Python", f"{machine.get('python_implementation')} {machine.get('python')}"],
        ["Peers", versions or MISSING],
        ["Throughput tool", f"{tool['name']}: {tool['version']}"],
        ["Pinning", pinning],
        ["RLIMIT_NOFILE", f"{machine['rlimit_nofile']['soft']:,} (hard {machine['rlimit_nofile']['hard']:,})"],
        ["Load average at start", " / ".join(f"{v:.2f}" for v in machine["load_average"])],
        ["Commit", f"{commit[:12]}{' (uncommitted changes)' if machine.get('dirty') else ''}" if commit else MISSING],
        ["Busy machine", f"{busy['timed_while_busy']} of {busy['timed_runs']} throughput runs started while another "
                         f"process used more than {busy['threshold_cores']} of a core ({busy['policy']})"],
    ]
    lines = ["## Machine", "", *table(["", ""], rows, "ll"), ""]
    if tool.get("note"):
        lines += [f"**{tool['note']}.**", ""]
    return lines


def _summary_section(document: dict[str, Any]) -> list[str]:
    n = max(document["plan"]["held"])
    columns = [("idle_rss_bytes", "idle RSS"), (held_key("held_rss_bytes", n), f"RSS, {n:,} held"),
               (held_key("bytes_per_connection", n), "B / held conn"), ("req_per_s", "req/s"),
               ("cpu_us_per_request", "CPU / request")]
    units = {metric["key"]: metric["unit"] for metric in document["metrics"]}
    rows = []
    for subject in document["subjects"]:
        summary = subject["summary"]
        rows.append([subject["label"]] + [
            format_value(units[key], summary[key]["median"]) if key in summary else MISSING for key, _ in columns])
    return ["## Summary (medians)", "", *table(["subject"] + [title for _, title in columns], rows), "",
            f"![bench chart]({CHART_FILE})", ""]


def _targets_section(document: dict[str, Any]) -> list[str]:
    marks = {True: "met", False: "**not met**", None: "not measured"}
    rows = [[target["target"], target["detail"], marks[target["met"]]] for target in document["targets"]]
    return ["## Targets (issue #6)", "", *table(["target", "measured", ""], rows, "lll"), ""]


def _metric_sections(document: dict[str, Any]) -> list[str]:
    baselines = document["baselines"]
    lines = []
    for metric in document["metrics"]:
        rows = []
        for subject in document["subjects"]:
            summary = subject["summary"].get(metric["key"])
            if summary is None:
                rows.append([subject["label"], MISSING, MISSING] + [MISSING] * len(baselines))
                continue
            spread = (f"{format_value(metric['unit'], summary['min'])} - {format_value(metric['unit'], summary['max'])}"
                      if summary["n"] > 1 else "(1 trial)")
            ratios = subject["ratios"].get(metric["key"], {})
            rows.append([subject["label"], format_value(metric["unit"], summary["median"]), spread]
                        + [format_ratio(ratios.get(baseline)) for baseline in baselines])
        better = "lower is better" if metric["lower_is_better"] else "higher is better"
        lines += [f"### {metric['title']}", "", f"{metric['description']} ({better}).", "",
                  *table(["subject", "median", "min - max"] + [f"x {b}" for b in baselines], rows), ""]
    return ["## Each metric", "", "Medians over the trials, with their range; ratios divide this run's medians.",
            "", *lines]


def _describe_load(check: dict[str, Any] | None) -> str:
    """Other processes' CPU use before a timed run (a QuietCheck's dict), in a few words."""
    if check is None:
        return MISSING
    if check["quiet"]:
        return f"quiet (others {check['others_cores']:.2f} cores)"
    top = check["busy"][0]
    return f"busy: {top['name']} {top['cores']:.2f} cores (others {check['others_cores']:.2f})"


def _trials_section(document: dict[str, Any]) -> list[str]:
    rows = []
    for subject in document["subjects"]:
        for trial in subject["trials"]:
            load = _describe_load(trial.get("quiet_check"))
            throughput = trial.get("throughput") or {}
            errors = throughput.get("errors")
            rows.append([subject["label"], str(trial["trial"]), "ok" if trial["ok"] else f"failed: {trial['error']}",
                         load, ", ".join(f"{k} {v}" for k, v in errors.items()) if errors else "0" if throughput else MISSING,
                         str(trial.get("exit_code", MISSING))])
    return ["## Trials", "", "Each trial is a fresh server process; the machine's load is measured over "
            f"{document['plan']['cpu_check_s']:g} s just before its throughput run.", "",
            *table(["subject", "trial", "result", "other processes before timing", "throughput errors", "exit"], rows,
                  "llllll"),
            ""]


def _tool_command(document: dict[str, Any]) -> str:
    """The throughput run as the report names it: ``wrk -t1 -c50 -d10s --latency`` or the load generator."""
    plan = document["plan"]
    if document["throughput_tool"]["name"] == "wrk":
        return f"`wrk -t1 -c{plan['load_connections']} -d{plan['duration_s']}s --latency`"
    return f"experiments.loadgen ({plan['load_connections']} connections, {plan['duration_s']} s)"


def profile_section(document: dict[str, Any]) -> list[str]:
    """Where each server's time goes under cProfile: totals per subject, own time per category
    (subjects as columns), the subjects without a profile and why, and each one's top functions."""
    runs = document.get("profiles")
    if runs is None:
        return []
    lines = [
        "## Where the server's CPU goes (cProfile)", "",
        f"After the trials, one more {_tool_command(document)} run per subject with the server started as "
        "`python -m cProfile -o profiles/<subject>.prof -m ...` (open one with `python -m pstats`); its req/s, "
        "slowed by the profiler, is in no table above. cProfile adds a fixed cost to every Python function call, "
        "so call-heavy code is over-weighted: the shares are for comparing subjects and categories, not "
        "absolute timings. Its clock is the wall clock over the server's whole life, start-up included, so "
        "time spent blocked waiting for events is a row of its own, and another busy process would stretch "
        "every row (the first table's last column says whether one was). C functions other than system "
        "calls and a package's own (len, bytes and regex methods...) count with the code that called them.", "",
    ]
    profiled = [run for run in runs if run["ok"]]
    if profiled:
        totals = [[run["label"], f"{run['profile']['profiled_s']:,.2f} s", f"{run['process_cpu_s']:,.2f} s",
                   f"{run['startup_s']:,.2f} s", f"{run['profile']['requests']:,}",
                   format_value('us', run["profile"]["us_per_request"]), _describe_load(run.get("quiet_check"))]
                  for run in profiled]
        lines += table(["subject", "profiled time", "server CPU, start to end of load", "start-up", "requests",
                        "profiled time / request", "other processes before the run"], totals) + [""]
        categories = [row["category"] for run in profiled for row in run["profile"]["categories"]]
        order = [c for c in dict.fromkeys(categories) if c not in SHARED_CATEGORIES] + list(SHARED_CATEGORIES)
        cells = {(run["name"], row["category"]): f"{format_value('us', row['us_per_request'])} ({_fraction(row['share'])})"
                 for run in profiled for row in run["profile"]["categories"]}
        rows = [[category] + [cells.get((run["name"], category), "") for run in profiled] for category in order]
        lines += ["Own time per request under cProfile, and its share of the profiled time (empty: not a "
                  "category of that subject):", "", *table(["category"] + [run["label"] for run in profiled], rows), ""]
    lines += [f"- {run['label']}: {run['profile']['note']}." for run in profiled if run["profile"].get("note")]
    lines += [f"- **{run['label']}**: no profile: {run['error']}." for run in runs if not run["ok"]]
    if lines[-1]:
        lines.append("")
    for run in profiled:
        profile = run["profile"]
        rows = [[f"`{row['function']}`", row["category"], f"{row['calls']:,}", f"{row['seconds']:,.3f} s",
                 _fraction(row["share"]), format_value('us', row["us_per_request"])] for row in profile["top_functions"]]
        lines += [f"### {run['label']}: top {len(rows)} functions by own time", "",
                  f"Stats: [{run['stats_file']}]({run['stats_file']}).", "",
                  *table(["function", "counted in", "calls", "own time", "share", "per request"], rows, "llrrrr"),
                  ""]
    return lines


#: The memdiet categories that are HTTP work the asyncio responder does not do: it only searches for
#: the blank line that ends a head and answers with a fixed response.
HTTP_WORK_CATEGORIES = ("HTTP parsing (server/http.py)", "handlers and routing (server/handlers.py)",
                        "request state (server/request.py)")


def limits_section(document: dict[str, Any]) -> list[str]:
    """What limits each memdiet layout that answers fewer keep-alive req/s than the asyncio responder,
    in this run's own figures: CPU per request side by side and, with ``--profile``, the share of
    memdiet's profiled time spent on HTTP work the responder skips. Empty when every layout keeps up."""
    subjects = {subject["name"]: subject for subject in document["subjects"]}
    baseline = subjects.get("asyncio")
    if baseline is None:
        return []

    def median(subject: dict[str, Any], key: str) -> float | None:
        summary = subject["summary"].get(key)
        return summary["median"] if summary else None

    base_rps, base_cpu = median(baseline, "req_per_s"), median(baseline, "cpu_us_per_request")
    if not base_rps:
        return []
    slower = [subject for subject in document["subjects"] if subject["kind"] == "memdiet"
              and (median(subject, "req_per_s") or 0) < base_rps]
    if not slower:
        return []
    profiles = {run["name"]: run["profile"] for run in document.get("profiles") or [] if run["ok"]}
    lines = ["## What limits throughput", "",
             f"The asyncio responder answered {format_value('req/s', base_rps)} for "
             f"{format_value('us', base_cpu)} of server CPU per request. Below it in this run:", ""]
    for subject in slower:
        rps, cpu = median(subject, "req_per_s"), median(subject, "cpu_us_per_request")
        text = (f"- **{subject['label']}**: {format_ratio(rps / base_rps)} its req/s, "
                f"{format_value('us', cpu)} of CPU per request")
        profile = profiles.get(subject["name"])
        if profile:
            shares = {row["category"]: row["share"] for row in profile["categories"]}
            http_share = sum(shares.get(category, 0.0) for category in HTTP_WORK_CATEGORIES)
            text += (f"; under cProfile, {_fraction(http_share)} of its time goes to parsing the head, "
                     f"routing and request state, and {_fraction(shares.get(SYSTEM_CALLS, 0.0))} to system calls")
            if cpu is not None:
                text += (f"; its CPU per request less that share is {format_value('us', cpu * (1 - http_share))}, "
                         f"against the responder's {format_value('us', base_cpu)}")
        lines.append(text + ".")
    lines += ["", "memdiet parses every request head in full (the grammar h11 accepts: every header, "
              "Content-Length, Transfer-Encoding, Connection, Host) and routes it; the asyncio responder only "
              "finds the blank line that ends a head and writes a fixed answer, so that HTTP work is CPU per "
              "request the responder does not spend. The estimate without it applies cProfile's shares, which "
              "over-weight call-heavy code, to the unprofiled CPU: a rough figure. The packed layout also starts "
              "a fresh coroutine for every request, as it keeps none for an idle connection. Category by "
              "category: \"Where the server's CPU goes\" below (with `--profile`).", ""]
    return lines


def _method_section(document: dict[str, Any]) -> list[str]:
    plan = document["plan"]
    held = " and ".join(f"{n:,}" for n in plan["held"])
    command = _tool_command(document)
    lines = [
        "## Method", "",
        f"- {plan['trials']} trial(s) per subject, round-robin, each in a fresh process bound to 127.0.0.1, one "
        "process and one worker, access logs off, keep-alive held an hour.",
        "- Readiness without a request: memdiet's `listening on` line; a peer's LISTEN socket in /proc/net/tcp.",
        f"- Idle RSS (VmRSS) and anonymous RSS (RssAnon) from /proc/PID/status, {plan['settle_s']:g} s after start, "
        "median of 5 reads.",
        f"- Held: {held} keep-alive connections opened by experiments.loadgen, each having made one request, read "
        f"{plan['settle_s']:g} s after the ramp; bytes per connection = (RSS_N - idle RSS) / N. The kernel's "
        "socket memory (about 4.7 KB per TCP socket here) is outside RSS for every subject alike.",
        f"- Throughput: {command} after the held connections were closed; the server's CPU seconds "
        "(user + system, /proc/PID/stat) over the run. On a busy machine req/s varies with what else runs on "
        "the server's CPU; CPU per request varies much less.",
        "",
        "Subjects:", "",
    ]
    for subject in document["subjects"]:
        lines.append(f"- **{subject['label']}**: {subject['description']} (`{' '.join(subject['command'])}`)")
    return lines + [""]


def render_markdown(document: dict[str, Any]) -> str:
    plan = document["plan"]
    intro = (f"Run of {document['started_utc']}{' (--quick)' if document['quick'] else ''}: {plan['trials']} trial(s), "
             f"N = {', '.join(f'{n:,}' for n in plan['held'])} held connections, throughput measured with "
             f"**{document['throughput_tool']['name']}**.")
    lines = [f"# {TITLE}", "", intro, ""]
    lines += [f"- {note}" for note in document.get("notes", [])] + ([""] if document.get("notes") else [])
    if document["status"] != "complete":
        reasons = [document["refused"]] if document.get("refused") else []
        failed = sum(not t["ok"] for s in document["subjects"] for t in s["trials"])
        if failed:
            reasons.append(f"{failed} trial(s) failed (see Trials)")
        unprofiled = sum(not run["ok"] for run in document.get("profiles") or [])
        if unprofiled:
            reasons.append(f"{unprofiled} profile(s) not obtained (see Where the server's CPU goes)")
        lines += [f"**Incomplete run:** {'; '.join(reasons)}.", ""]
    lines += _summary_section(document) + _targets_section(document) + limits_section(document)
    lines += _machine_section(document)
    lines += _metric_sections(document) + profile_section(document) + _trials_section(document)
    lines += _method_section(document)
    return "\n".join(lines).rstrip() + "\n"


def write_reports(document: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write ``bench.json``, ``bench.md`` and ``bench.png`` into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / JSON_FILE, out_dir / MARKDOWN_FILE, out_dir / CHART_FILE]
    write_json(paths[0], document)
    write_atomic(paths[1], render_markdown(document))
    render_chart(document, paths[2])
    return paths
