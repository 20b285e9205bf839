// prodml dashboard: live refresh of <main> and actions through the admin API.
// No framework, no third-party code: the page loads nothing but this file and ui.css.
"use strict";
(function () {
  const main = document.getElementById("main");
  const dialog = document.getElementById("act");
  const csrf = document.querySelector('meta[name="csrf-token"]');
  let pending = null;
  let busy = false;

  function toast(text, bad) {
    const box = document.getElementById("toast");
    if (!box) return;
    box.textContent = text;
    box.className = bad ? "show bad" : "show";
    window.setTimeout(function () { box.className = ""; }, 6000);
  }

  async function refresh() {
    if (!main || busy || (dialog && dialog.open) || document.hidden) return;
    const url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    try {
      const answer = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (answer.redirected || answer.status === 401 || answer.status === 403) {
        window.location.reload();  // the session ended: the page itself goes to the sign-in
        return;
      }
      if (answer.status === 200) {
        const all = Array.from(main.querySelectorAll("details"));
        const opened = all.map(function (d) { return d.open; });
        const html = await answer.text();
        const template = document.createElement("template");
        template.innerHTML = html;
        main.replaceChildren(template.content);
        main.querySelectorAll("details").forEach(function (d, i) { if (opened[i]) d.open = true; });
        main.dataset.refreshed = new Date().toISOString();
      }
    } catch (err) {
      main.dataset.refreshError = String(err);
    }
  }

  function open(button) {
    pending = button;
    document.getElementById("act-title").textContent = button.dataset.label;
    document.getElementById("act-what").textContent = button.dataset.what;
    document.getElementById("act-reason").value = "";
    document.getElementById("act-error").textContent = "";
    dialog.showModal();
    document.getElementById("act-reason").focus();
  }

  async function submit(event) {
    event.preventDefault();
    const reason = document.getElementById("act-reason").value.trim();
    const error = document.getElementById("act-error");
    if (reason.length < 3) { error.textContent = "Give a reason (at least 3 characters)."; return; }
    const body = pending.dataset.body ? JSON.parse(pending.dataset.body) : {};
    body.reason = reason;
    busy = true;
    try {
      const answer = await fetch(pending.dataset.url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf ? csrf.content : "" },
        body: JSON.stringify(body),
      });
      const text = await answer.text();
      let message = text;
      try {
        const data = JSON.parse(text);
        const error = data.error;
        message = (typeof error === "string" ? error : error && error.message) || data.message || data.detail || text;
      } catch (err) { message = text; }
      if (answer.ok) {
        dialog.close();
        toast(pending.dataset.label + ": done", false);
      } else {
        error.textContent = "Refused (" + answer.status + "): " + message;
        return;
      }
    } finally {
      busy = false;
    }
    await refresh();
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest("button.act");
    if (button) { open(button); }
  });
  if (dialog) {
    document.getElementById("act-form").addEventListener("submit", submit);
    document.getElementById("act-cancel").addEventListener("click", function () { dialog.close(); });
  }
  if (main && main.dataset.refresh) {
    window.setInterval(refresh, Number(main.dataset.refresh));
  }
})();
