"""Teams' request tokens, on the real `/api/messages` endpoint with MicrosoftAppId configured.

The Bot Framework checks each request's JWT against the signing keys it fetches from
login.botframework.com. Here the test plays Microsoft: it makes an RSA key, serves the OpenID
configuration and the key set (JWKS) from a local HTTP server, points the SDK's channel validation at
it (`ChannelValidation.open_id_metadata_endpoint`, test only) and signs tokens with PyJWT. One correctly
signed token is accepted — proof that the harness works — and every mutation of it (audience, issuer,
expiry, not-before, the `serviceurl` claim, the signing key, the algorithm, the header) gets 401 and
changes nothing: no row in any table, no call to the Bot Connector.

The SDK fetches the keys with blocking `requests`, so the key server runs in a thread with its own
socket loop (stdlib `ThreadingHTTPServer`) rather than on the test's event loop, which it would block.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from botframework.connector.auth import ChannelValidation, JwtTokenExtractor
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from support.teams_bot import TeamsDriver, TeamsFake, apply_teams_engagement, payload, serve_teams

APP_ID = "00000000-0000-4000-8000-00000000b07a"
ISSUER = "https://api.botframework.com"
KID = "cadence-test-key"
DbState = Callable[[], Awaitable[dict[str, int]]]


class KeyServer:
    """Microsoft's OpenID configuration and JWKS for the keys given, on 127.0.0.1:<ephemeral>."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.fetches = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.fetches += 1
                root = f"http://127.0.0.1:{self.server.server_address[1]}"
                documents = {
                    "/v1/.well-known/openidconfiguration": {
                        "issuer": ISSUER,
                        "jwks_uri": f"{root}/v1/.well-known/keys",
                        "id_token_signing_alg_values_supported": ["RS256"],
                    },
                    "/v1/.well-known/keys": {"keys": server.keys},
                }
                found = documents.get(self.path)
                body = json.dumps(found or {}).encode()
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def metadata_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1/.well-known/openidconfiguration"

    def __enter__(self) -> KeyServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(key: rsa.RSAPrivateKey, kid: str = KID) -> dict[str, Any]:
    public: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    return public | {"kid": kid, "use": "sig", "endorsements": ["msteams"]}


MICROSOFT = new_key()
"""The key "Microsoft" signs with (made once: RSA key generation is the slow part)."""


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[KeyServer]:
    with KeyServer([jwk(MICROSOFT)]) as server:
        monkeypatch.setattr(ChannelValidation, "open_id_metadata_endpoint", server.metadata_url)
        monkeypatch.setattr(JwtTokenExtractor, "metadataCache", {})
        yield server


@pytest.fixture
async def teams(world: Any, tmp_path: Any, keys: KeyServer) -> AsyncIterator[TeamsDriver]:
    await apply_teams_engagement(world, tmp_path)
    async with (
        TeamsFake() as fake,
        serve_teams(world, fake, teams_app_id=APP_ID, teams_app_password="client-secret") as driver,
    ):
        yield driver


