// cbr-agent console: a little progressive enhancement; every page works without it.
"use strict";
var LIVE_MS = 2000;
document.addEventListener("DOMContentLoaded", function () {
  // filters: a changed select submits the form
  document.querySelectorAll("select.autosubmit").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
  // "/" focuses the search box
  var search = document.getElementById("search");
  if (search) {
    document.addEventListener("keydown", function (event) {
      if (event.key === "/" && document.activeElement !== search) {
        event.preventDefault();
        search.focus();
      }
    });
  }
  // actions that change something ask first
  document.querySelectorAll("form.confirm").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); }
    });
  });
  // live tables (tasks): while a task waits or runs, fetch the rows again every few seconds
  document.querySelectorAll("tbody.live").forEach(function (body) {
    var refresh = function () {
      if (body.dataset.live !== "yes") { return; }
      if (document.hidden) { window.setTimeout(refresh, LIVE_MS); return; }
      fetch(body.dataset.rows, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (response) {
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.text();
        })
        .then(function (html) {
          body.innerHTML = html;  // server-rendered, autoescaped rows
          var running = body.querySelector("tr[data-status=waiting], tr[data-status=running]");
          body.dataset.live = running ? "yes" : "no";
          if (!running) { document.dispatchEvent(new CustomEvent("tasks-settled")); }
        })
        .catch(function () { /* try again at the next tick */ })
        .then(function () { if (body.dataset.live === "yes") { window.setTimeout(refresh, LIVE_MS); } });
    };
    window.setTimeout(refresh, LIVE_MS);
  });
  // the overview's status bar: widths from data attributes (no inline style under the CSP)
  document.querySelectorAll(".bar .seg").forEach(function (seg) {
    seg.style.width = seg.dataset.share + "%";
  });
});
