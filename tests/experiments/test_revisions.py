"""``memdiet revisions`` and ``memdiet bisect`` on a throwaway git repository the test makes itself: a
tiny C server (epoll, keep-alive, its port read from ``server.conf`` in its working folder) whose
per-slot struct grows by exactly 1,000 bytes at one known commit, with one commit before it that
does not build.

The slot's layouts are C's (checked by hand against pahole 1.24): ``int fd`` at 0, ``char tag`` at 4,
a 3-byte hole, ``int flags`` at 8, two one-bit fields in the byte at 12, ``char buf[64]`` at 13, 3
bytes of padding: 80 bytes; with ``char extra[1000]`` after ``buf``, 1,080 bytes. The server touches
its whole table of 4,096 slots at start (as Lwan's 2013 table was), so its idle RSS grows by
4,096 x 1,000 B = 3.9 MiB at that commit.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from experiments.cli import main
from experiments.errors import BadInput
from experiments.revisions.builds import BuildCache
from experiments.revisions.dwarf import struct_layouts
from experiments.revisions.runs import Template
from experiments.revisions.source import Source

SLOTS = 4096
GROWTH_BYTES = 1000

SERVER_C = r"""
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define SLOTS 4096
/* SLOT_FIELDS */
struct slot { int fd; char tag; int flags; unsigned alive : 1; unsigned closing : 1; char buf[64]; EXTRA };
typedef struct slot slot_t;

static volatile sig_atomic_t stopping;
static void on_term(int signum) { (void)signum; stopping = 1; }

