"""Dify Service API: SSE decoding, events, errors and the HTTP client."""
