"""Heap graphs analysed outside the subject: dominators, retained sizes, and the per-connection
owners (who keeps each held connection's bytes). ``graphfile`` reads a graph file, ``dominators``
computes the dominator tree and retained sizes (igraph), ``owners`` the per-connection analysis,
``libraries`` measures the graph libraries that could compute the dominators."""