int main(void)
{
    static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";
    static const char end_of_head[] = "\r\n\r\n";
    int port = 0, one = 1;
    FILE *conf = fopen("server.conf", "r");
    if (!conf || fscanf(conf, "port %d", &port) != 1) { fprintf(stderr, "no port in ./server.conf\n"); return 2; }
    fclose(conf);
    slot_t *table = calloc(SLOTS, sizeof *table);
    memset(table, 1, SLOTS * sizeof *table);
    signal(SIGTERM, on_term);
    signal(SIGPIPE, SIG_IGN);
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = {0};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&address, sizeof address) || listen(listener, 1024)) { perror("listen"); return 1; }
    int poller = epoll_create1(0);
    struct epoll_event event = {.events = EPOLLIN, .data.fd = listener}, events[64];
    epoll_ctl(poller, EPOLL_CTL_ADD, listener, &event);
    while (!stopping) {
        int ready = epoll_wait(poller, events, 64, 200);
        for (int i = 0; i < ready; i++) {
            int fd = events[i].data.fd;
            if (fd == listener) {
                int client = accept(listener, NULL, NULL);
                if (client < 0) continue;
                if (client >= SLOTS) { close(client); continue; }
                table[client].fd = client;
                table[client].flags = 0;
                event.events = EPOLLIN;
                event.data.fd = client;
                epoll_ctl(poller, EPOLL_CTL_ADD, client, &event);
                continue;
            }
            char bytes[4096];
            ssize_t got = read(fd, bytes, sizeof bytes);
            if (got <= 0) { epoll_ctl(poller, EPOLL_CTL_DEL, fd, NULL); close(fd); continue; }
            for (ssize_t k = 0; k < got; k++) {  /* flags: how much of "\r\n\r\n" was just read */
                int *matched = &table[fd].flags;
                *matched = bytes[k] == end_of_head[*matched] ? *matched + 1 : bytes[k] == '\r';
                if (*matched == 4) {
                    *matched = 0;
                    if (write(fd, reply, sizeof reply - 1) < 0) break;
                }
            }
        }
    }
    return 0;
}
"""


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def _commit(repo: Path, message: str, extra: str = "", broken: bool = False) -> str:
    source = SERVER_C.replace("EXTRA", extra).replace("/* SLOT_FIELDS */", f"/* {message} */")
    if broken:
        source = source.replace("int port = 0, one = 1;", "int port = 0, one = ;")
    (repo / "server.c").write_text(source)
    _git(repo, "add", "server.c", "server.conf.in")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The throwaway repository: commits by role (good, a2, broken, fixed, grows, bad) and its path."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed (make system-deps installs it)")
    repo = tmp_path_factory.mktemp("history") / "tiny"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "server.conf.in").write_text("port {port}\n")
    grown = f"char extra[{GROWTH_BYTES}];"
    commits = {"repo": str(repo), "good": _commit(repo, "first"), "a1": _commit(repo, "a comment")}
    commits["a2"] = _commit(repo, "another comment")
    commits["broken"] = _commit(repo, "a typo", broken=True)
    commits["fixed"] = _commit(repo, "the typo fixed")
    commits["grows"] = _commit(repo, "a bigger slot", extra=grown)
    commits["a6"] = _commit(repo, "a comment after", extra=grown)
    commits["bad"] = _commit(repo, "the last", extra=grown)
    return commits


def _subject_args(history: dict[str, str], cache: Path) -> list[str]:
    return ["--repo", history["repo"], "--build", 'gcc -g -O0 -o "$OUT/server" server.c', "--cmd", "{out}/server",
            "--binary", "{out}/server", "--config-template", "{src}/server.conf.in=server.conf", "--cache", str(cache),
            "--name", "tiny"]


TINY_SCENARIO = ["--connections", "20", "--idle", "0.5", "--load", "0.3"]


def test_revisions_reports_exact_struct_sizes_rss_growth_and_skips_the_unbuildable(history, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["revisions", history["good"][:10], history["broken"][:10], history["grows"][:10],
                 *_subject_args(history, tmp_path / "cache"), "--struct", "missing_t|slot_t", "--struct", "absent_t",
                 *TINY_SCENARIO, "--runs-dir", str(tmp_path / "runs"), "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    document = json.loads((out / "revisions.json").read_text())
    good, broken, grows = document["revisions"]
    assert [r["commit"] for r in document["revisions"]] == [history["good"], history["broken"], history["grows"]]
    assert broken["build"]["status"] == "unbuildable" and broken["runs"] == {}
    assert "error" in Path(broken["build"]["log"]).read_text()
    slot = good["structs"]["missing_t|slot_t"]
    assert (slot["name"], slot["size"], slot["holes"], slot["padding"]) == ("slot_t", 80, [[5, 3]], 3)
    assert [(m["name"], m["offset"], m["size"]) for m in slot["members"]] == [
        ("fd", 0, 4), ("tag", 4, 1), ("flags", 8, 4), ("alive", 12, 4), ("closing", 12, 4), ("buf", 13, 64)]
    assert (slot["members"][3]["bit_size"], slot["members"][3]["bit_offset"]) == (1, 96)
    assert grows["structs"]["missing_t|slot_t"]["size"] == 80 + GROWTH_BYTES
    assert good["structs"]["absent_t"] is None
    rss = [r["runs"]["rss"] for r in (good, grows)]
    assert [run["status"] for run in rss] == ["complete", "complete"], [run["error"] for run in rss]
    growth = rss[1]["summary"]["idle_rss_bytes"] - rss[0]["summary"]["idle_rss_bytes"]
    expected = SLOTS * GROWTH_BYTES  # every slot's 1,000 more bytes are touched
    assert 0.85 * expected < growth < 1.15 * expected + 256 * 1024, growth
    index = (out / "index.md").read_text()
    assert "| 80 B |" in index and "| 1,080 B |" in index and "unbuildable" in index
    assert (out / "rss-curves.png").exists()

    # A second study of the same revisions builds nothing: every build comes from the cache.
    err = capsys.readouterr().err
    assert err.count("built in") == 2
    code = main(["revisions", history["good"][:10], history["broken"][:10], *_subject_args(history, tmp_path / "cache"),
                 "--probes", "rss", *TINY_SCENARIO, "--runs-dir", str(tmp_path / "runs"), "-o", str(tmp_path / "again")])
    assert code == 0
    err = capsys.readouterr().err
    assert "built in" not in err and err.count("(cached)") == 2

    # A bisection kept beside the report is tabled in it (--report-only: nothing built or run).
    assert main(["bisect", "--good", history["good"], "--bad", history["grows"], "--figure", "struct:slot_t",
                 "--threshold", "1000", *_subject_args(history, tmp_path / "cache"), "-o", str(out / "bisect-slot.json")]) == 0
    assert main(["revisions", "--report-only", "-o", str(out)]) == 0
    row = next(line for line in (out / "index.md").read_text().splitlines() if "bisect-slot.json" in line)
    assert f"**{history['grows'][:8]}**" in row and "80 B -> 1,080 B" in row and "| 1 |" in row  # the broken one skipped


def test_bisect_finds_the_commit_that_grew_the_struct_skipping_the_broken_one(history, tmp_path, capsys):
    code = main(["bisect", "--good", history["good"], "--bad", history["bad"], "--figure", "struct:slot_t",
                 "--threshold", "500", *_subject_args(history, tmp_path / "cache"), "-o", str(tmp_path / "b.json")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads((tmp_path / "b.json").read_text())
    assert document["first"]["commit"] == history["grows"]
    assert (document["figure_before"], document["figure_at"]) == (80, 80 + GROWTH_BYTES)
    skipped = [step for step in document["steps"] if step["skipped"]]
    assert [step["commit"] for step in skipped] == [history["broken"]] and "does not build" in skipped[0]["skipped"]
    assert "skipped: it does not build" in captured.err
    assert captured.out.startswith(history["grows"][:8])


def test_bisect_on_idle_rss_with_repeats(history, tmp_path, capsys):
    """The same commit found from the RSS the runs measure (median of 2 per step), halfway between."""
    threshold = 0  # filled from the two ends' own figures: halfway between them
    cache = tmp_path / "cache"
    for role in ("good", "bad"):
        main(["revisions", history[role], *_subject_args(history, cache), *TINY_SCENARIO,
              "--runs-dir", str(tmp_path / "runs"), "-o", str(tmp_path / role)])
        threshold += json.loads((tmp_path / role / "revisions.json").read_text())["revisions"][0]["runs"]["rss"]["summary"]["idle_rss_bytes"] / 2
    capsys.readouterr()
    code = main(["bisect", "--good", history["good"], "--bad", history["bad"], "--figure", "idle_rss_bytes",
                 "--threshold", f"{threshold:.0f}", "--repeat", "2", *_subject_args(history, cache), *TINY_SCENARIO,
                 "--runs-dir", str(tmp_path / "runs"), "-o", str(tmp_path / "b.json")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads((tmp_path / "b.json").read_text())
    assert document["first"]["commit"] == history["grows"]
    assert all(len(step["values"]) == 2 for step in document["steps"] if not step["skipped"])
    assert "median of 2" in captured.err


def test_bad_input_is_one_line_and_exit_2(history, tmp_path, capsys):
    args = _subject_args(history, tmp_path / "cache")
    assert main(["revisions", "no-such-rev", *args, "-o", str(tmp_path / "o")]) == 2
    assert "no-such-rev" in capsys.readouterr().err
    assert main(["bisect", "--good", history["good"], "--bad", history["bad"], "--figure", "struct:slot_t",
                 "--threshold", "5000", *args]) == 2  # neither end is above 5,000
    assert "has not crossed 5,000" in capsys.readouterr().err
    assert main(["bisect", "--good", history["bad"], "--bad", history["good"], "--figure", "struct:slot_t",
                 "--threshold", "500", *args]) == 2  # bad does not follow good
    assert "does not follow" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["bisect", "--good", "a", "--bad", "b", "--figure", "x", "--threshold", "12 parsecs", *args])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        main(["revisions", history["good"], "--repo", history["repo"], "--build", "true", "--cmd", "x", "--struct", "s"])
    assert "--binary" in capsys.readouterr().err
    with pytest.raises(BadInput):
        Template("../outside=../x")


def test_ranges_with_a_step_and_unknown_revisions(history, tmp_path):
    source = Source(Path(history["repo"]), tmp_path / "cache").open()
    walked = source.resolve([f"{history['good']}..{history['bad']}"])
    assert [c.sha for c in walked][:2] == [history["a1"], history["a2"]] and walked[-1].sha == history["bad"]
    stepped = source.resolve([f"{history['good']}..{history['bad']}:3"])
    assert [c.sha for c in stepped] == [history["broken"], history["a6"], history["bad"]]
    with pytest.raises(BadInput):
        source.resolve([f"{history['bad']}..{history['good']}"])
    with pytest.raises(BadInput):
        source.resolve([f"{history['good']}..{history['bad']}:0"])


def test_struct_reader_refuses_a_binary_without_debug_information(tmp_path, history):
    source = Source(Path(history["repo"]), tmp_path / "cache").open()
    build = BuildCache(source, 'gcc -O0 -o "$OUT/server" server.c').build(source.commit(history["good"]))
    assert build.ok
    with pytest.raises(BadInput, match="no DWARF"):
        struct_layouts(build.out / "server", ["slot_t"])
    with pytest.raises(BadInput, match="not an ELF"):
        struct_layouts(Path(history["repo"]) / "server.c", ["slot_t"])
