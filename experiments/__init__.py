"""memdiet experiments: drive the server through phases, measure it with probes, write result
datasets and render them (see docs/ARCHITECTURE.md)."""
