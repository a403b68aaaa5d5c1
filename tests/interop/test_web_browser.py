"""The history pages in a real browser (headless Chromium through chromedriver).

Starts ``$RESPOOL_BIN sim`` and ``$RESPOOL_BIN serve`` (with an API token, so the login is
exercised), submits jobs over REST (one that runs for a minute), then signs in, loads the job
list, searches and filters, opens a finished job, cancels the running one with its Cancel
button and retries it with its Retry button. Screenshots of every step, at desktop and phone width, go to
``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "screenshots"
TOKEN = "browser-test-token-0123456789"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="needs Debian's chromium and chromium-driver",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited {proc.returncode}: {log.read_text()}")
        try:
            with _OPENER.open(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"{url} did not come up: {log.read_text()}")
            time.sleep(0.1)


_LOGS: dict[str, Path] = {}


def _diagnose(base: str, job_id: str) -> str:
    """What to read when a wait fails: the job, its timeline and the tails of both logs."""
    parts = []
    try:
        parts.append(json.dumps(_rest(base, "GET", f"/v1/jobs/{job_id}"), indent=1)[:3000])
        parts.append(json.dumps(_rest(base, "GET", f"/v1/jobs/{job_id}/events"), indent=1)[:6000])
    except Exception as e:  # noqa: BLE001 - a diagnosis must not hide the failure
        parts.append(f"cannot read the job: {e}")
    for name, path in _LOGS.items():
        text = path.read_text(errors="replace") if path.exists() else "(no log)"
        parts.append(f"--- {name} log, last 60 lines\n" + "\n".join(text.splitlines()[-60:]))
    return "\n".join(parts)


def _rest(base: str, method: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("content-type", "application/json")
    req.add_header("authorization", f"Bearer {TOKEN}")
    with _OPENER.open(req, timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def daemon():
    binary = os.environ.get("RESPOOL_BIN", str(ROOT / "target" / "debug" / "respool"))
    tmp = tempfile.TemporaryDirectory()
    sim_port, port = _free_port(), _free_port()
    sim_log = Path(tmp.name) / "sim.log"
    sim = subprocess.Popen(
        [binary, "sim", "--listen", f"127.0.0.1:{sim_port}", "--queue-time", "200ms",
         "--run-time", "800ms", "--seed", "1"],
        stdout=open(sim_log, "wb"), stderr=subprocess.STDOUT,
    )
    _wait_http(f"http://127.0.0.1:{sim_port}/_sim/stats", sim, sim_log)
    cfg = Path(tmp.name) / "respool.yaml"
    cfg.write_text(
        f"""
listen: 127.0.0.1:{port}
database: {tmp.name}/respool.db
api:
  tokens: ["{TOKEN}"]
upstream:
  base_url: http://127.0.0.1:{sim_port}/v1
  api_key: sk-interop
polling:
  min_interval: 200ms
  max_interval: 1s
pricing:
  o3-deep-research: {{input: 10.0, output: 40.0, cached_input: 2.5}}
