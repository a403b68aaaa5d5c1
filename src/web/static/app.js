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
