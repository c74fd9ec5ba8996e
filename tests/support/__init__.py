"""Shared test helpers: real-process fixtures' building blocks, fakes, waits."""
