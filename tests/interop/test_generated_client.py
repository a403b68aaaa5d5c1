"""A Python client generated from the daemon's own ``/openapi.json`` works.

Starts ``$RESPOOL_BIN sim`` and ``serve`` (``_daemon.py``), fetches the document, generates a
client with openapi-python-client (a standard generator, pinned in requirements.txt) and drives
the daemon through the generated functions and models only, with an ``AuthenticatedClient``:
submit a job, list jobs and find it, fetch it, cancel a running one and see it ``cancelled``,
and fetch the stored response of one that completed. The document and the generator's output go
to ``test-artifacts/generated-client/``; any warning it prints (an operation or schema it could
not generate) fails ``test_generator_reports_nothing``. Its settings:
``openapi-python-client.yaml``.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import time
import typing
from http import HTTPStatus
from pathlib import Path
from types import SimpleNamespace

import pytest

import _daemon

TOKEN = "generated-client-token-0123456789"
ARTIFACTS = _daemon.ROOT / "test-artifacts" / "generated-client"
PACKAGE = "respool_client"
CONFIG = Path(__file__).with_name("openapi-python-client.yaml")
# Deep research models need a search tool (the simulator refuses them without one).
TOOLS = [{"type": "web_search_preview"}]


def _generator() -> str:
    # The venv's script beside this interpreter, else one on PATH.
    here = Path(sys.executable).parent / "openapi-python-client"
    found = str(here) if here.exists() else shutil.which("openapi-python-client")
    if found is None:
        pytest.fail("openapi-python-client is not installed: pip install -r tests/interop/requirements.txt")
    return found


@pytest.fixture(scope="module")
def daemon():
    # Responses run 1 s; a job with metadata `sim: run=60s` runs a minute (to be cancelled).
    with _daemon.running(TOKEN, run_time="1s") as d:
        yield d


@pytest.fixture(scope="module")
def generated(daemon, tmp_path_factory):
    """Generate the client into a temp dir; the generator's output, whatever happened."""
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    spec = json.loads(_daemon.get(daemon.base + "/openapi.json"))
    (ARTIFACTS / "openapi.json").write_text(json.dumps(spec, indent=2))
    out = tmp_path_factory.mktemp("client")
    generator = _generator()
    # The generator formats its output with ruff (a dependency of it, beside it in the venv).
    env = dict(os.environ, PATH=str(Path(generator).parent) + os.pathsep + os.environ.get("PATH", ""))
    run = subprocess.run(
        [generator, "generate", "--path", str(ARTIFACTS / "openapi.json"),
         "--output-path", str(out / PACKAGE), "--meta", "none", "--config", str(CONFIG)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    text = f"exit {run.returncode}\n--- stdout\n{run.stdout}\n--- stderr\n{run.stderr}"
    (ARTIFACTS / "generate.log").write_text(text)
    return SimpleNamespace(dir=out, returncode=run.returncode, output=run.stdout + run.stderr,
                           report=text)


@pytest.fixture(scope="module")
def api(generated):
    """The generated package's modules this test uses."""
    if generated.returncode != 0 or not (generated.dir / PACKAGE / "__init__.py").exists():
        pytest.fail(f"openapi-python-client generated no client:\n{generated.report}")
    sys.path.insert(0, str(generated.dir))
    try:
        mods = {}
        for name in ["create_job", "list_jobs", "get_job", "cancel_job", "get_response"]:
            try:
                mods[name] = importlib.import_module(f"{PACKAGE}.api.jobs.{name}")
            except ImportError as e:
                pytest.fail(f"no generated `{name}` ({e}); the generator said:\n{generated.report}")
        root = importlib.import_module(PACKAGE)
        models = importlib.import_module(f"{PACKAGE}.models")
        yield SimpleNamespace(root=root, models=models, **mods)
    finally:
        sys.path.remove(str(generated.dir))


@pytest.fixture
def client(api, daemon):
    # Undeclared statuses raise (errors.UnexpectedStatus) instead of parsing to None.
    with api.root.AuthenticatedClient(base_url=daemon.base, token=TOKEN,
                                      raise_on_unexpected_status=True, timeout=10) as c:
        yield c


def _create_body(api, spec: dict):
    """The request body of `create_job` as the generated model the document names for it."""
    hint = typing.get_type_hints(api.create_job.sync_detailed)["body"]
    for t in (hint, *typing.get_args(hint)):
        if isinstance(t, type) and hasattr(t, "from_dict"):
            return t.from_dict(spec)
    pytest.fail(f"create_job's body is {hint!r}: no generated model to build it from")


def _submit(api, client, spec: dict):
    r = api.create_job.sync_detailed(client=client, body=_create_body(api, spec))
    assert r.status_code == HTTPStatus.CREATED, (r.status_code, r.content)
    job = r.parsed
    assert isinstance(job, api.models.JobView), type(job)
    assert job.id.startswith("job_"), job.id
    assert job.model == spec["model"]
    return job


def _get(api, client, job_id: str):
    job = api.get_job.sync(client=client, id=job_id)
    assert isinstance(job, api.models.JobView), type(job)
    assert job.id == job_id
    return job


def _wait_status(api, client, job_id: str, want, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while (job := _get(api, client, job_id)).status != want:
        assert time.monotonic() < deadline, f"job {job_id} is {job.status}, not {want}"
        time.sleep(0.2)
    return job


def test_generator_reports_nothing(generated):
    """The whole document generates, with no operation or schema skipped."""
    assert generated.returncode == 0, generated.report
    warnings = [line for line in generated.output.splitlines()
                if "warning" in line.lower() or "could not" in line.lower()]
    assert not warnings, generated.report


def test_submit_list_get_and_response(api, client):
    Status = api.models.JobStatus
    job = _submit(api, client, {"model": "o3-deep-research", "tools": TOOLS,
                                "input": "Write a short report on the generated client."})
    assert job.status in {Status.PENDING, Status.QUEUED, Status.IN_PROGRESS}, job.status

    page = api.list_jobs.sync(client=client, limit=100)
    assert isinstance(page, api.models.JobList), type(page)
    listed = [j for j in page.data if j.id == job.id]
    assert len(listed) == 1, [j.id for j in page.data]
    assert isinstance(listed[0], api.models.JobView)

    done = _wait_status(api, client, job.id, Status.COMPLETED)
    assert done.output_text, "a completed job has output"
    assert done.response_id and done.response_id.startswith("resp_"), done.response_id
    assert isinstance(done.created_at, int) and isinstance(done.finished_at, int)
    assert done.finished_at >= done.created_at

    response = api.get_response.sync(client=client, id=job.id)
    assert response is not None
    stored = response.to_dict()
    assert stored["id"] == done.response_id, stored
    assert stored["status"] == "completed", stored


def test_cancel_a_running_job(api, client):
    Status = api.models.JobStatus
    job = _submit(api, client, {"model": "o3-deep-research", "input": "Map the supply chain.",
                                "tools": TOOLS, "metadata": {"sim": "run=60s"}})
    _wait_status(api, client, job.id, Status.IN_PROGRESS)

    cancelled = api.cancel_job.sync(client=client, id=job.id)
    assert isinstance(cancelled, api.models.JobView), type(cancelled)
    assert cancelled.id == job.id
    assert cancelled.cancel_requested or cancelled.status == Status.CANCELLED, cancelled

    final = _wait_status(api, client, job.id, Status.CANCELLED)
    assert isinstance(final.finished_at, int), final.finished_at
    page = api.list_jobs.sync(client=client, limit=100)
    assert [j.status for j in page.data if j.id == job.id] == [Status.CANCELLED]
