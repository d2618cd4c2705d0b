"""dify-bots front doors: CLI, Telegram, Slack and the OpenAI-compatible API."""
