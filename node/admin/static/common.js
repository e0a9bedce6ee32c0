// Shared helpers: every request carries the tab's digest credentials; POSTs carry the CSRF token.
"use strict";
const squall = (() => {
  const csrf = document.querySelector('meta[name="squall-csrf"]').content;
  const authKey = "squall.digest";
  function credentials() { return sessionStorage.getItem(authKey) || ""; }
  function setCredentials(v) { if (v) sessionStorage.setItem(authKey, v); else sessionStorage.removeItem(authKey); }
  async function call(method, url, body) {
    const headers = { "Accept": "application/json" };
    const cred = credentials();
    if (cred) headers["X-Squall-Digest"] = cred;
    const opts = { method, headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      headers["X-Squall-CSRF"] = csrf;
      opts.body = JSON.stringify(body);
    }
    const resp = await fetch(url, opts);
    let data = null;
    try { data = await resp.json(); } catch (e) { data = { error: "HTTP " + resp.status + " (no JSON body)" }; }
    if (!resp.ok) {
      const err = new Error((data && data.error) || ("HTTP " + resp.status));
      err.status = resp.status; err.code = data && data.code;
      throw err;
    }
    return data;
  }
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c);
    return e;
  }
  return { call, el, credentials, setCredentials };
})();
