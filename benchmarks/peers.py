"""Peer clients (filled in below)."""
