"""perf tests."""
