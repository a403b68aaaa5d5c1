"""The email sink against a real SMTP server.

An ``aiosmtpd`` server runs in this process on a free loopback port (plain, STARTTLS with
AUTH, and TLS from the first byte, with a certificate from a throwaway ``trustme`` CA whose
PEM is given to respool as ``ca_file``). The respool binary (``$RESPOOL_BIN``, default
``target/debug/respool``) talks real SMTP to it, driven two ways:

* ``respool notify test SINK``: a sample notification of the completed job ``respool-test``;
* the full flow: ``respool sim`` upstream, ``respool serve``, a job posted to ``/v1/jobs``,
  and the message that arrives when it completes.

Each message is parsed with Python's ``email`` package (``policy.default``) and checked part
by part: headers, envelope (Bcc), the text and HTML alternatives, the two attachments. Failure
cases check the exit code, the message, and that the password never shows up anywhere.

Answers of every shape (pure ASCII, non-ASCII, one line over 1,000 characters, empty; shaped
with the simulator's ``metadata.sim`` ``output=`` directive) must reach a server that keeps
aiosmtpd's line-length check, arrive CRLF-clean, and decode back to the stored response.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import os
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("RESPOOL_BIN", str(ROOT / "target" / "debug" / "respool"))
USER = "respool-mailer"
PASSWORD = "s3cret-Pa55word-do-not-log"
WRONG_PASSWORD = "wrong-Pa55word-also-secret"
FROM = "respool <respool@example.com>"
TO = ["Alice Example <alice@example.com>", "bob@example.com"]
CC = ["carol@example.com"]
BCC = ["audit@example.com"]
REFUSED = "refused@example.com"  # the server answers 550 to RCPT
BUSY = "busy@example.com"  # the server answers 451 to RCPT

# The implicit-TLS server requires AUTH with `auth_require_tls=False` (see its fixture).
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

# Never route loopback traffic through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _secret_forms(password: str) -> list[str]:
    """The password as it could leak: plain, and as AUTH LOGIN and AUTH PLAIN send it."""
    return [
        password,
        base64.b64encode(password.encode()).decode(),
        base64.b64encode(f"\0{USER}\0{password}".encode()).decode(),
    ]


# --- the SMTP server -------------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool
    login: str | None

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]


@dataclass
class Recorder:
    """An aiosmtpd handler that keeps every message and refuses two special recipients."""

    messages: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address == REFUSED:
            return "550 5.1.1 <refused@example.com>: mailbox unavailable"
        if address == BUSY:
            return "451 4.3.2 please try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        # `session.ssl` is set by STARTTLS; a connection that was TLS from the start shows in
        # the transport.
        tls = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
        with self.lock:
            self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content, tls, login))
        return "250 2.0.0 queued"

    def wait(self, count: int, timeout: float = 30) -> list[Received]:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            if time.monotonic() > deadline:
                pytest.fail(f"expected {count} message(s), got {len(self.messages)}")
            time.sleep(0.05)

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()


class Authenticator:
    """Accepts USER/PASSWORD only, and remembers every attempt."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, str, str]] = []

    def __call__(self, server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.attempts.append((mechanism, login, password))
        if login == USER and password == PASSWORD:
            return AuthResult(success=True, auth_data=auth_data)
        # handled=False: aiosmtpd answers 535 itself.
        return AuthResult(success=False, handled=False)


@dataclass
class Smtp:
    port: int
    recorder: Recorder
    auth: Authenticator | None = None


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A throwaway CA, a server certificate for 127.0.0.1 and the CA's PEM file."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    ca_file = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return ctx, ca_file


def _start(controller: Controller, smtp: Smtp):
    controller.start()
    return smtp


@pytest.fixture(scope="module")
def plain_smtp():
    recorder = Recorder()
    port = _free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    yield _start(controller, Smtp(port, recorder))
    controller.stop()


@pytest.fixture(scope="module")
def starttls_smtp(tls_files):
    ctx, _ = tls_files
    recorder, auth = Recorder(), Authenticator()
    port = _free_port()
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=port,
        tls_context=ctx,
        require_starttls=True,
        authenticator=auth,
        auth_required=True,
        auth_require_tls=True,
    )
    yield _start(controller, Smtp(port, recorder, auth))
    controller.stop()


