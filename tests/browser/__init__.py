"""Tests that open memdiet's pages in a real browser (headless Chromium driven by selenium)."""
