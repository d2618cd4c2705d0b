"""Local fake servers: Dify, Telegram Bot API, Slack Web API."""
