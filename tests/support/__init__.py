"""Helpers shared by the reliability tests (chaos, kill-and-resume, bad input, secrets)."""
