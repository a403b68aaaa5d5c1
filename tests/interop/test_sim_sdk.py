"""The simulator against the official `openai` Python SDK.

Starts the simulator as a subprocess (``RESPOOL_SIM_CMD``, a shell-style command, or
``$RESPOOL_BIN sim`` with ``RESPOOL_BIN`` defaulting to ``target/debug/respool``) on a free
loopback port, then drives it with ``OpenAI(base_url=..., api_key="sk-test")``: background
create + retrieve, cancel, delete, streaming with resume, 429 retries, ``webhooks.unwrap``, the
webhook endpoints (``client.webhooks.create`` … ``rotate_secret``, ``test``), files
(``client.files.*``), vector stores with the SDK's polling helpers, ``file_search``, image
generation, the code interpreter with its container files (``client.containers.*``), remote
MCP servers (``McpListTools``, ``McpCall``, their stream events, an approval round with
``McpApprovalRequest``), the function-calling loop of the SDK guide (ASCII, non-ASCII, empty
and large outputs; the 400s for unknown and missing outputs; argument deltas in a stream), and
conversations (``client.conversations.*``, two responses on one, ``conversation_locked``).
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import shlex
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from openai import BadRequestError, NotFoundError, OpenAI, RateLimitError
from openai.types.responses import (
    ResponseCodeInterpreterToolCall,
    ResponseFileSearchToolCall,
    ResponseImageGenCallPartialImageEvent,
    ResponseMcpCallArgumentsDeltaEvent,
    ResponseMcpCallArgumentsDoneEvent,
    ResponseMcpCallCompletedEvent,
    ResponseMcpListToolsCompletedEvent,
    ResponseOutputMessage,
    ResponseReasoningItem,
)
from openai.types.responses.mcp_tool_call_error import HTTPError
from openai.types.responses.response_output_item import ImageGenerationCall, McpCall, McpListTools
from openai.types.responses.response_output_text import (
    AnnotationContainerFileCitation,
    AnnotationFileCitation,
    AnnotationURLCitation,
)
from standardwebhooks.webhooks import Webhook

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = {"completed", "failed", "incomplete", "cancelled"}
SECRET = "whsec_" + base64.b64encode(b"respool-interop-secret-32-bytes!").decode()

# Never route loopback traffic through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sim_argv(port: int) -> list[str]:
    cmd = os.environ.get("RESPOOL_SIM_CMD")
    if cmd:
        argv = shlex.split(cmd)
    else:
        binary = os.environ.get("RESPOOL_BIN", str(ROOT / "target" / "debug" / "respool"))
        argv = [binary, "sim"]
    return argv + [
        "--listen", f"127.0.0.1:{port}",
        "--queue-time", "200ms",
        "--run-time", "800ms",
        "--seed", "1",
        "--webhook-retry-schedule", "100ms,200ms",
    ]


class Sim:
    def __init__(self, root: str, proc: subprocess.Popen[bytes]) -> None:
        self.root = root
        self.base_url = root + "/v1"
        self.proc = proc

    def control(self, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.root + path, data=data, method="POST" if data else "GET")
        req.add_header("content-type", "application/json")
        with _OPENER.open(req, timeout=5) as resp:
            return json.loads(resp.read())

    def stats(self) -> dict:
        return self.control("/_sim/stats")


@pytest.fixture(scope="module")
def sim():
    port = _free_port()
    log = open(Path(tempfile.gettempdir()) / f"respool-sim-interop-{port}.log", "wb")
    proc = subprocess.Popen(_sim_argv(port), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    s = Sim(f"http://127.0.0.1:{port}", proc)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            pytest.fail(f"simulator exited with {proc.returncode}; see {log.name}")
        try:
            s.stats()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("simulator did not start")
            time.sleep(0.1)
    yield s
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture
def client(sim: Sim):
    sim.control("/_sim/faults", {})
    yield OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=2, timeout=20)
    sim.control("/_sim/faults", {})
    sim.control("/_sim/webhook", {"url": None, "secrets": []})


def _wait_terminal(client: OpenAI, response_id: str, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while True:
        r = client.responses.retrieve(response_id)
        if r.status in TERMINAL or time.monotonic() > deadline:
            return r
        time.sleep(0.1)


def test_background_create_then_retrieve_until_completed(client: OpenAI, sim: Sim):
    before = sim.stats()["creates_by_job_id"].get("py-1", 0)
    r = client.responses.create(
        model="o3",
        input="Summarize the history of the bicycle.",
        background=True,
        store=True,
        reasoning={"effort": "low", "summary": "auto"},
        metadata={"respool_job_id": "py-1"},
    )
    assert r.id.startswith("resp_")
    assert r.status == "queued"
    assert r.background is True
    assert r.output == []
    assert r.usage is None
    assert r._request_id and r._request_id.startswith("req_")

    done = _wait_terminal(client, r.id)
    assert done.status == "completed"
    assert "history of the bicycle" in done.output_text
    assert done.completed_at is not None
    assert done.usage is not None
    assert done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens
    assert done.usage.output_tokens_details.reasoning_tokens > 0
    assert isinstance(done.output[0], ResponseReasoningItem)
    message = done.output[-1]
    assert isinstance(message, ResponseOutputMessage)
    text_part = message.content[0]
    assert text_part.annotations, "the report cites sources"
    for a in text_part.annotations:
        assert isinstance(a, AnnotationURLCitation)
        assert a.url in text_part.text[a.start_index : a.end_index]
    assert sim.stats()["creates_by_job_id"]["py-1"] == before + 1
    items = client.responses.input_items.list(r.id)
    assert items.data[0].type == "message"
    assert items.data[0].content[0].text == "Summarize the history of the bicycle."


def test_cancel_is_idempotent_and_delete_forgets(client: OpenAI):
    r = client.responses.create(
        model="gpt-5", input="slow one", background=True, metadata={"sim": "queue=30s"}
    )
    cancelled = client.responses.cancel(r.id)
    assert cancelled.status == "cancelled"
    assert client.responses.cancel(r.id).status == "cancelled"
    assert client.responses.delete(r.id) is None
    with pytest.raises(NotFoundError) as err:
        client.responses.retrieve(r.id)
    assert "Response with id" in err.value.message


def test_cancel_completed_is_a_bad_request(client: OpenAI):
    r = client.responses.create(model="gpt-5", input="quick", background=True, metadata={"sim": "queue=0s;run=50ms"})
    assert _wait_terminal(client, r.id).status == "completed"
    with pytest.raises(BadRequestError) as err:
        client.responses.cancel(r.id)
    assert "Cannot cancel a completed response." in str(err.value)


def test_validation_errors_surface_param(client: OpenAI):
    with pytest.raises(BadRequestError) as err:
        client.responses.create(model="gpt-5", input="x", previous_response_id="resp_does_not_exist")
    assert err.value.code == "previous_response_not_found"
    assert err.value.param == "previous_response_id"
    with pytest.raises(BadRequestError) as err:
        client.responses.create(model="gpt-5", input="x", max_output_tokens=8)
    assert err.value.param == "max_output_tokens"


def test_stream_with_sequence_numbers_and_resume(client: OpenAI):
    stream = client.responses.create(
        model="gpt-5", input="Stream me a report", background=True, stream=True
    )
    events = list(stream)
    assert events[0].type == "response.created"
    assert events[0].response.status == "queued"
    assert [e.type for e in events[1:3]] == ["response.queued", "response.in_progress"]
    assert events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    completed = events[-1].response
    assert "Stream me a report" in completed.output_text
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == completed.output_text

    n = 5
    resumed = list(client.responses.retrieve(completed.id, stream=True, starting_after=n))
    assert [e.sequence_number for e in resumed] == list(range(n + 1, len(events)))
    assert all(e.type != "response.created" for e in resumed)
    assert resumed[-1].type == "response.completed"


def test_rate_limit_is_retried_after_retry_after(client: OpenAI, sim: Sim):
    before = sim.stats()["served_429"]
    sim.control("/_sim/faults", {"rate_limit_next": 2, "retry_after": "300ms"})
    started = time.monotonic()
    r = client.responses.create(model="gpt-5", input="retry me", background=True)
    assert r.status == "queued"
    assert time.monotonic() - started >= 0.55, "the SDK waited retry-after-ms twice"
    assert sim.stats()["served_429"] == before + 2

    sim.control("/_sim/faults", {"rate_limit_next": 1, "retry_after": "2s"})
    with pytest.raises(RateLimitError) as err:
        client.with_options(max_retries=0).responses.create(model="gpt-5", input="x", background=True)
    assert err.value.code == "rate_limit_exceeded"
    assert err.value.response.headers["retry-after"] == "2"


class _Capture(http.server.BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self):  # noqa: N802 (http.server naming)
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        type(self).received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):  # keep pytest output quiet
        pass


def test_webhook_unwraps_with_the_sdk(client: OpenAI, sim: Sim):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        sim.control("/_sim/webhook", {"url": url, "secrets": [SECRET]})
        r = client.responses.create(model="gpt-5", input="notify me", background=True)
        deadline = time.monotonic() + 20
        while not any(json.loads(b)["data"]["id"] == r.id for _, b in _Capture.received):
            assert time.monotonic() < deadline, "no webhook arrived"
            time.sleep(0.05)
        headers, body = next((h, b) for h, b in _Capture.received if json.loads(b)["data"]["id"] == r.id)

        event = client.webhooks.unwrap(body, headers, secret=SECRET)
        assert event.type == "response.completed"
        assert event.data.id == r.id
        assert event.id.startswith("evt_")
        assert headers["webhook-id"].startswith("wh_")
        assert headers["user-agent"].startswith("OpenAI/1.0")
        Webhook(SECRET).verify(body, headers)
        assert client.responses.retrieve(r.id).status == "completed"
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_endpoints_with_the_sdk(client: OpenAI):
    """`client.webhooks` (create, retrieve, update, list, rotate_secret, test, delete) parses
    every answer; a test event and a rotation's two signatures verify with the SDK."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/endpoint"
        created = client.webhooks.create(name="interop", url=url, event_types=["response.completed"])
        assert created.object == "webhook_endpoint"
        assert created.id.startswith("we_")
        assert created.signing_secret.startswith("whsec_")
        assert created.signing_secret_hint and created.signing_secret[-4:] in created.signing_secret_hint
        got = client.webhooks.retrieve(created.id)
        assert got.url == url and not hasattr(got, "signing_secret")
        updated = client.webhooks.update(created.id, event_types=["response.completed", "response.failed"])
        assert updated.event_types == ["response.completed", "response.failed"]
        assert created.id in [e.id for e in client.webhooks.list(limit=100)]

        result = client.webhooks.test(created.id, event_type="response.completed")
        assert result.object == "webhook_endpoint.test"
        assert result.status_code == 200 and result.success is True
        headers, body = _Capture.received[-1]
        event = client.webhooks.unwrap(body, headers, secret=created.signing_secret)
        assert event.type == "response.completed"

        rotated = client.webhooks.rotate_secret(created.id, keep_old_secret_active_for_24_hours=True)
        assert rotated.signing_secret != created.signing_secret
        client.webhooks.test(created.id, event_type="response.failed")
        headers, body = _Capture.received[-1]
        assert len(headers["webhook-signature"].split()) == 2
        for secret in (created.signing_secret, rotated.signing_secret):
            client.webhooks.verify_signature(body, headers, secret=secret)

        deleted = client.webhooks.delete(created.id)
        assert deleted.deleted is True and deleted.object == "webhook_endpoint.deleted"
        with pytest.raises(NotFoundError):
            client.webhooks.retrieve(created.id)
        with pytest.raises(BadRequestError):
            client.webhooks.create(name="x", url=url, event_types=["response.exploded"])
    finally:
        server.shutdown()
        server.server_close()