def claims(service_url: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    found = {"iss": ISSUER, "aud": APP_ID, "serviceurl": service_url, "nbf": now - 60, "exp": now + 3600}
    found.update(changes)
    return {k: v for k, v in found.items() if v is not None}


def token(payload: dict[str, Any], *, key: Any = MICROSOFT, kid: str = KID, algorithm: str = "RS256") -> str:
    return jwt.encode(payload, key, algorithm=algorithm, headers={"kid": kid})


def typing(service_url: str) -> dict[str, Any]:
    """A typing indicator in the review channel: harmless, but its conversation is recorded when accepted."""
    activity = payload("message", service_url)
    activity.update(type="typing", id="1764007299999")
    activity.pop("text")
    activity.pop("attachments")
    return activity


async def post(teams: TeamsDriver, authorization: str | None) -> int:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return (await teams.post(typing(teams.fake.service_url), headers=headers)).status


async def test_a_token_signed_by_microsoft_for_this_bot_is_accepted(
    teams: TeamsDriver, db_state: DbState, keys: KeyServer
) -> None:
    before = await db_state()
    assert await post(teams, "Bearer " + token(claims(teams.fake.service_url))) == 200
    after = await db_state()
    assert after["conversation_ref"] == before["conversation_ref"] + 1  # the handler ran
    assert keys.fetches == 2  # the configuration, then the keys


def mutations(service_url: str) -> dict[str, str | None]:
    """Authorization headers that must all be refused: one change each from the accepted token."""
    now = int(time.time())
    impostor = new_key()
    good = claims(service_url)
    return {
        "no header": None,
        "empty header": "",
        "not a bearer token": "Basic " + token(good),
        "not a JWT": "Bearer not-a-jwt",
        "wrong audience": "Bearer " + token(claims(service_url, aud="11111111-0000-4000-8000-000000000000")),
        "no audience": "Bearer " + token(claims(service_url, aud=None)),
        "wrong issuer": "Bearer " + token(claims(service_url, iss="https://login.evil.example")),
        "issuer of another cloud": "Bearer " + token(claims(service_url, iss="https://api.botframework.us")),
        "expired": "Bearer " + token(claims(service_url, exp=now - 3600)),
        "not valid yet": "Bearer " + token(claims(service_url, nbf=now + 3600)),
        "another service URL": "Bearer " + token(claims(service_url, serviceurl="https://smba.evil.example/amer/")),
        "no service URL": "Bearer " + token(claims(service_url, serviceurl=None)),
        "signed by another key": "Bearer " + token(good, key=impostor),
        "a key id Microsoft never published": "Bearer " + token(good, key=impostor, kid="impostor"),
        "no key id": "Bearer " + jwt.encode(good, MICROSOFT, algorithm="RS256"),
        "HS256 with the public key as secret": "Bearer " + _hs256(good),
        "alg none": "Bearer " + jwt.encode(good, None, algorithm="none", headers={"kid": KID}),
        "signature changed": "Bearer " + token(good)[:-4] + "AAAA",
        "payload changed after signing": "Bearer " + _swap_payload(token(good), claims(service_url, aud="x")),
    }


def _hs256(payload: dict[str, Any]) -> str:
    """The classic confusion attack: an HMAC token keyed with the published public key."""
    header = jwt.utils.base64url_encode(json.dumps({"alg": "HS256", "typ": "JWT", "kid": KID}).encode())
    body = jwt.utils.base64url_encode(json.dumps(payload).encode())
    secret = json.dumps(jwk(MICROSOFT)).encode()
    mac = hmac.new(secret, header + b"." + body, hashlib.sha256).digest()
    return f"{header.decode()}.{body.decode()}.{jwt.utils.base64url_encode(mac).decode()}"


def _swap_payload(signed: str, payload: dict[str, Any]) -> str:
    header, _, signature = signed.split(".")
    body = jwt.utils.base64url_encode(json.dumps(payload).encode()).decode()
    return f"{header}.{body}.{signature}"


SDK_CRASHES = ("a key id Microsoft never published", "no key id", "HS256 with the public key as secret", "alg none")
"""Mutations the Bot Framework SDK refuses by raising something other than PermissionError or a PyJWT
error (IndexError looking up the key id, a bare Exception for the algorithm): bot/teams/serve.py must
still answer them 401, not 500."""


async def test_every_other_token_is_refused_and_changes_nothing(teams: TeamsDriver, db_state: DbState) -> None:
    before = await db_state()
    statuses = {name: await post(teams, header) for name, header in mutations(teams.fake.service_url).items()}
    assert {name: s for name, s in statuses.items() if s != 401} == {}
    assert all(not 200 <= status < 300 for status in statuses.values())
    assert await db_state() == before
    assert teams.fake.requests == []


async def test_tokens_the_sdk_chokes_on_are_refused_with_401(teams: TeamsDriver) -> None:
    found = mutations(teams.fake.service_url)
    assert {name: await post(teams, found[name]) for name in SDK_CRASHES} == dict.fromkeys(SDK_CRASHES, 401)
