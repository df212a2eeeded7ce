"""``memdiet bench``: memdiet's layouts side by side with the Python servers people use.

Every subject (each memdiet layout at its default ``--max-conns``, and the peers: uvicorn, aiohttp and
a plain asyncio responder) is measured the same way, in one run:

- :mod:`.subjects`: what is measured and how each is started; :mod:`.peers`: the peers' few-line apps;
- :mod:`.launch`: a subject pinned to its CPU, on the one launcher (:mod:`experiments.measure.process`);
  its memory, sockets and listening port come from :mod:`experiments.measure.procfs`;
- :mod:`.quiet`: other processes' CPU before timing (recorded, or refused with ``--strict``);
- :mod:`.throughput`: wrk, or experiments.loadgen without it;
- :mod:`.measure`: the trials (and, with ``--profile``, one run each under cProfile);
  :mod:`.profile`: a cProfile stats file grouped into where the server's time goes;
- :mod:`.document` builds ``bench.json``, whose format and metrics (per-trial values, medians, ratios)
  are :mod:`experiments.dataset.bench_format`; the report is rendered by :mod:`experiments.render.bench_md`
  (``bench.md``) and :mod:`experiments.render.bench_chart` (``bench.png``); the subcommand is
  :mod:`experiments.cli.bench`.

Nothing here is imported by a measured server: a peer (``python -m experiments.bench.peers.X``)
imports only these package docstrings, the standard library, ``server.fdlimit`` (to raise its file
descriptor limit as memdiet's server does) and its own framework.
"""
