"""Streaming renderer: throttle, split, format and finalize answers on any chat surface."""
