"""Outputs: one module per format, each reading a :class:`~tracemalloc_viewer.model.Series` or sites."""
