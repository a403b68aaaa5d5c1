"""respool's webhook receiver against independent signers.

Starts the real daemon (``$RESPOOL_BIN serve``, default ``target/debug/respool``) with a
webhook secret and posts deliveries signed by the reference ``standardwebhooks`` library and
by hand per OpenAI's scheme (HMAC-SHA256 over ``id.timestamp.body`` with the base64-decoded
``whsec_`` secret). Those are accepted; forged, stale, tampered and unsigned ones get 400 and
nothing is recorded (checked through ``/metrics``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_" + base64.b64encode(b"receiver-interop-secret-32bytes!").decode()
OTHER = "whsec_" + base64.b64encode(b"some-other-secret-of-32-bytes-!!").decode()
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def daemon():
    port = _free_port()
    tmp = tempfile.TemporaryDirectory()
    cfg = Path(tmp.name) / "respool.yaml"
    cfg.write_text(
        f"""
listen: 127.0.0.1:{port}
database: {tmp.name}/respool.db
upstream:
  base_url: http://127.0.0.1:9/v1
  api_key: sk-unused
webhook:
  secrets: ["{SECRET}"]
"""
    )
    binary = os.environ.get("RESPOOL_BIN", str(ROOT / "target" / "debug" / "respool"))
    log = open(Path(tmp.name) / "daemon.log", "w")
    proc = subprocess.Popen([binary, "serve", "--config", str(cfg)], stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            with _OPENER.open(base + "/healthz", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("daemon did not start: " + (Path(tmp.name) / "daemon.log").read_text())
        time.sleep(0.1)
    yield base
    proc.terminate()
    assert proc.wait(timeout=15) == 0, "SIGTERM must exit 0"
    log.close()
    tmp.cleanup()


def _post(base: str, body: bytes, headers: dict[str, str]) -> int:
    req = urllib.request.Request(base + "/webhooks/openai", data=body, method="POST")
    req.add_header("content-type", "application/json")
    for k, v in headers.items():
        req.add_header(k, v)
    try:
        with _OPENER.open(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def _recorded(base: str) -> int:
    with _OPENER.open(base + "/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("respool_webhook_deliveries "):
                return int(line.split()[1])
    raise AssertionError("metric respool_webhook_deliveries missing")


def _event(resp_id: str) -> bytes:
    return json.dumps(
        {"object": "event", "id": "evt_" + os.urandom(8).hex(), "type": "response.completed",
         "created_at": int(time.time()), "data": {"id": resp_id}}
    ).encode()


def _by_hand(secret: str, msg_id: str, ts: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def test_reference_library_signature_is_accepted(daemon):
    before = _recorded(daemon)
    body = _event("resp_ref1")
    msg_id = "wh_" + os.urandom(8).hex()
    now = time.time()
    from datetime import datetime, timezone

    sig = Webhook(SECRET).sign(msg_id, datetime.fromtimestamp(now, tz=timezone.utc), body.decode())
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(now)), "webhook-signature": sig}
    assert _post(daemon, body, headers) == 200
    assert _recorded(daemon) == before + 1
    # The same delivery again is a duplicate: 200, recorded once.
    assert _post(daemon, body, headers) == 200
    assert _recorded(daemon) == before + 1


def test_hand_signed_openai_scheme_is_accepted_with_rotation(daemon):
    before = _recorded(daemon)
    body = _event("resp_hand1")
    msg_id = "wh_" + os.urandom(8).hex()
    ts = int(time.time())
    # During a rotation OpenAI sends several signatures; one matching is enough.
    sig = _by_hand(OTHER, msg_id, ts, body) + " " + _by_hand(SECRET, msg_id, ts, body)
    assert _post(daemon, body, {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sig}) == 200
    assert _recorded(daemon) == before + 1


def test_unknown_event_type_is_acknowledged(daemon):
    body = json.dumps({"object": "event", "id": "evt_x", "type": "batch.completed",
                       "created_at": int(time.time()), "data": {"id": "batch_1"}}).encode()
    msg_id = "wh_" + os.urandom(8).hex()
    ts = int(time.time())
    assert _post(daemon, body, {"webhook-id": msg_id, "webhook-timestamp": str(ts),
                                "webhook-signature": _by_hand(SECRET, msg_id, ts, body)}) == 200


@pytest.mark.parametrize("case", ["forged", "stale", "future", "tampered", "unsigned", "no-id", "garbage"])
def test_bad_deliveries_are_refused_and_not_recorded(daemon, case):
    before = _recorded(daemon)
    body = _event("resp_bad")
    msg_id = "wh_" + os.urandom(8).hex()
    ts = int(time.time())
    secret = SECRET
    if case == "forged":
        secret = OTHER
    if case == "stale":
        ts -= 301
    if case == "future":
        ts += 301
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": _by_hand(secret, msg_id, ts, body)}
    if case == "tampered":
        body = body.replace(b"resp_bad", b"resp_evil")
    if case == "unsigned":
        headers = {}
    if case == "no-id":
        del headers["webhook-id"]
    if case == "garbage":
        body = b"not json at all"
        headers["webhook-signature"] = _by_hand(SECRET, msg_id, ts, body)
    assert _post(daemon, body, headers) == 400
    assert _recorded(daemon) == before


def test_body_over_one_mebibyte_is_refused(daemon):
    # The daemon answers 413 from the Content-Length alone and may close the connection
    # before a client has written the body, so send the headers, then read the answer.
    size = 1024 * 1024 + 10
    host, port = daemon.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = (
            f"POST /webhooks/openai HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\nwebhook-id: wh_big\r\nwebhook-timestamp: {int(time.time())}\r\n"
            f"webhook-signature: v1,AAAA\r\n\r\n"
        )
        sock.sendall(head.encode())
        try:
            sock.sendall(b" " * 65536)
        except OSError:
            pass  # the server may already have answered and closed
        answer = sock.recv(4096).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413"), answer