@pytest.fixture(scope="module")
def implicit_tls_smtp(tls_files):
    ctx, _ = tls_files
    recorder, auth = Recorder(), Authenticator()
    port = _free_port()
    # aiosmtpd only counts STARTTLS as TLS for `auth_require_tls`; this connection is TLS from
    # the first byte.
    controller = Controller(
        recorder, hostname="127.0.0.1", port=port, ssl_context=ctx, authenticator=auth, auth_required=True,
        auth_require_tls=False,
    )
    yield _start(controller, Smtp(port, recorder, auth))
    controller.stop()


@pytest.fixture(autouse=True)
def _fresh_mailboxes(request):
    for name in ("plain_smtp", "starttls_smtp", "implicit_tls_smtp"):
        if name in request.fixturenames:
            smtp = request.getfixturevalue(name)
            smtp.recorder.clear()
            if smtp.auth:
                smtp.auth.attempts.clear()


# --- config and commands ---------------------------------------------------------------------


def _yaml_list(items: list[str]) -> str:
    return json.dumps(items)  # JSON is YAML


def _sink(port: int, tls: str, *, to=TO, cc=CC, bcc=BCC, extra: str = "") -> str:
    return f"""
    type: email
    host: 127.0.0.1
    port: {port}
    tls: {tls}
    from: {json.dumps(FROM)}
    to: {_yaml_list(to)}
    cc: {_yaml_list(cc)}
    bcc: {_yaml_list(bcc)}
    timeout: 10s{extra}"""


def _config(tmp: Path, sinks: dict[str, str], *, listen_port: int | None = None, upstream: str | None = None,
            default: list[str] | None = None, extra: str = "") -> Path:
    body = f"listen: 127.0.0.1:{listen_port or _free_port()}\ndatabase: {tmp}/respool.db\n"
    body += f"upstream:\n  base_url: {upstream or 'http://127.0.0.1:9/v1'}\n  api_key: sk-test\n"
    body += "polling:\n  min_interval: 200ms\n  max_interval: 1s\n"
    body += "sinks:\n" + "".join(f"  {name}:{text}\n" for name, text in sinks.items())
    if default:
        body += f"notify:\n  default: {_yaml_list(default)}\n  initial_backoff: 60s\n"
    body += extra
    path = tmp / "respool.yaml"
    path.write_text(body)
    return path


def _notify_test(cfg: Path, sink: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, RESPOOL_LOG="trace", NO_COLOR="1")
    return subprocess.run(
        [BIN, "notify", "test", sink, "--config", str(cfg)], capture_output=True, text=True, timeout=60, env=env
    )


def _last_line(out: subprocess.CompletedProcess[str]) -> str:
    """The error `notify test` prints last (the log at trace level comes before it)."""
    lines = out.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def _assert_no_secret(text: str, password: str = PASSWORD) -> None:
    for form in _secret_forms(password):
        assert form not in text, "the password leaked"


# --- message checks --------------------------------------------------------------------------


def _addrs(msg: EmailMessage, header: str) -> list[str]:
    value = msg[header]
    return [a.addr_spec for a in value.addresses] if value is not None else []


