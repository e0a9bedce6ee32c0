// The status page: shows any admin command's JSON.
"use strict";
(() => {
  async function show(name) {
    document.getElementById("command-title").textContent = name;
    const out = document.getElementById("command-output");
    try {
      out.textContent = JSON.stringify(await squall.call("GET", "/commands/" + name), null, 2);
    } catch (e) { out.textContent = "error: " + e.message; }
  }
  for (const b of document.querySelectorAll("button.cmd")) b.addEventListener("click", () => show(b.dataset.command));
  show("monitor");
})();
