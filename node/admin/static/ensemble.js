// The ensemble page: polls /commands/ensemble and redraws; a failed poll is shown, the next one retries.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const INTERVAL_MS = 2000;
  $("ens-interval").textContent = INTERVAL_MS / 1000;

  function cell(text, cls) { return squall.el("td", cls ? { class: cls, text } : { text }); }

  function draw(e) {
    const self = e.peers.find((p) => p.self);
    $("ens-self").textContent = e.server_id === null || e.server_id === undefined ? "?" : "id " + e.server_id;
    $("ens-mode").textContent = e.mode;
    $("ens-mode").className = "big role-" + e.mode;
    $("ens-leader").textContent = e.leader === null || e.leader === undefined ? "none" : "id " + e.leader;
    $("ens-epoch").textContent = e.epoch;
    $("ens-zxid").textContent = e.last_zxid_hex;
    const tb = $("peers").tBodies[0]; tb.replaceChildren();
    for (const p of e.peers) {
      const cls = [p.id === e.leader ? "leader" : "", p.self ? "self" : ""].join(" ").trim();
      tb.append(squall.el("tr", { class: cls, "data-peer": String(p.id), "data-role": p.role || "" },
        cell(String(p.id)), cell(p.address || ""), cell(p.role || "?", "role-" + (p.role || "unknown")),
        cell(p.state || "?", "state-" + (p.state || "unknown")), cell(p.last_zxid_hex || "?"),
        cell(p.lag === null || p.lag === undefined ? "?" : String(p.lag)),
        cell(p.sessions == null ? "?" : String(p.sessions)),
        cell(p.connections == null ? "?" : String(p.connections))));
    }
    const cb = $("changes").tBodies[0]; cb.replaceChildren();
    for (const c of (e.leader_changes || []).slice().reverse()) {
      const before = c.previous ? c.previous.role + " / leader " + c.previous.leader + " / epoch " + c.previous.epoch : "";
      cb.append(squall.el("tr", {}, cell(new Date(c.time_ms).toISOString()), cell(c.event), cell(c.role),
        cell(String(c.leader)), cell(String(c.epoch)), cell(before)));
    }
    $("ens-updated").textContent = new Date().toLocaleTimeString();
    void self;
  }

  async function poll() {
    try {
      draw(await squall.call("GET", "/commands/ensemble"));
      $("ens-error").textContent = "";
    } catch (e) {
      $("ens-error").textContent = " — refresh failed: " + e.message;
    } finally {
      setTimeout(poll, INTERVAL_MS);
    }
  }
  poll();
})();