def _check_message(got: Received, *, job_name: str, job_id_prefix: str = "job_",
                   extra_attachments: bool = False) -> dict:
    """Checks what every notification mail must be; returns the parts for further checks."""
    msg = got.message
    assert got.mail_from == "respool@example.com"
    assert sorted(got.rcpt_tos) == sorted(["alice@example.com", "bob@example.com", "carol@example.com",
                                           "audit@example.com"])
    assert msg["bcc"] is None, "Bcc recipients get the mail but no Bcc header"
    assert "audit@example.com" not in got.data.decode("ascii", "replace")
    assert msg["from"].addresses[0].display_name == "respool"
    assert _addrs(msg, "from") == ["respool@example.com"]
    assert _addrs(msg, "to") == ["alice@example.com", "bob@example.com"]
    assert msg["to"].addresses[0].display_name == "Alice Example"
    assert _addrs(msg, "cc") == ["carol@example.com"]
    assert job_name in msg["subject"] and "completed" in msg["subject"]
    assert msg["date"] is not None and msg["date"].datetime is not None
    assert msg["mime-version"] == "1.0"
    assert msg["auto-submitted"] == "auto-generated"
    job_id = msg["x-respool-job-id"]
    assert job_id.startswith(job_id_prefix)
    assert msg["x-respool-event"] == "job.completed"
    assert msg["message-id"].startswith(f"<{job_id}.completed.") and msg["message-id"].endswith("@example.com>")

    assert msg.get_content_type() == "multipart/mixed"
    parts = list(msg.iter_parts())
    if extra_attachments:
        parts = parts[:3]
    assert [p.get_content_type() for p in parts] == ["multipart/alternative", "text/markdown", "application/json"]
    alternative = [p.get_content_type() for p in parts[0].iter_parts()]
    assert alternative == ["text/plain", "text/html"], "plain first: clients show the last one they can"
    text = msg.get_body(preferencelist=("plain",)).get_content()
    html = msg.get_body(preferencelist=("html",)).get_content()
    assert job_name in text and job_id in text
    assert "<h1>" in html and job_name in html
    assert "<script" not in html.lower()

    attachments = list(msg.iter_attachments())
    names = [a.get_filename() for a in attachments]
    if extra_attachments:
        attachments = attachments[:2]
        names = names[:2]
    assert names == [f"{job_name}-{job_id}.md", f"{job_name}-{job_id}.json"]
    md, js = attachments
    assert md.get_content_disposition() == "attachment"
    assert md.get_content_type() == "text/markdown" and md.get_content_charset() == "utf-8"
    assert js.get_content_type() == "application/json"
    report = md.get_payload(decode=True).decode("utf-8")
    assert report.startswith(f"# {job_name}\n")
    assert job_id in report
    response = json.loads(js.get_payload(decode=True))
    assert response["object"] == "response" and response["status"] == "completed"
    return {"msg": msg, "text": text, "html": html, "report": report, "response": response, "job_id": job_id}


# --- `respool notify test` -------------------------------------------------------------------


def test_notify_test_over_plain_smtp(plain_smtp: Smtp, tmp_path: Path):
    cfg = _config(tmp_path, {"mail": _sink(plain_smtp.port, "none")})
    out = _notify_test(cfg, "mail")
    assert out.returncode == 0, out.stderr
    (got,) = plain_smtp.recorder.wait(1)
    assert not got.tls and got.login is None
    parts = _check_message(got, job_name="respool-test")
    assert "Sample report" in parts["text"] and "Sample report" in parts["report"]
    assert "<h1>Sample report</h1>" in parts["html"]
    assert parts["response"]["id"] == "resp_sample"
    # The sample job is the same every time: its Message-ID is not, or Gmail would drop the
    # second test as a duplicate.
    assert ".test-" in parts["msg"]["message-id"]


