"""Test suite for dify-bots."""
