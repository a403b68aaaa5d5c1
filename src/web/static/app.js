// Auto-refresh: every 5 s, fetch this page again and swap in the live region (#jobs on the
// list, #job-live on a running job's page). A job page whose status changed reloads whole.
(function () {
  const live = document.getElementById("jobs") || document.getElementById("job-live");
  if (!live) return;
  async function tick() {
    if (document.hidden) return;
    try {
      const r = await fetch(location.href, { credentials: "same-origin", cache: "no-store" });
      if (!r.ok || r.redirected) return;
      const doc = new DOMParser().parseFromString(await r.text(), "text/html");
      const fresh = doc.getElementById(live.id);
      if (!fresh) return;
      const badge = (d) => { const b = d.querySelector(".job-actions .badge"); return b ? b.textContent : null; };
      if (live.id === "job-live" && badge(doc) !== badge(document)) { location.reload(); return; }
      const current = document.getElementById(live.id);
      if (current) current.replaceWith(fresh);
    } catch (e) { /* offline for a moment: try again next tick */ }
  }
  setInterval(tick, 5000);
})();

// Live progress on a running job's page: the job's timeline as server-sent events
// (GET /jobs/{id}/live, the page's session), each milestone listed as it is written, the text
// as it grows; a status change refreshes the page's facts at once, an end reloads it whole.
// Without EventSource, or while it is down, the 5 s refresh above still runs.
(function () {
  const section = document.getElementById("live-progress");
  if (!section || typeof EventSource === "undefined") return;
  const list = document.getElementById("milestones");
  const text = document.getElementById("live-text");
  const state = document.getElementById("live-state");
  const source = new EventSource("/jobs/" + encodeURIComponent(section.dataset.job) + "/live");
  const show = (kind, message) => {
    const li = document.createElement("li");
    const when = document.createElement("span");
    when.className = "muted small";
    when.textContent = new Date().toLocaleTimeString() + " ";
    const what = document.createElement("span");
    what.textContent = kind + ": " + message;
    li.append(when, what);
    list.append(li);
    while (list.children.length > 200) list.firstElementChild.remove();
  };
  const handle = (e) => {
    let ev;
    try { ev = JSON.parse(e.data); } catch (_) { return; }
    const data = ev.data || {};
    if (typeof data.text_delta === "string" && data.text_delta) {
      text.hidden = false;
      text.textContent += data.text_delta;
    }
    show(ev.kind, ev.message);
    state.textContent = "Live: last event " + new Date().toLocaleTimeString();
    if (ev.kind === "status") {
      const to = data.to || "";
      if (["completed", "failed", "incomplete", "cancelled", "requires_action"].includes(to)) {
        source.close();
        location.reload();
      }
    }
  };
  // Every timeline kind the daemon writes arrives as its own SSE event type.
  ["status", "progress", "stream", "submitted", "submitting", "webhook", "actions", "action",
   "turn", "adopted", "error", "cancel_requested", "cancel_sent", "artifacts", "notified"]
    .forEach((k) => source.addEventListener(k, handle));
  source.onmessage = handle;
  source.onerror = () => { state.textContent = "Live view interrupted; reconnecting…"; };
})();