def test_notify_test_with_starttls_and_auth(starttls_smtp: Smtp, tls_files, tmp_path: Path):
    _, ca_file = tls_files
    extra = f"\n    username: {USER}\n    password: {json.dumps(PASSWORD)}\n    ca_file: {ca_file}"
    cfg = _config(tmp_path, {"secure": _sink(starttls_smtp.port, "starttls", extra=extra)})
    out = _notify_test(cfg, "secure")
    assert out.returncode == 0, out.stderr
    (got,) = starttls_smtp.recorder.wait(1)
    assert got.tls, "the message went over the upgraded connection"
    assert got.login == USER
    assert starttls_smtp.auth is not None
    assert [(login, pw) for _, login, pw in starttls_smtp.auth.attempts] == [(USER, PASSWORD)]
    _check_message(got, job_name="respool-test")
    _assert_no_secret(out.stdout + out.stderr)


def test_notify_test_with_implicit_tls_and_password_file(implicit_tls_smtp: Smtp, tls_files, tmp_path: Path):
    _, ca_file = tls_files
    pw_file = tmp_path / "smtp-password"
    pw_file.write_text(PASSWORD + "\n")
    extra = f"\n    username: {USER}\n    password_file: {pw_file}\n    ca_file: {ca_file}"
    cfg = _config(tmp_path, {"smtps": _sink(implicit_tls_smtp.port, "tls", extra=extra)})
    out = _notify_test(cfg, "smtps")
    assert out.returncode == 0, out.stderr
    (got,) = implicit_tls_smtp.recorder.wait(1)
    assert got.tls and got.login == USER
    _check_message(got, job_name="respool-test")
    _assert_no_secret(out.stdout + out.stderr)


def test_wrong_password_fails_clearly_without_leaking_it(starttls_smtp: Smtp, tls_files, tmp_path: Path):
    _, ca_file = tls_files
    extra = f"\n    username: {USER}\n    password: {json.dumps(WRONG_PASSWORD)}\n    ca_file: {ca_file}"
    cfg = _config(tmp_path, {"secure": _sink(starttls_smtp.port, "starttls", extra=extra)})
    out = _notify_test(cfg, "secure")
    assert out.returncode != 0
    last = _last_line(out)
    assert "authentication failed" in last and USER in last and "535" in last, out.stderr
    _assert_no_secret(out.stdout + out.stderr, WRONG_PASSWORD)
    assert starttls_smtp.auth is not None
    assert [(login, pw) for _, login, pw in starttls_smtp.auth.attempts] == [(USER, WRONG_PASSWORD)]
    assert starttls_smtp.recorder.messages == []


def test_unknown_ca_is_a_tls_failure(starttls_smtp: Smtp, tmp_path: Path):
    # No ca_file: the throwaway CA is not trusted, so nothing (no AUTH) is sent.
    extra = f"\n    username: {USER}\n    password: {json.dumps(PASSWORD)}"
    cfg = _config(tmp_path, {"secure": _sink(starttls_smtp.port, "starttls", extra=extra)})
    out = _notify_test(cfg, "secure")
    assert out.returncode != 0
    assert "invalid peer certificate" in _last_line(out), out.stderr
    _assert_no_secret(out.stdout + out.stderr)
    assert starttls_smtp.auth is not None and starttls_smtp.auth.attempts == []
    assert starttls_smtp.recorder.messages == []


def test_plain_connection_to_a_starttls_only_server_is_refused(starttls_smtp: Smtp, tmp_path: Path):
    cfg = _config(tmp_path, {"mail": _sink(starttls_smtp.port, "none")})
    out = _notify_test(cfg, "mail")
    assert out.returncode != 0
    assert "530" in _last_line(out) and "STARTTLS" in _last_line(out), out.stderr
    assert starttls_smtp.recorder.messages == []


def test_refused_mailbox_is_reported(plain_smtp: Smtp, tmp_path: Path):
    cfg = _config(tmp_path, {"mail": _sink(plain_smtp.port, "none", to=[REFUSED], cc=[], bcc=[])})
    out = _notify_test(cfg, "mail")
    assert out.returncode != 0
    assert "550" in _last_line(out) and "mailbox unavailable" in _last_line(out), out.stderr
    assert plain_smtp.recorder.messages == []


