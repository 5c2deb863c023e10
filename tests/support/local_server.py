"""Serving an aiohttp app for tests: on 127.0.0.1 at a port the OS picks, so test runs can sit side by
side, nothing listens beyond the machine, and no test depends on a port being free.

`LocalServer` is the base of the fakes (Slack's Web API, the Bot Connector): a subclass adds its routes
in `routes`, and is started and stopped with `async with`. `serve_locally` starts any other app (the
served bot, a response sink) and hands back its runner to clean up; `Response` is what a served app
answered a test's request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from aiohttp import web


async def serve_locally(app: web.Application) -> tuple[web.AppRunner, str]:
    """Start `app`; its runner (`cleanup()` stops it) and its root URL, `http://127.0.0.1:<port>`."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@dataclass
class Response:
    status: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text) if self.text else None


class LocalServer:
    """A fake HTTP service; `root` is its URL while it runs. `client_max_size` bounds a request body (as
    the real service does, with room for the uploads and cards tests send)."""

    def __init__(self, *, client_max_size: int = 10 * 1024**2) -> None:
        self.client_max_size = client_max_size
        self.root = ""
        self._runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        """Add the service's routes (they must all exist before the server starts)."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        app = web.Application(client_max_size=self.client_max_size)
        self.routes(app)
        self._runner, self.root = await serve_locally(app)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
