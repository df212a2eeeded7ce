"""The flagship study's recipe (``memdiet revisions --preset lwan``, ``make lwan``): Lwan built at the
commits of its 2013 memory diet and at today's head, run through the scenario.

Rules: the bundle is found at ``../shared/lwan.bundle`` beside the repository (CI puts a copy of
shared/ there), unless ``MEMDIET_LWAN_BUNDLE`` names another (or ``--repo``; a user clones
https://github.com/lpereira/lwan and passes that). The build is ``build.sh`` beside this file (what it
changes in the sources, and why, is written there). Every value here is a default an option overrides.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...paths import REPO_ROOT

#: Where Lwan's history is by default (read-only: it is cloned into the build cache).
DEFAULT_BUNDLE = REPO_ROOT.parent / "shared" / "lwan.bundle"
BUNDLE_VARIABLE = "MEMDIET_LWAN_BUNDLE"
BUILD_SCRIPT = Path(__file__).resolve().parent / "build.sh"

#: The post's commits, oldest first: 58c4bd8b is ebda2aaf's parent ("before"), then each step of the
#: diet; HEAD is today's Lwan.
POST_COMMITS = ("58c4bd8b", "ebda2aaf", "892017e6", "c9117ee7", "f9f5ce00", "e871417e")
COMMITS = (*POST_COMMITS, "HEAD")
#: What memdiet's layouts mirror (README, "The five layouts"), by commit.
MIRRORS = {"58c4bd8b": "naive", "f9f5ce00": "split", "892017e6": "bitfields", "c9117ee7": "bitfields",
           "e871417e": "nofd", "HEAD": "packed"}
#: The per-connection structs, as each era names them (typedef'd in 2013, plain struct tags today);
#: the connection struct first: the report's slot is the first a revision has (before f9f5ce00 split
#: it out, the table held lwan_request_t).
STRUCTS = ("lwan_connection_t|lwan_connection", "lwan_request_t|lwan_request")
#: The binary the build puts out, and how it is started (the 2013 revisions without lwan.conf read
#: the port from LWAN_PORT, which build.sh makes them do).
BINARY = "{out}/lwan"
COMMAND = "env LWAN_PORT={port} {out}/lwan"
TEMPLATES = ("{out}/lwan.conf.tmpl=lwan.conf",)


#: What the report says of the post's own figures (quoted, not measured here).
NOTES = ("The post (2013) measured Lwan idling at 855 MB before the diet and 32 MB after it, on its author's "
         "machine with a larger RLIMIT_NOFILE; here every revision preallocates for this machine's limit, so the "
         "absolute figures are smaller and the reductions are what compare.",)


def bundle() -> Path:
    """The Lwan history to read: ``$MEMDIET_LWAN_BUNDLE`` or ``../shared/lwan.bundle``."""
    return Path(os.environ.get(BUNDLE_VARIABLE) or DEFAULT_BUNDLE)


def preset() -> dict[str, object]:
    """The options ``--preset lwan`` fills in when they are not given."""
    return {"repo": bundle(), "build": f"sh {BUILD_SCRIPT}", "cmd": COMMAND, "binary": BINARY,
            "struct": list(STRUCTS), "config_template": list(TEMPLATES), "name": "lwan", "revisions": list(COMMITS),
            "mirrors": dict(MIRRORS), "notes": list(NOTES)}
