// trodo dashboard: theme switch, span panel, live runs list. No inline scripts (CSP), no network but this server.
(function () {
  "use strict";
  var root = document.documentElement;
  var saved = null;
  try { saved = localStorage.getItem("trodo-theme"); } catch (e) { /* storage disabled */ }
  if (saved === "light" || saved === "dark") root.setAttribute("data-theme", saved);

  function ready(fn) {
    if (document.readyState !== "loading") fn(); else document.addEventListener("DOMContentLoaded", fn);
  }

  ready(function () {
    var toggle = document.getElementById("theme-toggle");
    if (toggle) toggle.addEventListener("click", function () {
      var dark = root.getAttribute("data-theme") === "dark" ||
        (!root.getAttribute("data-theme") && window.matchMedia("(prefers-color-scheme: dark)").matches);
      var next = dark ? "light" : "dark";
      root.setAttribute("data-theme", next);
      try { localStorage.setItem("trodo-theme", next); } catch (e) { /* ignore */ }
    });
    spanPanel();
    liveRuns();
  });

  // Clicking a span row opens it in place and loads its detail (server-rendered, escaped) in the panel.
  function spanPanel() {
    var waterfall = document.getElementById("waterfall");
    var panel = document.getElementById("span-panel");
    if (!waterfall || !panel) return;
    var base = waterfall.getAttribute("data-span-url");
    waterfall.addEventListener("click", function (event) {
      var summary = event.target.closest("summary");
      if (!summary || event.target.closest("a")) return;
      var row = summary.parentElement;
      if (!row || row.classList.contains("tr-subrun")) return;
      var spanId = row.getAttribute("data-span-id");
      if (!/^[0-9a-f]{16}$/.test(spanId || "")) return;
      var previous = waterfall.querySelector("details.selected");
      if (previous) previous.classList.remove("selected");
      row.classList.add("selected");
      fetch(base + spanId, { headers: { "Accept": "text/html" } })
        .then(function (r) { return r.text(); })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var detail = doc.querySelector(".span-detail");
          panel.replaceChildren();
          if (detail) panel.appendChild(document.adoptNode(detail));
        });
    });
  }

  // The runs list asks for runs newer than the newest shown every few seconds and puts them on top.
  function liveRuns() {
    var table = document.getElementById("runs-table");
    if (!table || table.getAttribute("data-live") !== "on") return;
    var body = document.getElementById("runs-body");
    var note = document.getElementById("live-note");
    var query = table.getAttribute("data-query");
    var newest = table.getAttribute("data-newest") || "0";
    var added = 0;
    function poll() {
      fetch("/api/runs?" + (query ? query + "&" : "") + "after=" + encodeURIComponent(newest))
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (!data || !data.count) return;
          newest = String(data.newest);
          var doc = new DOMParser().parseFromString("<table><tbody>" + data.html + "</tbody></table>", "text/html");
          var rows = Array.prototype.slice.call(doc.querySelectorAll("tr.run-row"));
          for (var i = rows.length - 1; i >= 0; i--) {
            var id = rows[i].getAttribute("data-run-id");
            var existing = body.querySelector('tr[data-run-id="' + CSS.escape(id) + '"]');
            if (existing) existing.remove();
            var row = document.adoptNode(rows[i]);
            row.classList.add("fresh");
            body.insertBefore(row, body.firstChild);
          }
          added += data.count;
          note.textContent = added + " new run" + (added === 1 ? "" : "s") + " since this page loaded.";
          note.hidden = false;
        })
        .catch(function () { /* the server stopped: try again later */ })
        .then(function () { setTimeout(poll, 2000); });
    }
    setTimeout(poll, 2000);
  }
})();
