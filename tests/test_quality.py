"""Project-wide checks: ruff and mypy clean, and core/ never depends on a platform library or a web server."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLATFORM_PACKAGES = ("aiogram", "slack_bolt", "slack_sdk", "prometheus_client", "bots")
# aiohttp's client is core's; its server (aiohttp.web, aiohttp.web_app, aiohttp.web_response, ...) is not.
WEB_SERVER_PREFIX = "aiohttp.web"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False)


def test_ruff_is_clean() -> None:
    result = run("ruff", "check", "core", "bots", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = run("ruff", "format", "--check", "core", "bots", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def _is_forbidden(module: str) -> bool:
    if module.startswith(WEB_SERVER_PREFIX):
        return True
    return any(module == package or module.startswith(f"{package}.") for package in PLATFORM_PACKAGES)


def forbidden_imports(source: str) -> list[str]:
    """Every module in `source` that core/ must not import, in any import form and at any depth."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from aiohttp import web` names the submodule only in the alias.
            modules = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        found.extend(module for module in modules if _is_forbidden(module))
    return list(dict.fromkeys(found))


def test_core_never_imports_platform_code() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in sorted((ROOT / "core").rglob("*.py"))
        for module in forbidden_imports(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


@pytest.mark.parametrize(
    ("source", "caught"),
    [
        ("from aiohttp import web", "aiohttp.web"),
        ("from aiohttp import ClientSession, web", "aiohttp.web"),
        ("import aiohttp.web", "aiohttp.web"),
        ("import aiohttp.web as server", "aiohttp.web"),
        ("from aiohttp.web import Application", "aiohttp.web"),
        ("from aiohttp import web_response", "aiohttp.web_response"),
        ("from aiohttp.web_exceptions import HTTPNotFound", "aiohttp.web_exceptions"),
        ("def serve() -> None:\n    from aiohttp import web\n", "aiohttp.web"),
        ("import slack_bolt", "slack_bolt"),
        ("from slack_sdk.web.async_client import AsyncWebClient", "slack_sdk.web.async_client"),
        ("from aiogram import Bot", "aiogram"),
        ("from prometheus_client import Counter", "prometheus_client"),
        ("from bots.telegram import surface", "bots.telegram"),
        ("import bots", "bots"),
    ],
)
def test_the_import_checker_catches(source: str, caught: str) -> None:
    assert caught in forbidden_imports(source)


@pytest.mark.parametrize(
    "source",
    [
        "import aiohttp",
        "from aiohttp import ClientError, ClientSession, ClientTimeout",
        "from aiohttp.client import ClientResponse",
        "from redis.asyncio import Redis",
        "from core.render.surface import MessageSurface",
        "from . import surface",
        "import botsford",
        "import aiogrammar",
    ],
)
def test_the_import_checker_lets_core_dependencies_through(source: str) -> None:
    assert forbidden_imports(source) == []


def test_every_module_has_a_docstring() -> None:
    missing = []
    for folder in ("core", "bots"):
        for path in (ROOT / folder).rglob("*.py"):
            if ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) is None:
                missing.append(str(path.relative_to(ROOT)))
    assert missing == []
