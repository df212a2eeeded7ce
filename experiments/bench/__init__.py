"""``memdiet bench``: memdiet's layouts side by side with the Python servers people use.

Every subject (each memdiet layout at its default ``--max-conns``, and the peers: uvicorn, aiohttp and
a plain asyncio responder) is measured the same way, in one run:

- :mod:`.subjects`: what is measured and how each is started; :mod:`.peers`: the peers' few-line apps;
- :mod:`.launch`: start a subject pinned to its CPU, know when it listens, stop it by PID;
- :mod:`.procfs`: its memory (VmRSS, RssAnon), sockets and listening port, read from /proc;
- :mod:`.quiet`: other processes' CPU before timing (recorded, or refused with ``--strict``);
- :mod:`.throughput`: wrk, or experiments.loadgen without it;
- :mod:`.measure`: the trials (and, with ``--profile``, one run each under cProfile);
  :mod:`.metrics`: per-trial values, medians, ratios; :mod:`.profile`: a cProfile stats file grouped
  into where the server's time goes;
- :mod:`.document` (``bench.json``), :mod:`.report` (``bench.md``), :mod:`.chart` (``bench.png``);
- :mod:`.cli`: the ``bench`` subcommand.

Nothing here is imported by a measured server: a peer (``python -m experiments.bench.peers.X``)
imports only these package docstrings, the standard library and its own framework.
"""
