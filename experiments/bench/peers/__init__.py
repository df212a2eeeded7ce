"""The peers' apps, each a few lines, each runnable as ``python -m experiments.bench.peers.<name>_app
[--host 127.0.0.1] [--port 0]``: one process, one worker, bound to 127.0.0.1, access logs off,
keep-alive held an hour, answering ``GET /`` with 200 ``Hello, World!``.

Deliberately empty: this module is imported by every peer, so it must add nothing to their memory.
The registry (which package each needs, how each is started) is :mod:`experiments.bench.subjects`.
"""
