"""Files both ways: what the app accepts, files users send, and files the app produces."""