"""
    )
    log = Path(tmp.name) / "daemon.log"
    _LOGS["daemon"], _LOGS["sim"] = log, sim_log
    proc = subprocess.Popen([binary, "serve", "--config", str(cfg)],
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    _wait_http(base + "/healthz", proc, log)
    yield base
    proc.terminate()
    assert proc.wait(timeout=15) == 0, "SIGTERM must exit 0"
    sim.terminate()
    sim.wait(timeout=15)
    tmp.cleanup()


@pytest.fixture(scope="module")
def browser():
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--window-size=1280,900", "--hide-scrollbars"]:
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def _shot(driver, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    # The whole page, not just the viewport: size the window to the document first.
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(driver.get_window_size()["width"], max(height + 140, 400))
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def _set_width(driver, w: int, h: int) -> None:
    driver.set_window_size(w, h)


def test_list_search_open_and_cancel(daemon: str, browser):
    if SHOTS.exists():
        shutil.rmtree(SHOTS)
    done = []
    for name, text in [("Quarterly market brief", "the solar market"),
                       ("Competitor scan <b>bold</b>", "competitors in logistics"),
                       ("Literature review", "protein folding")]:
        done.append(_rest(daemon, "POST", "/v1/jobs", {
            "name": name, "model": "o3-deep-research", "input": f"Write a report on {text}.",
            "tools": [{"type": "web_search_preview"}], "reasoning": {"summary": "auto"}}))
    failed = _rest(daemon, "POST", "/v1/jobs", {
        "name": "Weekly pricing digest", "model": "o3-deep-research",
        "input": "Summarize this week's price changes.", "tools": [{"type": "web_search_preview"}],
        "metadata": {"sim": "outcome=failed:server_error"}})
    long = _rest(daemon, "POST", "/v1/jobs", {
        "name": "Deep research: battery supply chain", "model": "o3-deep-research",
        "input": "Map the supply chain.", "tools": [{"type": "web_search_preview"}],
        "metadata": {"sim": "run=60s"}})
    deadline = time.monotonic() + 30
    while any(_rest(daemon, "GET", f"/v1/jobs/{j['id']}")["status"] != "completed" for j in done):
        assert time.monotonic() < deadline, "jobs did not complete"
        time.sleep(0.2)
    while _rest(daemon, "GET", f"/v1/jobs/{failed['id']}")["status"] != "failed":
        assert time.monotonic() < deadline, "the failing job did not fail"
        time.sleep(0.2)
    while (j := _rest(daemon, "GET", f"/v1/jobs/{long['id']}"))["status"] != "in_progress":
        assert time.monotonic() < deadline, f"long job did not start: {j}"
        time.sleep(0.2)

    wait = WebDriverWait(browser, 15)
    # Not signed in: the list sends us to the login.
    _set_width(browser, 1280, 900)
    browser.get(daemon + "/")
    wait.until(EC.url_contains("/login"))
    _shot(browser, "01-login")
    browser.find_element(By.NAME, "token").send_keys("not-the-token")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".alert")))
    browser.find_element(By.NAME, "token").send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "table.jobs")))
    rows = browser.find_elements(By.CSS_SELECTOR, "table.jobs tbody tr")
    assert len(rows) == 5
    # The HTML in a job name is shown as text.
    assert "Competitor scan <b>bold</b>" in browser.find_element(By.CSS_SELECTOR, "table.jobs").text
    _set_width(browser, 1280, 900)
    _shot(browser, "02-list")

    # Filter by status, then search.
    _set_width(browser, 1280, 900)
    Select(browser.find_element(By.NAME, "status")).select_by_value("in_progress")
    browser.find_element(By.CSS_SELECTOR, ".filters button[type=submit]").click()
    wait.until(EC.url_contains("status=in_progress"))
    rows = browser.find_elements(By.CSS_SELECTOR, "table.jobs tbody tr")
    assert len(rows) == 1 and "battery" in rows[0].text
    _shot(browser, "03-filter-running")
    browser.get(daemon + "/")
    box = browser.find_element(By.NAME, "q")
    box.send_keys("solar")
    box.submit()
    wait.until(EC.url_contains("q=solar"))
    text = browser.find_element(By.ID, "jobs").text
    assert "Quarterly market brief" in text and "Literature review" not in text, text
    _shot(browser, "04-search")

    # Last week's failures, and why: filter by status and time, open the one failed job.
    browser.get(daemon + "/")
    Select(browser.find_element(By.NAME, "status")).select_by_value("failed")
    Select(browser.find_element(By.NAME, "since")).select_by_value("7d")
    browser.find_element(By.CSS_SELECTOR, ".filters button[type=submit]").click()
    wait.until(EC.url_contains("status=failed"))
    assert "since=7d" in browser.current_url
    rows = browser.find_elements(By.CSS_SELECTOR, "table.jobs tbody tr")
    assert len(rows) == 1 and "Weekly pricing digest" in rows[0].text, [r.text for r in rows]
    _shot(browser, "12-failed-last-week")
    rows[0].find_element(By.CSS_SELECTOR, "a.job-name").click()
    wait.until(EC.url_contains(f"/jobs/{failed['id']}"))
    alert = browser.find_element(By.CSS_SELECTOR, ".alert")
    assert "server_error" in alert.text, alert.text
    assert browser.find_elements(By.ID, "retry"), "a failed job can be retried"
    _shot(browser, "13-job-failed")

    # A finished job's page.
    _set_width(browser, 1280, 900)
    browser.get(daemon + f"/jobs/{done[0]['id']}")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".badge.s-completed")))
    assert browser.find_elements(By.CSS_SELECTOR, "article.prose"), "report rendered"
    assert not browser.find_elements(By.ID, "cancel")
    _shot(browser, "05-job-completed")

    # The running one: Cancel, then it shows cancelled.
    _set_width(browser, 1280, 900)
    browser.get(daemon + f"/jobs/{long['id']}")
    wait.until(EC.presence_of_element_located((By.ID, "cancel")))
    _shot(browser, "06-job-running")
    browser.find_element(By.ID, "cancel").click()
    # The form's POST must reach the daemon before the first refresh: a refresh while it is
    # being sent aborts it (under load the job then never got its cancel). Only a page drawn
    # after the cancel was recorded has no Cancel button (the page's own 5-second refresh of
    # its live block brings the button back while the POST waits, so the old button going
    # stale proves nothing).
    wait.until(lambda d: not d.find_elements(By.ID, "cancel"))
    try:
        WebDriverWait(browser, 30, poll_frequency=0.5).until(
            lambda d: (d.refresh() or True) and d.find_elements(By.CSS_SELECTOR, ".badge.s-cancelled"))
    except Exception as e:
        raise AssertionError(f"the job did not show cancelled ({e!r}):\n{_diagnose(daemon, long['id'])}") from e
    assert _rest(daemon, "GET", f"/v1/jobs/{long['id']}")["status"] == "cancelled"
    _shot(browser, "07-job-cancelled")

    # The cancelled one is finished: Retry makes a new job and lands on its page, which links
    # back; the original then links forward.
    old_url = browser.current_url
    browser.find_element(By.ID, "retry").click()
    wait.until(lambda d: d.current_url != old_url and "/jobs/job_" in d.current_url)
    retry_id = browser.current_url.rstrip("/").rsplit("/", 1)[-1]
    assert retry_id != long["id"]
    lineage = browser.find_element(By.CSS_SELECTOR, ".lineage")
    assert "Retry of" in lineage.text and long["id"] in lineage.text, lineage.text
    assert _rest(daemon, "GET", f"/v1/jobs/{retry_id}")["retry_of"] == long["id"]
    assert not browser.find_elements(By.ID, "retry"), "a running retry has no Retry button"
    _shot(browser, "08-job-retry")
    browser.find_element(By.CSS_SELECTOR, ".lineage a").click()
    wait.until(EC.url_contains(f"/jobs/{long['id']}"))
    assert "Retried by" in browser.find_element(By.CSS_SELECTOR, ".job-title").text
    assert _rest(daemon, "GET", f"/v1/jobs/{long['id']}")["retried_by"] == [retry_id]
    # The retry runs for a minute like its original: cancel it so the rest sees a quiet daemon.
    _rest(daemon, "POST", f"/v1/jobs/{retry_id}/cancel")

    _set_width(browser, 1280, 900)
    browser.get(daemon + "/stats")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".tiles")))
    _shot(browser, "09-stats")

    # Phone width: the table becomes cards.
    _set_width(browser, 390, 844)
    browser.get(daemon + "/")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "table.jobs")))
    assert not browser.find_element(By.CSS_SELECTOR, "table.jobs thead").is_displayed()
    _shot(browser, "10-phone-list")
    _set_width(browser, 390, 844)
    browser.get(daemon + f"/jobs/{done[0]['id']}")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".badge")))
    _shot(browser, "11-phone-job")


def _signed_in(driver, base: str, path: str) -> None:
    """Opens ``path``, signing in first if the page asks."""
    wait = WebDriverWait(driver, 15)
    driver.get(base + path)
    if "/login" in driver.current_url:
        driver.find_element(By.NAME, "token").send_keys(TOKEN)
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        wait.until(lambda d: "/login" not in d.current_url)
        driver.get(base + path)


def test_new_job_form_with_a_schema(daemon: str, browser, tmp_path):
    wait = WebDriverWait(browser, 15)
    _set_width(browser, 1280, 900)
    _signed_in(browser, daemon, "/jobs/new")
    wait.until(EC.presence_of_element_located((By.ID, "new-job")))
    # The nav leads here, and the form offers the models respool has prices for.
    assert browser.find_element(By.CSS_SELECTOR, ".nav a.active").text == "New job"
    assert browser.find_elements(By.CSS_SELECTOR, "datalist#models option[value='o3']")
    typed = "Which city hosts the science fair? — Ça se passe à Zürich, 東京?"

    # A schema that is not JSON: the form comes back as typed, with the fault named.
    browser.find_element(By.ID, "name").send_keys("Fair lookup")
    browser.find_element(By.ID, "model").send_keys("gpt-5")
    browser.find_element(By.ID, "input").send_keys(typed)
    browser.find_element(By.ID, "schema").send_keys('{"type": "object",')
    browser.find_element(By.ID, "create").click()
    wait.until(EC.presence_of_element_located((By.ID, "form-errors")))
    assert "JSON Schema: not JSON" in browser.find_element(By.ID, "form-errors").text
    assert browser.find_element(By.ID, "input").get_attribute("value") == typed
    _shot(browser, "20-new-job-error")

    schema = ('{"type": "object", "properties": {"city": {"type": "string"}, '
              '"date": {"type": "string", "format": "date"}}, "required": ["city", "date"], '
              '"additionalProperties": false}')
    box = browser.find_element(By.ID, "schema")
    box.clear()
    box.send_keys(schema)
    # A local document goes with the job, chosen in the file input.
    pdf = tmp_path / "fair programme — 2026.pdf"
    pdf.write_bytes(b"%PDF-1.4\n1 0 obj<<>>endobj\n%%EOF\n")
    browser.find_element(By.ID, "attachments").send_keys(str(pdf))
    _shot(browser, "21-new-job-filled")
    browser.find_element(By.ID, "create").click()
    wait.until(lambda d: "/jobs/job_" in d.current_url)
    job_id = browser.current_url.rstrip("/").rsplit("/", 1)[-1]
    job = _rest(daemon, "GET", f"/v1/jobs/{job_id}")
    assert job["name"] == "Fair lookup" and job["model"] == "gpt-5", job
    assert job["spec"]["request"]["text"]["format"]["schema"]["required"] == ["city", "date"]
    assert len(job["spec"]["attachments"]) == 1, job["spec"]
    assert "fair programme — 2026.pdf" in browser.find_element(By.CSS_SELECTOR, "ul.attachments").text

    # Once it completes, the page shows the answer as a table.
    deadline = time.monotonic() + 30
    while not browser.find_elements(By.CSS_SELECTOR, "#answer-json table.json-obj"):
        assert time.monotonic() < deadline, _diagnose(daemon, job_id)
        time.sleep(0.5)
        browser.refresh()
    table = browser.find_element(By.CSS_SELECTOR, "#answer-json table.json-obj").text
    assert "city" in table and "date" in table, table
    assert _rest(daemon, "GET", f"/v1/jobs/{job_id}")["output_json"]["city"], "an answer"
    _shot(browser, "22-new-job-answer")
