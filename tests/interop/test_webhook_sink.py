"""respool's webhook sink against independent verifiers.

Starts ``respool sim`` and ``respool serve`` (``$RESPOOL_BIN``, default
``target/debug/respool``) with a webhook sink (its secret in a ``secret_file``) pointing at a
small HTTP receiver in this test, runs jobs, and checks the captured deliveries with the
official OpenAI SDK (``client.webhooks.unwrap`` / ``verify_signature``) and the reference
``standardwebhooks`` library. A tampered body or id fails both.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from openai import InvalidWebhookSignatureError, OpenAI
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_" + base64.b64encode(b"respool-sink-interop-secret-32b!").decode()
OTHER = "whsec_" + base64.b64encode(b"not-the-sink-secret-of-32-bytes!").decode()
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _binary() -> str:
    return os.environ.get("RESPOOL_BIN", str(ROOT / "target" / "debug" / "respool"))


def _wait_http(url: str, proc: subprocess.Popen, log: Path, what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {log.read_text()}")
        try:
            with _OPENER.open(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{what} did not start: {log.read_text()}")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen) -> int | None:
    proc.terminate()
    try:
        return proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


class Receiver:
    """Records every POST (headers as sent, raw body) and answers from a script, then 200."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[tuple[dict[str, str], bytes, int]] = []
        self.script: list[int] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver.lock:
                    status = receiver.script.pop(0) if receiver.script else 200
                    receiver.received.append((dict(self.headers.items()), body, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/respool"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def for_job(self, job_id: str) -> list[tuple[dict[str, str], bytes, int]]:
        with self.lock:
            return [r for r in self.received if json.loads(r[1])["data"]["job"]["id"] == job_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def daemon(receiver: Receiver):
    tmp = tempfile.TemporaryDirectory()
    d = Path(tmp.name)
    sim_port, port = _free_port(), _free_port()
    sim_log = d / "sim.log"
    sim = subprocess.Popen(
        [_binary(), "sim", "--listen", f"127.0.0.1:{sim_port}", "--queue-time", "200ms", "--run-time", "800ms"],
        stdout=open(sim_log, "wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_http(f"http://127.0.0.1:{sim_port}/_sim/stats", sim, sim_log, "the simulator")
        secret_file = d / "hook.secret"
        secret_file.write_text(SECRET + "\n")
        cfg = d / "respool.yaml"
        cfg.write_text(
            f"""
listen: 127.0.0.1:{port}
database: {d}/respool.db
upstream:
  base_url: http://127.0.0.1:{sim_port}/v1
  api_key: sk-interop
polling:
  min_interval: 200ms
  max_interval: 1s
sinks:
  hook:
    type: webhook
    url: {receiver.url}
    secret_file: {secret_file}
    timeout: 10s
notify:
  default: [hook]
  initial_backoff: 1s
  max_backoff: 2s
"""
        )
        log = d / "daemon.log"
        proc = subprocess.Popen([_binary(), "serve", "--config", str(cfg)], stdout=open(log, "wb"), stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_http(base + "/healthz", proc, log, "the daemon")
            yield base
        finally:
            assert _stop(proc) == 0, "SIGTERM must exit 0: " + log.read_text()
    finally:
        _stop(sim)
        tmp.cleanup()


def _submit(base: str, name: str) -> str:
    body = json.dumps({"name": name, "model": "gpt-5", "input": f"Write about {name}."}).encode()
    req = urllib.request.Request(base + "/v1/jobs", data=body, method="POST")
    req.add_header("content-type", "application/json")
    with _OPENER.open(req, timeout=10) as r:
        assert r.status == 201
        return json.loads(r.read())["id"]


def _get(base: str, path: str) -> dict:
    with _OPENER.open(base + path, timeout=10) as r:
        return json.loads(r.read())


def _wait_deliveries(receiver: Receiver, job_id: str, n: int, base: str, timeout: float = 45):
    deadline = time.monotonic() + timeout
    while True:
        got = receiver.for_job(job_id)
        if sum(1 for *_, status in got if status == 200) >= 1 and len(got) >= n:
            return got
        if time.monotonic() > deadline:
            events = _get(base, f"/v1/jobs/{job_id}/events")
            raise AssertionError(f"{len(got)} deliveries for {job_id}, expected {n}; timeline: {events}")
        time.sleep(0.1)


def _sdk() -> OpenAI:
    return OpenAI(api_key="x", webhook_secret=SECRET, base_url="http://127.0.0.1:9/v1")


def test_a_delivery_verifies_with_the_openai_sdk_and_standardwebhooks(daemon: str, receiver: Receiver):
    job_id = _submit(daemon, "sdk-verified")
    [(headers, body, status)] = _wait_deliveries(receiver, job_id, 1, daemon)
    assert status == 200

    client = _sdk()
    # Must not raise: the signature, the timestamp window and the header names are OpenAI's.
    client.webhooks.verify_signature(body, headers, secret=SECRET)
    client.webhooks.verify_signature(body, headers)  # the client's webhook_secret
    # `unwrap` verifies, then builds the SDK's event union. `job.completed` is not one of
    # OpenAI's types; the SDK does not reject unknown types (`construct_type` builds without
    # validating), so the result is of some arbitrary member class (in openai 3.57.0, the
    # first of the union that constructs) that still carries our fields: dispatch on `.type`.
    event = client.webhooks.unwrap(body, headers)
    assert event.type == "job.completed"
    assert event.id.startswith("evt_")
    Webhook(SECRET).verify(body, headers)

    payload = json.loads(body)
    assert payload["object"] == "event"
    assert payload["type"] == "job.completed"
    job = _get(daemon, f"/v1/jobs/{job_id}")
    assert payload["data"]["job"]["id"] == job_id
    assert payload["data"]["job"]["status"] == "completed"
    assert payload["data"]["output_text"] == job["output_text"] and job["output_text"]
    assert payload["data"]["response"]["id"] == job["response_id"]
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"].startswith("msg_")
    assert headers["webhook-id"] != payload["id"]
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 120


def test_a_tampered_delivery_fails_both_verifiers(daemon: str, receiver: Receiver):
    job_id = _submit(daemon, "tampered")
    [(headers, body, _)] = _wait_deliveries(receiver, job_id, 1, daemon)
    client = _sdk()
    tampered = body.replace(b'"status":"completed"', b'"status":"failed"', 1)
    assert tampered != body
    other_id = dict(headers, **{"webhook-id": headers["webhook-id"] + "x"})
    for b, h in [(tampered, headers), (body, other_id)]:
        with pytest.raises(InvalidWebhookSignatureError):
            client.webhooks.verify_signature(b, h, secret=SECRET)
        with pytest.raises(InvalidWebhookSignatureError):
            client.webhooks.unwrap(b, h)
        with pytest.raises(WebhookVerificationError):
            Webhook(SECRET).verify(b, h)
    # And the genuine one does not verify under another secret.
    with pytest.raises(InvalidWebhookSignatureError):
        client.webhooks.verify_signature(body, headers, secret=OTHER)
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER).verify(body, headers)


def test_a_retried_delivery_keeps_its_id_and_verifies_each_time(daemon: str, receiver: Receiver):
    with receiver.lock:
        receiver.script = [500]
    job_id = _submit(daemon, "retried")
    got = _wait_deliveries(receiver, job_id, 2, daemon)
    assert [s for *_, s in got] == [500, 200]
    (h1, b1, _), (h2, b2, _) = got
    assert h1["webhook-id"] == h2["webhook-id"]
    assert b1 == b2
    client = _sdk()
    for h, b in [(h1, b1), (h2, b2)]:
        client.webhooks.verify_signature(b, h, secret=SECRET)
        Webhook(SECRET).verify(b, h)
    assert int(h2["webhook-timestamp"]) >= int(h1["webhook-timestamp"])
