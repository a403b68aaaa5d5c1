"""respool's ``/metrics`` against the reference Prometheus text parser.

Starts the simulator and the real daemon (``$RESPOOL_BIN``, default ``target/debug/respool``)
as processes, runs a job through them, scrapes ``/metrics`` and parses it with
``prometheus_client.parser.text_string_to_metric_families`` (the parser of the official
Prometheus Python client, which refuses malformed exposition text). Checks the documented
families, their types and a few values.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
BINARY = os.environ.get("RESPOOL_BIN", str(ROOT / "target" / "debug" / "respool"))
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> bytes:
    with _OPENER.open(url, timeout=5) as r:
        return r.read()


def _wait(what: str, cond, within: float = 30.0):
    deadline = time.time() + within
    while True:
        try:
            value = cond()
            if value:
                return value
        except OSError:
            pass
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def daemon():
    tmp = tempfile.TemporaryDirectory()
    sim_port, port = _free_port(), _free_port()
    logs = open(Path(tmp.name) / "processes.log", "w")
    sim = subprocess.Popen(
        [BINARY, "sim", "--listen", f"127.0.0.1:{sim_port}", "--queue-time", "100ms",
         "--run-time", "300ms"],
        stdout=logs, stderr=logs,
    )
    cfg = Path(tmp.name) / "respool.yaml"
    cfg.write_text(
        f"""
listen: 127.0.0.1:{port}
database: {tmp.name}/respool.db
upstream:
  base_url: http://127.0.0.1:{sim_port}/v1
  api_key: sk-test
polling:
  min_interval: 200ms
  max_interval: 1s
pricing:
  gpt-5: {{input: 1.25, output: 10}}
budget:
  daily_usd: 20
"""
    )
    proc = subprocess.Popen([BINARY, "serve", "--config", str(cfg)], stdout=logs, stderr=logs)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait("the daemon", lambda: _get(base + "/healthz"))
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        sim.terminate()
        sim.wait(timeout=15)
        logs.close()
        tmp.cleanup()


def _families(base: str) -> dict:
    text = _get(base + "/metrics").decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def _value(families: dict, family: str, sample: str, **labels) -> float | None:
    for s in families[family].samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


def test_metrics_parse_with_the_reference_parser(daemon):
    req = urllib.request.Request(
        daemon + "/v1/jobs",
        data=json.dumps({"name": "measured", "model": "gpt-5", "input": "hello"}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with _OPENER.open(req, timeout=5) as r:
        job_id = json.loads(r.read())["id"]
    _wait(
        "the job to complete",
        lambda: json.loads(_get(f"{daemon}/v1/jobs/{job_id}"))["status"] == "completed",
    )

    families = _families(daemon)
    # The parser strips `_total` from counter family names.
    expected = {
        "respool_database_info": "gauge",
        "respool_jobs": "gauge",
        "respool_queue_depth": "gauge",
        "respool_webhook_deliveries": "gauge",
        "respool_budget_spent_usd": "gauge",
        "respool_budget_limit_usd": "gauge",
        "respool_submissions": "counter",
        "respool_polls": "counter",
        "respool_upstream_request_duration_seconds": "histogram",
    }
    for name, kind in expected.items():
        assert name in families, f"{name} missing: {sorted(families)}"
        assert families[name].type == kind, (name, families[name].type)
        assert families[name].documentation, f"{name} has no HELP"

    assert _value(
        families, "respool_database_info", "respool_database_info", backend="sqlite"
    ) == 1
    assert _value(families, "respool_jobs", "respool_jobs", status="completed") == 1
    assert _value(families, "respool_jobs", "respool_jobs", status="held") == 0
    assert _value(families, "respool_queue_depth", "respool_queue_depth", queue="pending") == 0
    assert _value(
        families, "respool_submissions", "respool_submissions_total", outcome="accepted"
    ) == 1
    assert _value(families, "respool_budget_limit_usd", "respool_budget_limit_usd", period="day") == 20
    assert _value(families, "respool_budget_spent_usd", "respool_budget_spent_usd", period="day") > 0
    buckets = [
        s for s in families["respool_upstream_request_duration_seconds"].samples
        if s.name.endswith("_bucket") and s.labels.get("endpoint") == "create"
    ]
    assert buckets and buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == 1
