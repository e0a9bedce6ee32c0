// The tree browser: every action is a JSON call that the admin server turns into a ZooKeeper client request.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  let current = null;  // the znode as last loaded: path, stat, data

  function show(text, kind) {
    const m = $("message");
    m.textContent = text; m.className = "message " + kind; m.hidden = false;
  }
  function clearMessage() { $("message").hidden = true; }

  function childPath(parent, name) { return (parent === "/" ? "" : parent) + "/" + name; }

  function renderBreadcrumb(path) {
    const bc = $("breadcrumb"); bc.replaceChildren();
    const parts = path.split("/").filter(Boolean);
    const rootLink = squall.el("a", { href: "#/", "data-path": "/", text: "/" });
    bc.append(rootLink);
    let acc = "";
    parts.forEach((p, i) => {
      acc += "/" + p;
      bc.append(squall.el("a", { href: "#" + acc, "data-path": acc, text: p }));
      if (i < parts.length - 1) bc.append(" / ");
    });
  }

  function linkList(ul, paths, label) {
    ul.replaceChildren();
    for (const p of paths) {
      const a = squall.el("a", { href: "#" + p, "data-path": p, text: label ? label(p) : p });
      ul.append(squall.el("li", {}, a));
    }
  }

  function render(z) {
    current = z;
    $("znode-path").textContent = z.path;
    $("goto-path").value = z.path;
    renderBreadcrumb(z.path);
    linkList($("children"), z.children.map((c) => childPath(z.path, c)), (p) => p.split("/").pop());
    $("child-count").textContent = "(" + z.children.length + ")";
    const d = z.data;
    $("data-kind").textContent = d.kind;
    $("data-size").textContent = d.size + " bytes";
    $("data-view").textContent = d.kind === "json" ? d.pretty : d.text;
    const binary = d.kind === "binary";
    $("edit-data").value = binary ? (d.hex || "") : d.text;
    document.querySelector('input[name="edit-encoding"][value="' + (binary ? "hex" : "text") + '"]').checked = true;
    $("edit-version").textContent = z.stat.version;
    const tb = $("stat-table").tBodies[0]; tb.replaceChildren();
    for (const [k, v] of Object.entries(z.stat)) {
      if (k === "hex") continue;
      let shown = String(v);
      if (z.stat.hex[k]) shown = z.stat.hex[k];
      if ((k === "ctime" || k === "mtime") && v) shown = v + "  (" + new Date(v).toISOString() + ")";
      tb.append(squall.el("tr", { "data-field": k }, squall.el("td", { text: k }), squall.el("td", { text: shown })));
    }
    const ab = $("acl-table").tBodies[0]; ab.replaceChildren();
    for (const a of z.acl) {
      ab.append(squall.el("tr", {}, squall.el("td", { text: a.scheme }), squall.el("td", { text: a.id }),
        squall.el("td", { text: a.perms })));
    }
    $("delete-button").disabled = z.path === "/";
  }

  async function load(path, keepMessage) {
    if (!keepMessage) clearMessage();
    try {
      render(await squall.call("GET", "/api/tree?path=" + encodeURIComponent(path)));
    } catch (e) {
      show(e.message, "error");
    }
  }

  // Go to a znode and then say what happened; pushState does not fire hashchange, so no second load
  // races the message away.
  async function navigate(path, message) {
    if (location.hash !== "#" + path) history.pushState(null, "", "#" + path);
    await load(path, true);
    if (message) show(message, "ok");
  }

  function pathFromHash() { return decodeURIComponent(location.hash.slice(1)) || "/"; }

  window.addEventListener("hashchange", () => load(pathFromHash()));

  $("goto-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    location.hash = $("goto-path").value.trim() || "/";
  });

  $("search-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const q = $("search-q").value.trim();
    if (!q) return;
    try {
      const r = await squall.call("GET", "/api/search?q=" + encodeURIComponent(q));
      linkList($("search-hits"), r.hits);
      $("search-results").hidden = false;
      if (r.truncated) show("search stopped early after " + r.visited + " znodes; refine the query", "error");
      else if (!r.hits.length) show("no path contains " + JSON.stringify(q), "error");
      else clearMessage();
    } catch (e) { show(e.message, "error"); }
  });

  function renderAuth() {
    const c = squall.credentials();
    $("auth-state").textContent = c ? "as " + c.split(":")[0] : "anonymous";
  }
  $("auth-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    squall.setCredentials($("auth-input").value.trim());
    $("auth-input").value = "";
    renderAuth();
    load(pathFromHash());
  });

  $("edit-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!current) return;
    const encoding = document.querySelector('input[name="edit-encoding"]:checked').value;
    try {
      const z = await squall.call("POST", "/api/tree/set", {
        path: current.path, data: $("edit-data").value, encoding, version: current.stat.version });
      render(z);
      show("saved " + z.path + " (now version " + z.stat.version + ")", "ok");
    } catch (e) { show(e.message, "error"); }
  });

  $("create-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!current) return;
    const name = $("create-name").value.trim();
    if (!name || name.includes("/")) { show("enter a child name without '/'", "error"); return; }
    try {
      const z = await squall.call("POST", "/api/tree/create", {
        path: childPath(current.path, name), data: $("create-data").value, acl: $("create-acl").value,
        sequential: $("create-sequential").checked, ephemeral: $("create-ephemeral").checked });
      $("create-name").value = ""; $("create-data").value = "";
      await navigate(z.path, "created " + z.path);
    } catch (e) { show(e.message, "error"); }
  });

  $("delete-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!current) return;
    const recursive = $("delete-recursive").checked;
    let n = current.stat.numChildren;
    try {  // count the children now, not as they were when the page loaded
      n = (await squall.call("GET", "/api/tree?path=" + encodeURIComponent(current.path))).stat.numChildren;
    } catch (e) { /* the delete below reports the real problem */ }
    const what = recursive && n ? current.path + " and everything under it (" + n + " children)" : current.path;
    if (!window.confirm("Delete " + what + "?")) return;
    try {
      await squall.call("POST", "/api/tree/delete", { path: current.path, version: current.stat.version, recursive });
      const parent = current.path.split("/").slice(0, -1).join("/") || "/";
      await navigate(parent, "deleted " + current.path);
    } catch (e) { show(e.message, "error"); }
  });

  renderAuth();
  load(pathFromHash());
})();