def test_no_server_is_reported(tmp_path: Path):
    cfg = _config(tmp_path, {"mail": _sink(_free_port(), "none")})
    out = _notify_test(cfg, "mail")
    assert out.returncode != 0
    assert "connection failed" in _last_line(out) and "refused" in _last_line(out), out.stderr


# --- the full flow: sim → serve → email ------------------------------------------------------


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[1]} exited with {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            with _OPENER.open(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"{url} did not come up: {log.read_text()[-3000:]}")
            time.sleep(0.1)


def _http(method: str, url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    with _OPENER.open(req, timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture
def processes():
    procs: list[subprocess.Popen] = []
    yield procs
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()


def test_full_flow_job_completion_is_mailed(plain_smtp: Smtp, starttls_smtp: Smtp, tls_files, tmp_path: Path,
                                            processes):
    _, ca_file = tls_files
    sim_port, port = _free_port(), _free_port()
    sim_log = tmp_path / "sim.log"
    with open(sim_log, "wb") as f:
        sim = subprocess.Popen([BIN, "sim", "--listen", f"127.0.0.1:{sim_port}", "--run-time", "500ms"],
                               stdout=f, stderr=subprocess.STDOUT)
    processes.append(sim)
    _wait_http(f"http://127.0.0.1:{sim_port}/_sim/stats", sim, sim_log)

    pw_file = tmp_path / "smtp-password"
    pw_file.write_text(PASSWORD)
    secure = f"\n    username: {USER}\n    password_file: {pw_file}\n    ca_file: {ca_file}"
    cfg = _config(
        tmp_path,
        {
            "mail": _sink(plain_smtp.port, "none"),
            "secure": _sink(starttls_smtp.port, "starttls", extra=secure),
            "refused": _sink(plain_smtp.port, "none", to=[REFUSED], cc=[], bcc=[]),
            "busy": _sink(plain_smtp.port, "none", to=[BUSY], cc=[], bcc=[]),
        },
        listen_port=port,
        upstream=f"http://127.0.0.1:{sim_port}/v1",
        default=["mail", "secure", "refused", "busy"],
    )
    log = tmp_path / "daemon.log"
    with open(log, "wb") as f:
        daemon = subprocess.Popen([BIN, "serve", "--config", str(cfg)], stdout=f, stderr=f,
                                  env=dict(os.environ, RESPOOL_LOG="debug", NO_COLOR="1"))
    processes.append(daemon)
    base = f"http://127.0.0.1:{port}"
    _wait_http(base + "/healthz", daemon, log)

    # The input ends up quoted in the simulated report: the HTML part must not carry the script.
    job = _http("POST", base + "/v1/jobs", {
        "name": "weekly-report", "model": "gpt-5",
        "input": "Summarize the weekly metrics <script>alert('pwned')</script> for the team",
    })
    job_id = job["id"]

    (plain,) = plain_smtp.recorder.wait(1)
    (secure_got,) = starttls_smtp.recorder.wait(1)
    parts = _check_message(plain, job_name="weekly-report")
    assert parts["job_id"] == job_id
    assert parts["msg"]["message-id"] == f"<{job_id}.completed.mail@example.com>", "stable per (job, event, sink)"
    assert "<h1>Report:" in parts["html"] and "<h2>Summary</h2>" in parts["html"]
    assert "# Report:" in parts["report"]
    stored = _http("GET", f"{base}/v1/jobs/{job_id}/response")
    assert parts["response"] == stored, "the .json attachment is the whole stored response"

    assert secure_got.tls and secure_got.login == USER
    secure_parts = _check_message(secure_got, job_name="weekly-report")
    assert secure_parts["msg"]["message-id"] == f"<{job_id}.completed.secure@example.com>"

    # 550 is permanent: a dead letter after one try. 451 is temporary: pending, to be retried.
    deadline = time.monotonic() + 20
    while True:
        rows = {r["sink"]: r for r in _http("GET", f"{base}/v1/notifications?job_id={job_id}")["data"]}
        if rows.get("refused", {}).get("state") == "dead" and rows.get("busy", {}).get("attempts", 0) >= 1:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"notification states: {rows}")
        time.sleep(0.1)
    assert rows["mail"]["state"] == "delivered" and rows["secure"]["state"] == "delivered"
    assert rows["refused"]["attempts"] == 1 and "550" in rows["refused"]["last_error"]
    assert rows["busy"]["state"] == "pending" and "451" in rows["busy"]["last_error"]

    daemon.terminate()
    daemon.wait(timeout=15)
    _assert_no_secret(log.read_text())
    assert starttls_smtp.auth is not None
    assert [(login, pw) for _, login, pw in starttls_smtp.auth.attempts] == [(USER, PASSWORD)]


def _get_bytes(url: str) -> bytes:
    with _OPENER.open(url, timeout=10) as r:
        return r.read()


def test_artifacts_are_attached_within_the_limit_and_linked_otherwise(plain_smtp: Smtp, tmp_path: Path, processes):
    """A code interpreter job's files and a generated image reach the mailbox byte for byte
    under ASCII names; past ``artifacts.email_max_bytes`` they are listed with a link instead."""
    sim_port, port = _free_port(), _free_port()
    sim_log = tmp_path / "sim.log"
    with open(sim_log, "wb") as f:
        sim = subprocess.Popen([BIN, "sim", "--listen", f"127.0.0.1:{sim_port}", "--run-time", "300ms"],
                               stdout=f, stderr=subprocess.STDOUT)
    processes.append(sim)
    _wait_http(f"http://127.0.0.1:{sim_port}/_sim/stats", sim, sim_log)
    # Room for the CSV and the chart, not for the three files after them.
    cfg = _config(
        tmp_path,
        {"mail": _sink(plain_smtp.port, "none")},
        listen_port=port,
        upstream=f"http://127.0.0.1:{sim_port}/v1",
        default=["mail"],
        extra=f"public_url: https://respool.example.com\nartifacts:\n  email_max_bytes: 1500\n",
    )
    log = tmp_path / "daemon.log"
    with open(log, "wb") as f:
        daemon = subprocess.Popen([BIN, "serve", "--config", str(cfg)], stdout=f, stderr=f,
                                  env=dict(os.environ, NO_COLOR="1"))
    processes.append(daemon)
    base = f"http://127.0.0.1:{port}"
    _wait_http(base + "/healthz", daemon, log)
    job = _http("POST", base + "/v1/jobs", {
        "name": "rain-analysis", "model": "gpt-4.1",
        "input": "SIM_CONTAINER_FILES=5 SIM_IMAGE_COUNT=1 Rainfall in Zürich and 東京, with a chart",
        "tools": [{"type": "code_interpreter", "container": {"type": "auto"}},
                  {"type": "image_generation", "size": "1024x1024", "quality": "low"}],
    })
    job_id = job["id"]
    (got,) = plain_smtp.recorder.wait(1)
    parts = _check_message(got, job_name="rain-analysis", extra_attachments=True)
    listed = _http("GET", f"{base}/v1/jobs/{job_id}/artifacts")["data"]
    assert len(listed) == 6, listed
    attached = {a.get_filename(): a for a in list(parts["msg"].iter_attachments())[2:]}
    used = 0
    expect_attached = []
    for a in listed:
        assert a["error"] is None, a
        # Counted as sent: base64, 76 characters and a CRLF a line.
        chars = (a["bytes"] + 2) // 3 * 4
        wire = chars + (chars + 75) // 76 * 2
        if used + wire <= 1500:
            used += wire
            expect_attached.append(a)
    assert expect_attached and len(expect_attached) < len(listed), listed
    names = list(attached)
    assert all(n.isascii() for n in names), names
    assert len(names) == len(expect_attached), (names, expect_attached)
    for part, a in zip(attached.values(), expect_attached):
        assert part.get_payload(decode=True) == _get_bytes(base + a["url"]), a["name"]
        assert part.get_content_type() == a["media_type"].split(";")[0], a
    # Every one is named in the text part, those not attached with their link.
    text = parts["text"]
    assert "Artifacts:" in text
    for a in listed:
        assert a["name"] in text, a["name"]
    not_attached = [a for a in listed if a not in expect_attached]
    for a in not_attached:
        assert f"https://respool.example.com/jobs/{job_id}/artifacts/" in text
    daemon.terminate()
    daemon.wait(timeout=15)


# --- what every server takes: CRLF-clean parts, short lines --------------------------------
#
# aiosmtpd keeps its default line-length check (RFC 5321: 1,000 octets with the CRLF) and
# reads lines up to CRLF, so a part sent `7bit` with bare LFs arrives as one over-long line
# and is refused with `500 Line too long`, as Postfix 3.9+ refuses bare LFs. The simulator's
# `output=` directive shapes each job's answer.

NON_ASCII_INPUT = "Résumé of café prices in 東京 — naïve über-estimates, ✅ or ❌?"


@dataclass(frozen=True)
class Shape:
    name: str
    input: str
    sim: str | None


SHAPES = [
    # Short: every line of the JSON is short too, which lettre alone sent `7bit`.
    Shape("ascii", "What is the answer?", "output=text:The answer is 42.\\nThat is all."),
    Shape("non-ascii", NON_ASCII_INPUT, None),
    Shape("long-line", "One long line, please", "output=line:1500"),
    Shape("empty", "Say nothing", "output=empty"),
]


@pytest.fixture(scope="module")
def shaped_mail(tmp_path_factory):
    """One simulator and one daemon; a completed job per shape, mailed to a plain server.

    Returns, per shape name: the notification row, the message received (or None), the stored
    response and the job id.
    """
    tmp = tmp_path_factory.mktemp("shapes")
    recorder = Recorder()
    smtp_port = _free_port()
    # Default settings only: aiosmtpd's line-length check must stay on.
    controller = Controller(recorder, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    procs: list[subprocess.Popen] = []
    try:
        sim_port, port = _free_port(), _free_port()
        sim_log = tmp / "sim.log"
        with open(sim_log, "wb") as f:
            procs.append(subprocess.Popen([BIN, "sim", "--listen", f"127.0.0.1:{sim_port}", "--run-time", "300ms"],
                                          stdout=f, stderr=subprocess.STDOUT))
        _wait_http(f"http://127.0.0.1:{sim_port}/_sim/stats", procs[0], sim_log)
        cfg = _config(tmp, {"mail": _sink(smtp_port, "none")}, listen_port=port,
                      upstream=f"http://127.0.0.1:{sim_port}/v1", default=["mail"])
        log = tmp / "daemon.log"
        with open(log, "wb") as f:
            procs.append(subprocess.Popen([BIN, "serve", "--config", str(cfg)], stdout=f, stderr=f,
                                          env=dict(os.environ, RESPOOL_LOG="debug", NO_COLOR="1")))
        base = f"http://127.0.0.1:{port}"
        _wait_http(base + "/healthz", procs[1], log)

        jobs = {}
        for shape in SHAPES:
            body: dict = {"name": f"shape-{shape.name}", "model": "gpt-5", "input": shape.input}
            if shape.sim:
                body["metadata"] = {"sim": shape.sim}
            jobs[shape.name] = _http("POST", base + "/v1/jobs", body)["id"]

        # Delivered or dead (a 5xx from the server is permanent): either way, settled.
        deadline = time.monotonic() + 30
        rows: dict[str, dict] = {}
        while True:
            rows = {}
            for name, job_id in jobs.items():
                data = _http("GET", f"{base}/v1/notifications?job_id={job_id}")["data"]
                if data and data[0]["state"] in ("delivered", "dead"):
                    rows[name] = data[0]
            if len(rows) == len(jobs):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"notifications not settled: {rows}\n{log.read_text()[-3000:]}")
            time.sleep(0.1)

        with recorder.lock:
            by_job = {email.message_from_bytes(m.data, policy=email.policy.default)["x-respool-job-id"]: m
                      for m in recorder.messages}
        yield {
            name: {
                "row": rows[name],
                "got": by_job.get(job_id),
                "response": _http("GET", f"{base}/v1/jobs/{job_id}/response"),
                "job_id": job_id,
            }
            for name, job_id in jobs.items()
        }
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        controller.stop()


def _output_text(response: dict) -> str:
    (message,) = [item for item in response["output"] if item["type"] == "message"]
    return "".join(c["text"] for c in message["content"] if c["type"] == "output_text")


def _assert_wire_safe(data: bytes) -> None:
    """CRLF only, at most 998 octets a line, 7-bit: what RFC 5321 and 5322 ask of a message."""
    assert data.isascii(), "8-bit data in a message sent without 8BITMIME"
    assert b"\n" not in data.replace(b"\r\n", b""), "a bare LF"
    assert b"\r" not in data.replace(b"\r\n", b""), "a bare CR"
    longest = max(len(line) for line in data.split(b"\r\n"))
    assert longest <= 998, f"a line of {longest} octets"


@pytest.mark.parametrize("shape", [s.name for s in SHAPES])
def test_every_output_shape_is_accepted_and_decodes_back(shaped_mail, shape: str):
    case = shaped_mail[shape]
    row, got, stored, job_id = case["row"], case["got"], case["response"], case["job_id"]
    assert row["state"] == "delivered", f"the server refused the message: {row.get('last_error')}"
    assert got is not None, "delivered, but no message arrived"
    _assert_wire_safe(got.data)

    expected = _output_text(stored)
    match shape:
        case "ascii":
            assert expected == "The answer is 42.\nThat is all."
        case "non-ascii":
            assert not expected.isascii() and NON_ASCII_INPUT in expected
        case "long-line":
            assert len(expected) == 1500 and expected.isascii() and "\n" not in expected
        case "empty":
            assert expected == ""

    msg = got.message
    assert msg["x-respool-job-id"] == job_id
    assert msg.get_content_type() == "multipart/mixed"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["multipart/alternative", "text/markdown", "application/json"]
    for part in msg.walk():
        if not part.is_multipart():
            cte = part["content-transfer-encoding"]
            assert cte in ("base64", "quoted-printable", "7bit"), f"{part.get_content_type()}: {cte}"

    # Text bodies travel with CRLF line ends; compare with LF ones.
    text = msg.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")
    html = msg.get_body(preferencelist=("html",)).get_content().replace("\r\n", "\n")
    assert f"shape-{shape}" in text and job_id in text
    assert "</html>" in html
    md, js = msg.iter_attachments()
    report = md.get_payload(decode=True).decode("utf-8")
    assert report.startswith(f"# shape-{shape}\n")
    assert json.loads(js.get_payload(decode=True)) == stored, "the .json attachment is the stored response"

    # The answer reaches every part intact: a long line is not broken, non-ASCII not mangled.
    lines = [line for line in expected.splitlines() if line.strip()]
    if shape == "non-ascii":
        # The report quotes the input; its citations are rendered, so look at that line.
        lines = [line for line in lines if NON_ASCII_INPUT in line]
        assert lines
    for line in lines:
        assert line in text, f"text/plain lacks {line[:60]!r}"
        assert line in report, f"the Markdown report lacks {line[:60]!r}"
    if shape == "long-line":
        assert expected.strip() in html
    if shape == "non-ascii":
        assert "東京" in html and "Résumé" in html
    if shape == "empty":
        assert "---" not in report, "no output section for an empty answer"