def test_structured_outputs_parse_with_the_sdk(client: OpenAI):
    """`client.responses.parse` with a Pydantic model (the seed tour's CalendarEvent): the
    simulator's answer follows the strict schema the SDK sends and parses into the model; a
    refusal comes back as a `refusal` part with nothing parsed; a strict schema OpenAI would
    refuse is a 400 naming `text.format.schema`."""
    from pydantic import BaseModel

    class CalendarEvent(BaseModel):
        name: str
        date: str
        participants: list[str]

    messages = [
        {"role": "system", "content": "Extract the event information."},
        {"role": "user", "content": "Alice and Bob are going to a science fair on Friday."},
    ]
    r = client.responses.parse(model="gpt-4o-2024-08-06", input=messages, text_format=CalendarEvent)
    assert r.status == "completed", r
    event = r.output_parsed
    assert isinstance(event, CalendarEvent), r
    assert event.participants and all(isinstance(p, str) for p in event.participants)
    assert r.text.format.type == "json_schema" and r.text.format.strict is True

    refused = client.responses.parse(model="gpt-4o-2024-08-06", input=messages,
                                     text_format=CalendarEvent, metadata={"sim": "output=refusal"})
    assert refused.output_parsed is None
    part = refused.output[-1].content[0]
    assert part.type == "refusal" and part.refusal, refused

    loose = {"type": "json_schema", "name": "loose", "strict": True,
             "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}
    with pytest.raises(BadRequestError) as e:
        client.responses.create(model="gpt-5", input="x", text={"format": loose})
    assert e.value.param == "text.format.schema"
    assert e.value.code == "invalid_json_schema"


def test_files_with_the_sdk(client: OpenAI, sim: Sim):
    """`client.files` create, retrieve, content, list and delete parse every answer; the
    content comes back byte for byte and a deleted file is a 404."""
    data = bytes(range(256)) * 64
    created = client.files.create(file=("données é.bin", data), purpose="user_data")
    assert created.id.startswith("file-")
    assert created.object == "file" and created.status == "processed"
    assert created.bytes == len(data) and created.filename == "données é.bin"
    assert created.purpose == "user_data" and created.expires_at is None
    expiring = client.files.create(
        file=("short.txt", b"short-lived"),
        purpose="assistants",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert expiring.expires_at == expiring.created_at + 3600

    assert client.files.retrieve(created.id) == created
    assert client.files.content(created.id).read() == data
    listed = [f.id for f in client.files.list(purpose="user_data")]
    assert created.id in listed and expiring.id not in listed
    assert [f.id for f in client.files.list(order="asc", limit=1)][:1]

    deleted = client.files.delete(created.id)
    assert deleted.deleted is True and deleted.id == created.id
    with pytest.raises(NotFoundError) as err:
        client.files.retrieve(created.id)
    assert err.value.param == "id"
    with pytest.raises(BadRequestError) as err:
        client.files.create(file=("empty.txt", b""), purpose="user_data")
    assert err.value.param == "file"
    assert sim.stats()["files_deleted"] >= 1


def test_vector_store_file_search_with_the_sdk(client: OpenAI):
    """A vector store filled with the SDK's polling helpers, a failing file with its
    `last_error`, and a `file_search` response whose output the SDK parses: the
    `file_search_call` (with results when included) and `file_citation` annotations."""
    store = client.vector_stores.create(name="interop docs", expires_after={"anchor": "last_active_at", "days": 7})
    assert store.id.startswith("vs_") and store.object == "vector_store"
    uploaded = client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=("tides.md", b"Spring tides follow the new and full moon.")
    )
    assert uploaded.status == "completed" and uploaded.last_error is None
    menu = client.files.create(file=("menu.txt", b"Soup of the day."), purpose="assistants")
    attached = client.vector_stores.files.create_and_poll(
        menu.id, vector_store_id=store.id, attributes={"kind": "menu"}
    )
    assert attached.id == menu.id and attached.status == "completed"
    assert attached.attributes == {"kind": "menu"}
    blob = client.files.create(file=("model.bin", b"\x00\x01"), purpose="assistants")
    failed = client.vector_stores.files.create_and_poll(blob.id, vector_store_id=store.id)
    assert failed.status == "failed" and failed.last_error.code == "unsupported_file"
    ready = client.vector_stores.retrieve(store.id)
    assert ready.status == "completed"
    assert (ready.file_counts.completed, ready.file_counts.failed, ready.file_counts.total) == (2, 1, 3)
    assert store.id in [s.id for s in client.vector_stores.list()]

    tools = [{"type": "file_search", "vector_store_ids": [store.id]}]
    question = "When do spring tides happen?"
    plain = client.responses.create(model="gpt-5", input=question, tools=tools)
    call = plain.output[0]
    assert isinstance(call, ResponseFileSearchToolCall), plain.output
    assert call.status == "completed" and call.queries and call.results is None
    message = plain.output[-1]
    assert isinstance(message, ResponseOutputMessage)
    citations = [a for a in message.content[0].annotations if isinstance(a, AnnotationFileCitation)]
    assert [c.file_id for c in citations] == [uploaded.id, menu.id]
    text = message.content[0].text
    for c in citations:
        assert text[: c.index].endswith(c.filename)

    full = client.responses.create(model="gpt-5", input=question, tools=tools, include=["file_search_call.results"])
    results = full.output[0].results
    assert results and results[0].file_id == uploaded.id and results[0].filename == "tides.md"
    assert "Spring tides" in results[0].text and results[0].score > results[-1].score
    later = client.responses.create(model="gpt-5", input=question, tools=tools, background=True)
    assert _wait_terminal(client, later.id).output[0].results is None
    assert client.responses.retrieve(later.id, include=["file_search_call.results"]).output[0].results

    with pytest.raises(BadRequestError) as err:
        client.responses.create(model="gpt-5", input="x", tools=[{"type": "file_search", "vector_store_ids": ["vs_nope"]}])
    assert err.value.param == "tools"
    assert client.vector_stores.delete(store.id).deleted is True


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature and chunk type."""
    assert data.startswith(PNG_SIGNATURE), data[:16]
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_code_interpreter_files_download_with_the_sdk(client: OpenAI, sim: Sim):
    """A background code interpreter response, polled; its container's files listed and
    downloaded with `client.containers.files`, each byte count as the file object says; the
    `container_file_citation` offsets point at each file's link; `outputs` only when included;
    `container_file_drop`'s 500 is retried away by the SDK."""
    r = client.responses.create(
        model="gpt-5",
        input="Analyse la consommation de café à Zürich SIM_CONTAINER_FILES=3",
        tools=[{"type": "code_interpreter", "container": {"type": "auto"}}],
        background=True,
        metadata={"sim": "container_file_drop"},
    )
    assert r.status == "queued"
    done = _wait_terminal(client, r.id)
    assert done.status == "completed"
    call = done.output[0]
    assert isinstance(call, ResponseCodeInterpreterToolCall), done.output
    assert call.status == "completed" and call.container_id.startswith("cntr_")
    assert call.outputs is None and "/mnt/data/results.csv" in call.code
    message = done.output[-1]
    assert isinstance(message, ResponseOutputMessage)
    text = message.content[0].text
    cites = [a for a in message.content[0].annotations if isinstance(a, AnnotationContainerFileCitation)]
    assert [c.filename for c in cites] == ["results.csv", "chart.png", "summary.json"]
    for c in cites:
        assert c.container_id == call.container_id
        assert text[c.start_index : c.end_index] == f"[{c.filename}](sandbox:/mnt/data/{c.filename})"

    container = client.containers.retrieve(call.container_id)
    assert container.status == "running" and container.expires_after.minutes == 20
    files = list(client.containers.files.list(call.container_id, order="asc"))
    assert [f.id for f in files] == [c.file_id for c in cites]
    before = sim.stats()["served_5xx"]
    for f in files:
        assert f.object == "container.file" and f.source == "assistant"
        data = client.containers.files.content.retrieve(f.id, container_id=call.container_id).read()
        assert len(data) == f.bytes
        if f.path.endswith(".png"):
            assert _png_size(data) == (160, 100)
        if f.path.endswith(".csv"):
            assert "Zürich" in data.decode("utf-8") or not data.decode("utf-8").isascii()
    # Each first download answered 500; the SDK retried it.
    assert sim.stats()["served_5xx"] - before == len(files)
    one = client.containers.files.retrieve(files[0].id, container_id=call.container_id)
    assert one.bytes == files[0].bytes and one.path == "/mnt/data/results.csv"

    full = client.responses.retrieve(r.id, include=["code_interpreter_call.outputs"])
    logs = full.output[0].outputs
    assert logs and logs[0].type == "logs" and "Saved /mnt/data/chart.png" in logs[0].logs

    with pytest.raises(BadRequestError) as err:
        client.responses.create(
            model="gpt-5", input="x", tools=[{"type": "code_interpreter", "container": "cntr_nope"}]
        )
    assert err.value.param == "tools[0].container"


def test_containers_with_the_sdk(client: OpenAI):
    """`client.containers` create, retrieve, list and delete parse every answer; an unknown
    container is a 404."""
    made = client.containers.create(name="interop ü", expires_after={"anchor": "last_active_at", "minutes": 5})
    assert made.id.startswith("cntr_") and made.status == "running" and made.name == "interop ü"
    assert made.expires_after.minutes == 5 and made.memory_limit == "1g"
    assert client.containers.retrieve(made.id).id == made.id
    assert made.id in [c.id for c in client.containers.list(limit=100)]
    assert list(client.containers.files.list(made.id)) == []
    client.containers.delete(made.id)
    with pytest.raises(NotFoundError):
        client.containers.retrieve(made.id)


def test_image_generation_with_the_sdk(client: OpenAI):
    """An `image_generation_call` whose `result` base64-decodes to PNG bytes, and a stream
    whose partial images the SDK parses into its typed events."""
    r = client.responses.create(
        model="gpt-5",
        input="A lighthouse at dusk SIM_IMAGE_COUNT=2",
        tools=[{"type": "image_generation", "size": "1024x1536", "output_format": "png"}],
    )
    calls = [i for i in r.output if isinstance(i, ImageGenerationCall)]
    assert len(calls) == 2 and isinstance(r.output[-1], ResponseOutputMessage)
    for call in calls:
        assert call.status == "completed" and call.output_format == "png" and call.size == "1024x1536"
        assert _png_size(base64.b64decode(call.result)) == (128, 192)
    assert "Image 2:" in r.output_text

    partials = []
    final = None
    with client.responses.create(
        model="gpt-5",
        input="A lighthouse at dusk",
        tools=[{"type": "image_generation", "partial_images": 2}],
        stream=True,
    ) as events:
        for event in events:
            if isinstance(event, ResponseImageGenCallPartialImageEvent):
                partials.append(event)
            if event.type == "response.completed":
                final = event.response
    assert [p.partial_image_index for p in partials] == [0, 1]
    for p in partials:
        _png_size(base64.b64decode(p.partial_image_b64))
    assert final is not None and isinstance(final.output[0], ImageGenerationCall)
    assert partials[0].item_id == final.output[0].id


MCP_TOOL = {
    "type": "mcp",
    "server_label": "airnz_onsites",
    "server_url": "https://airnz-onsites.example.net/sse/",
    "require_approval": "never",
}


def test_remote_mcp_with_the_sdk(client: OpenAI):
    """The seed tour's remote MCP call: the SDK parses the listing and the calls into its
    `McpListTools` and `McpCall` types (a failed call's error into `HTTPError`), and a stream's
    MCP events into its typed events."""
    r = client.responses.create(
        model="gpt-4.1",
        tools=[MCP_TOOL],
        input="Can I bring more bags than my standard allowance? «économie» 東京",
    )
    assert r.status == "completed"
    listing, search, fetch, message = r.output
    assert isinstance(listing, McpListTools) and listing.error is None
    assert [t.name for t in listing.tools] == ["search", "fetch"]
    assert listing.tools[0].input_schema["required"] == ["query"]
    for call, name in ((search, "search"), (fetch, "fetch")):
        assert isinstance(call, McpCall) and call.name == name and call.status == "completed"
        assert call.server_label == "airnz_onsites" and call.error is None
        assert isinstance(json.loads(call.arguments), dict) and isinstance(call.output, str)
    assert json.loads(search.arguments)["query"].endswith("東京")
    first = json.loads(search.output)["results"][0]
    assert json.loads(fetch.arguments) == {"id": first["id"]}
    assert isinstance(message, ResponseOutputMessage)
    assert "## From airnz_onsites" in r.output_text

    failed = client.responses.create(
        model="gpt-4.1", tools=[MCP_TOOL], input="Baggage rules", metadata={"sim": "mcp_error"}
    )
    call = next(i for i in failed.output if isinstance(i, McpCall))
    assert call.status == "failed" and call.output is None
    assert isinstance(call.error, HTTPError) and call.error.code == 502

    unlisted = client.responses.create(
        model="gpt-4.1", tools=[MCP_TOOL], input="Baggage rules", metadata={"sim": "mcp_list_error"}
    )
    assert isinstance(unlisted.output[0], McpListTools)
    assert unlisted.output[0].error.startswith("Error retrieving tool list from MCP server: 'airnz_onsites'")
    assert not any(isinstance(i, McpCall) for i in unlisted.output)

    deltas, done, completed, listed, final = [], [], [], [], None
    with client.responses.create(
        model="gpt-4.1", tools=[MCP_TOOL], input="Baggage rules", stream=True
    ) as events:
        for event in events:
            if isinstance(event, ResponseMcpCallArgumentsDeltaEvent):
                deltas.append(event)
            elif isinstance(event, ResponseMcpCallArgumentsDoneEvent):
                done.append(event)
            elif isinstance(event, ResponseMcpCallCompletedEvent):
                completed.append(event)
            elif isinstance(event, ResponseMcpListToolsCompletedEvent):
                listed.append(event)
            elif event.type == "response.completed":
                final = event.response
    assert final is not None and len(listed) == 1 and len(completed) == 2
    calls = [i for i in final.output if isinstance(i, McpCall)]
    assert [d.arguments for d in done] == [c.arguments for c in calls]
    for call in calls:
        streamed = "".join(d.delta for d in deltas if d.item_id == call.id)
        assert streamed == call.arguments


WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather at a place.",
    "strict": True,
    "parameters": {
        "type": "object",
        "additionalProperties": False,
        "required": ["location", "unit"],
        "properties": {
            "location": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
    },
}


def _get_weather(location: str, unit: str) -> str:
    return json.dumps({"location": location, "unit": unit, "temperature": 18, "sky": "clear"})


@pytest.mark.parametrize(
    "question,output",
    [
        ("What's the weather like in Paris today?", None),
        ("Quel temps fait-il à Zürich ? 東京も", "Ciel dégagé, 3 °C — 晴れ ☀"),
        ("Weather in Oslo", ""),
        ("Weather in Lima", "x" * 50_000),
    ],
)
def test_function_calling_loop_with_the_sdk(client: OpenAI, question: str, output: str | None):
    """The SDK guide's loop: create, run each `function_call`, then create again with the
    `function_call_output`s and `previous_response_id`; the answer quotes each output."""
    from openai.types.responses import ResponseFunctionToolCall

    r = client.responses.create(model="gpt-5", tools=[WEATHER_TOOL], input=question)
    assert r.status == "completed" and r.output_text == ""
    calls = [i for i in r.output if i.type == "function_call"]
    assert len(calls) == 1 and isinstance(calls[0], ResponseFunctionToolCall)
    call = calls[0]
    assert call.name == "get_weather" and call.call_id.startswith("call_") and call.id.startswith("fc_")
    args = json.loads(call.arguments)
    assert question.rstrip("?").rstrip() in args["location"] and args["unit"] in ("celsius", "fahrenheit")
    result = _get_weather(**args) if output is None else output
    follow = client.responses.create(
        model="gpt-5",
        tools=[WEATHER_TOOL],
        previous_response_id=r.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": result}],
    )
    assert follow.status == "completed"
    assert not any(i.type == "function_call" for i in follow.output)
    if result == "":
        assert "returned nothing (an empty output)" in follow.output_text
    elif len(result) > 4000:
        assert f"({len(result)} characters in all)" in follow.output_text
        assert result[:4000] in follow.output_text
    else:
        assert f'returned "{result}"' in follow.output_text
    assert follow.usage.output_tokens > 0


def test_function_call_errors_and_stream_with_the_sdk(client: OpenAI):
    r = client.responses.create(model="gpt-5", tools=[WEATHER_TOOL], input="Weather in Rome")
    with pytest.raises(BadRequestError) as unknown:
        client.responses.create(
            model="gpt-5", tools=[WEATHER_TOOL], previous_response_id=r.id,
            input=[{"type": "function_call_output", "call_id": "call_nope", "output": "x"}],
        )
    assert unknown.value.param == "input"
    assert "No tool call found for function call output with call_id call_nope." in str(unknown.value)
    with pytest.raises(BadRequestError) as missing:
        client.responses.create(model="gpt-5", tools=[WEATHER_TOOL], previous_response_id=r.id, input="Hi")
    assert "No tool output found for function call" in str(missing.value)

    deltas, final = [], None
    with client.responses.create(
        model="gpt-5", tools=[WEATHER_TOOL], input="Wetter in Genf", stream=True
    ) as events:
        for event in events:
            if event.type == "response.function_call_arguments.delta":
                deltas.append(event.delta)
            elif event.type == "response.function_call_arguments.done":
                assert event.name == "get_weather"
            elif event.type == "response.completed":
                final = event.response
    assert final is not None and len(deltas) > 1
    assert "".join(deltas) == final.output[0].arguments


def test_mcp_approval_round_with_the_sdk(client: OpenAI):
    """A tool that needs approval: the SDK parses the `McpApprovalRequest`; approving it in a
    follow-up makes the call (carrying the request's id); denying it makes none."""
    from openai.types.responses.response_output_item import McpApprovalRequest

    tool = {**MCP_TOOL, "require_approval": "always"}
    r = client.responses.create(model="gpt-4.1", tools=[tool], input="Baggage rules for Zürich")
    assert r.status == "completed" and r.output_text == ""
    request = r.output[-1]
    assert isinstance(request, McpApprovalRequest) and request.id.startswith("mcpr_")
    yes = client.responses.create(
        model="gpt-4.1", tools=[tool], previous_response_id=r.id,
        input=[{"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}],
    )
    call = yes.output[0]
    assert isinstance(call, McpCall) and call.approval_request_id == request.id
    assert "## From airnz_onsites" in yes.output_text
    no = client.responses.create(
        model="gpt-4.1", tools=[tool], previous_response_id=r.id,
        input=[{"type": "mcp_approval_response", "approval_request_id": request.id, "approve": False}],
    )
    assert not any(isinstance(i, McpCall) for i in no.output)
    assert "was not approved" in no.output_text
    with pytest.raises(BadRequestError) as bad:
        client.responses.create(
            model="gpt-4.1", tools=[tool], previous_response_id=r.id,
            input=[{"type": "mcp_approval_response", "approval_request_id": "mcpr_nope", "approve": True}],
        )
    assert bad.value.param == "input"


def test_conversations_with_the_sdk(client: OpenAI):
    """`client.conversations.*` and two responses on one conversation: the second sees the
    first (and the items it appended)."""
    conv = client.conversations.create(
        metadata={"topic": "fromage"},
        items=[{"type": "message", "role": "user", "content": "Je m'appelle Ana. J'aime le Gruyère."}],
    )
    assert conv.id.startswith("conv_") and conv.metadata == {"topic": "fromage"}
    assert client.conversations.retrieve(conv.id).id == conv.id
    assert client.conversations.update(conv.id, metadata={"k": "v"}).metadata == {"k": "v"}

    first = client.responses.create(
        model="gpt-5", input="Suggest a cheese dish.", conversation=conv.id, background=True
    )
    assert first.conversation.id == conv.id
    with pytest.raises(BadRequestError) as locked:
        client.responses.create(model="gpt-5", input="And a wine?", conversation=conv.id)
    assert locked.value.code == "conversation_locked"
    first = _wait_terminal(client, first.id)
    assert "Earlier in this conversation" in first.output_text and "Gruyère" in first.output_text
    second = client.responses.create(model="gpt-5", input="And a wine?", conversation={"id": conv.id})
    assert 'user: "Suggest a cheese dish."' in second.output_text

    items = client.conversations.items.list(conv.id, order="asc")
    texts = [i.content[0].text for i in items.data if i.type == "message"]
    assert texts[0].startswith("Je m'appelle Ana") and texts[1] == "Suggest a cheese dish."
    assert texts[3] == "And a wine?" and len(texts) == 5
    added = client.conversations.items.create(
        conv.id, items=[{"type": "message", "role": "user", "content": "Merci !"}]
    )
    item_id = added.data[0].id
    assert client.conversations.items.retrieve(item_id, conversation_id=conv.id).id == item_id
    client.conversations.items.delete(item_id, conversation_id=conv.id)
    with pytest.raises(NotFoundError):
        client.conversations.items.retrieve(item_id, conversation_id=conv.id)
    deleted = client.conversations.delete(conv.id)
    assert deleted.deleted and deleted.id == conv.id
    with pytest.raises(NotFoundError):
        client.conversations.retrieve(conv.id)
