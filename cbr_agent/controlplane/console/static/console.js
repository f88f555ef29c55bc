// cbr-agent console: a little progressive enhancement; every page works without it.
"use strict";
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
  // the overview's status bar: widths from data attributes (no inline style under the CSP)
  document.querySelectorAll(".bar .seg").forEach(function (seg) {
    seg.style.width = seg.dataset.share + "%";
  });
});
