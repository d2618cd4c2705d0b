"""Reasons in words for the person running the bot: what failed, and which setting fixes it."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from core.dify import errors as dify
from core.errors import BotError

MAX_QUOTE = 160


def suggested_base_url(base_url: str) -> str:
    """The Service API URL the operator most likely meant: scheme and host, then /v1."""
    parts = urlsplit(base_url.strip())
    path = parts.path.rstrip("/")
    prefix = path[: path.find("/v1")] if "/v1" in path else path.removesuffix("/api")
    if "/v1" not in path and prefix.count("/") > 1:
        prefix = ""
    return urlunsplit((parts.scheme, parts.netloc, f"{prefix}/v1", "", ""))


def _quote(error: BotError) -> str:
    message = " ".join(error.message.split())
    if len(message) > MAX_QUOTE:
        message = message[: MAX_QUOTE - 1] + "…"
    return f'Dify said "{message}"' if message else "no details"


def _host(base_url: str) -> str:
    return urlsplit(base_url).netloc or base_url


def _connection(error: BotError) -> str:
    text = error.message.lower().split(" (", 1)[0]
    if "refused" in text:
        return "the connection was refused"
    if "name or service not known" in text or "nodename nor servname" in text or "name resolution" in text:
        return "the host name is unknown"
    if "certificate" in text:
        return "its TLS certificate was not accepted"
    return "no connection could be made"


def explain(error: BaseException, *, base_url: str) -> str:
    """One sentence: what went wrong talking to Dify (or elsewhere) and what to change."""
    if isinstance(error, dify.DifyBadBaseUrl):
        fix = suggested_base_url(base_url)
        return (
            f"DIFY_BASE_URL {base_url} does not lead to Dify's Service API (it answered with a web page or "
            f"a missing route); set DIFY_BASE_URL to the app's API base URL ending in /v1, e.g. {fix}"
        )
    if isinstance(error, dify.DifyAuthError):
        return "the API key was refused (HTTP 401). Check DIFY_API_KEY."
    if isinstance(error, dify.DifyUnreachable):
        return f"could not reach {_host(base_url)}: {_connection(error)}. Check DIFY_BASE_URL and the network."
    if isinstance(error, dify.DifyTimeout):
        return f"{_host(base_url)} did not answer in time. Check DIFY_BASE_URL and the network."
    if isinstance(error, dify.DifyTransportError):
        return f"the connection to {_host(base_url)} broke. Check DIFY_BASE_URL and the network."
    if isinstance(error, dify.DifyModelUnavailable):
        return (
            "the Dify server cannot reach the app's model (a server-side problem: model provider or plugin "
            f"daemon; {_quote(error)}). Check the model provider and the plugin daemon in Dify."
        )
    if isinstance(error, dify.DifyProviderError):
        return f"the app's model provider failed (a server-side problem; {_quote(error)}). Check the provider in Dify."
    if isinstance(error, dify.DifyQuotaExceeded):
        return f"the app's model quota is used up ({_quote(error)}). Check the plan or provider quota in Dify."
    if isinstance(error, dify.DifyAppBusy):
        return "the app is at its concurrency limit right now. Try again in a minute."
    if isinstance(error, dify.DifyAppUnavailable):
        return f"the app is not available ({_quote(error)}). Check that it is published and enabled in Dify."
    if isinstance(error, dify.DifyServerError):
        return f"the Dify server failed (HTTP {error.status or '5xx'}). Check Dify's logs."
    if isinstance(error, dify.DifyRunFailed):
        return f"the app's workflow failed ({_quote(error)}). Check the app in Dify."
    if isinstance(error, dify.DifyBadRequest):
        return f"Dify refused the request ({_quote(error)})."
    if isinstance(error, dify.DifyNotFound):
        return f"Dify did not find what was asked for ({_quote(error)})."
    if isinstance(error, dify.DifyProtocolError):
        return "Dify's answer was malformed or cut off. Check DIFY_BASE_URL and any proxy in front of Dify."
    if isinstance(error, BotError):
        return error.message or "it failed"
    return str(error).strip() or "an unexpected problem"
