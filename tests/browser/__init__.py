"""Helpers for tests that drive a real headless Chromium (Debian's, via the playwright package)."""
