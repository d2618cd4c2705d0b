"""The Dify app's controls in a chat: stop, feedback and suggested questions, built once for every platform."""
