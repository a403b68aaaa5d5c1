"""Starting ``respool sim`` and ``respool serve`` for an interop test.

``running()`` starts the simulator and a daemon that uses it (on free loopback ports, config,
database and logs in a temp dir, one API token) and stops both afterwards; the daemon must exit
0 on SIGTERM. The binary is ``$RESPOOL_BIN``, else ``target/debug/respool``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[2]
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Daemon:
    base: str  # http://127.0.0.1:PORT
    token: str
    sim_base: str
    dir: Path  # the temp dir: respool.yaml, respool.db, daemon.log, sim.log

    def log(self) -> str:
        return (self.dir / "daemon.log").read_text(errors="replace")


def binary() -> str:
    return os.environ.get("RESPOOL_BIN", str(ROOT / "target" / "debug" / "respool"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 10) -> bytes:
    """A GET with no proxy (the environment's must not see loopback requests)."""
    with _OPENER.open(url, timeout=timeout) as r:
        return r.read()


def _wait_http(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited {proc.returncode}: {log.read_text()}")
        try:
            get(url, timeout=1)
            return
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"{url} did not come up: {log.read_text()}")
            time.sleep(0.1)


@contextmanager
def running(token: str, *, run_time: str = "1s", config: str = "") -> Iterator[Daemon]:
    """The simulator (responses queued 200 ms, running ``run_time``) and a daemon polling it
    fast. ``config`` is appended to the daemon's YAML config."""
    tmp = tempfile.TemporaryDirectory()
    d = Path(tmp.name)
    sim_port, port = free_port(), free_port()
    sim_log = d / "sim.log"
    with open(sim_log, "wb") as out:
        sim = subprocess.Popen(
            [binary(), "sim", "--listen", f"127.0.0.1:{sim_port}", "--queue-time", "200ms",
             "--run-time", run_time, "--seed", "1"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    proc = None
    try:
        _wait_http(f"http://127.0.0.1:{sim_port}/_sim/stats", sim, sim_log)
        (d / "respool.yaml").write_text(
            f"""
listen: 127.0.0.1:{port}
database: {d}/respool.db
api:
  tokens: ["{token}"]
upstream:
  base_url: http://127.0.0.1:{sim_port}/v1
  api_key: sk-interop
polling:
  min_interval: 200ms
  max_interval: 1s
pricing:
  o3-deep-research: {{input: 10.0, output: 40.0, cached_input: 2.5}}
{config}
"""
        )
        log = d / "daemon.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([binary(), "serve", "--config", str(d / "respool.yaml")],
                                    stdout=out, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        _wait_http(base + "/healthz", proc, log)
        yield Daemon(base=base, token=token, sim_base=f"http://127.0.0.1:{sim_port}", dir=d)
        proc.terminate()
        rc = proc.wait(timeout=15)
        assert rc == 0, f"SIGTERM must exit 0, got {rc}: {log.read_text()}"
    finally:
        for p in (proc, sim):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        tmp.cleanup()
