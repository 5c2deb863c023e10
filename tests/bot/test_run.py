"""`cadence run` as a new user meets it: with Slack credentials pointing at a fake Slack on localhost, it
serves Slack; the CRO links the workspace, and a signed `/deal` command updates a deal and answers."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest

from support.fake_slack import FakeSlack
from support.slack_app import SIGNING_SECRET, ResponseSink, payload, sign, words

ROOT = Path(__file__).resolve().parents[2]
SMALL = ROOT / "tests" / "fixtures" / "engagement_small.yaml"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _form(user: str, command: str, text: str, response_url: str) -> str:
    body = payload("slash_command")
    body.update(user_id=user, command=command, text=text, response_url=response_url)
    return urlencode(body)


@pytest.mark.slow
async def test_cadence_run_serves_slack_and_a_signed_deal_command_updates_a_deal(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/cadence.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    applied = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bot.cli", "--database-url", url, "engagement", "apply", str(SMALL)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert applied.returncode == 0, applied.stderr
    port = _free_port()
    sink = ResponseSink()
    await sink.start()
    async with FakeSlack.for_testco() as fake:
        run_env = {
            **env,
            "SLACK_BOT_TOKEN": fake.token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": fake.api_url,
            "HOST": "127.0.0.1",
            "PORT": str(port),
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.cli",
            "--database-url",
            url,
            "run",
            stdout=asyncio.subprocess.PIPE,
            env=run_env,
        )
        try:
            assert process.stdout is not None
            line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
            assert f"Cadence is serving Slack (http://127.0.0.1:{port}/slack/events)" in line
            async with asyncio.timeout(60), aiohttp.ClientSession() as http:

                async def slash(user: str, command: str, text: str, name: str) -> int:
                    body = _form(user, command, text, sink.url(name))
                    headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(body, int(time.time()))}
                    async with http.post(f"http://127.0.0.1:{port}/slack/events", data=body, headers=headers) as r:
                        return r.status

                async with http.get(f"http://127.0.0.1:{port}/healthz") as health:
                    assert health.status == 200 and (await health.json()) == {"status": "ok"}
                assert await slash("U0DANA", "/cadence", "setup acme-test", "setup") == 200
                [linked] = await sink.wait_for("setup")
                assert "Linked this workspace to Testco" in words(linked)
                assert (
                    await slash("U0JORDAN", "/deal", 'new "Acme" amount=48k close=+30d stage=discovery', "new") == 200
                )
                await sink.wait_for("new")
                assert await slash("U0JORDAN", "/deal", "Acme amount=52k next=&quot;Send MSA&quot;", "update") == 200
                [answer] = await sink.wait_for("update")
                assert answer["text"] == "Updated Acme." and "amount: $48,000 → $52,000" in words(answer)
        finally:
            process.terminate()
            await asyncio.wait_for(process.wait(), 30)
    await sink.stop()
