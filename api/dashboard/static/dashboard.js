/* Charts drawn from the data tables that follow them (the tables are the source, so a chart
   can never disagree with its table), and filter forms that keep the URL free of blanks. */
"use strict";
(function () {
  // Okabe–Ito: distinguishable with every common colour-vision deficiency.
  var PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00"];

  function column(table, col) {
    var rows = Array.prototype.slice.call(table.tBodies[0].rows);
    return rows.map(function (row) {
      var cell = row.querySelector('[data-col="' + col + '"]');
      var raw = cell ? cell.getAttribute("data-value") : "";
      return raw === "" || raw === null ? null : Number(raw);
    });
  }

  function labels(table) {
    return Array.prototype.map.call(table.tBodies[0].rows, function (row) {
      return row.cells[0].textContent.trim();
    });
  }

  function draw(canvas) {
    var table = document.getElementById(canvas.getAttribute("data-source"));
    if (!table || canvas.hasAttribute("data-drawn")) { return; }
    canvas.setAttribute("data-drawn", "1");
    var percent = canvas.getAttribute("data-axis") === "percent";
    var horizontal = canvas.hasAttribute("data-horizontal");
    var datasets = canvas.getAttribute("data-series").split(";").map(function (spec, i) {
      var parts = spec.split(":");
      var data = column(table, parts[0]).map(function (v) {
        return v === null ? null : percent ? v * 100 : v;
      });
      return { label: parts[1], data: data, backgroundColor: PALETTE[i % PALETTE.length],
               borderColor: PALETTE[i % PALETTE.length], borderWidth: 2, pointRadius: 3 };
    });
    // Counts tick in whole numbers (no half students); every value axis says what it counts.
    var valueAxis = { beginAtZero: true,
                      ticks: percent ? { color: "#1a1a1a" } : { color: "#1a1a1a", precision: 0 },
                      title: { display: true, color: "#1a1a1a",
                               text: canvas.getAttribute("data-axis-title") || "" } };
    var labelAxis = { ticks: { color: "#1a1a1a", autoSkip: !horizontal } };
    new window.Chart(canvas, {
      type: canvas.getAttribute("data-chart"),
      data: { labels: labels(table), datasets: datasets },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false,
        indexAxis: horizontal ? "y" : "x",
        scales: horizontal ? { x: valueAxis, y: labelAxis } : { x: labelAxis, y: valueAxis },
        plugins: { legend: { labels: { color: "#1a1a1a" } } }
      }
    });
  }

  // A chart inside a closed detail section is drawn when the section first opens (a
  // canvas in a closed <details> has no size to draw at).
  function drawVisible(root) {
    Array.prototype.forEach.call(root.querySelectorAll("canvas[data-chart]"), function (c) {
      var closed = c.closest("details:not([open])");
      if (!closed) { draw(c); }
    });
  }

  // A link to a section inside a closed detail (an alert's evidence: #waits) opens it.
  function openTarget() {
    var id = window.location.hash.slice(1);
    var target = id ? document.getElementById(id) : null;
    var section = target ? target.closest("details") : null;
    if (section && !section.open) { section.open = true; }
    if (target) { target.scrollIntoView(); }
  }

  function keepUrlClean(form) {
    form.addEventListener("submit", function () {
      Array.prototype.forEach.call(form.elements, function (el) {
        if (el.name && el.value === "") { el.disabled = true; }
      });
    });
    window.addEventListener("pageshow", function () {
      Array.prototype.forEach.call(form.elements, function (el) { el.disabled = false; });
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll("form.filters"), keepUrlClean);
  openTarget();
  window.addEventListener("hashchange", openTarget);
  if (window.Chart) {
    window.Chart.defaults.font.family = "system-ui, sans-serif";
    drawVisible(document);
    Array.prototype.forEach.call(document.querySelectorAll("details"), function (d) {
      d.addEventListener("toggle", function () { if (d.open) { drawVisible(d); } });
    });
  }
  // Print every detail section: open the closed ones for printing, close them after.
  var opened = [];
  window.addEventListener("beforeprint", function () {
    Array.prototype.forEach.call(document.querySelectorAll("details:not([open])"),
      function (d) { d.open = true; opened.push(d); });
    if (window.Chart) {
      drawVisible(document);
      Object.values(window.Chart.instances).forEach(function (c) { c.resize(); });
    }
  });
  window.addEventListener("afterprint", function () {
    opened.forEach(function (d) { d.open = false; });
    opened = [];
  });
  document.documentElement.setAttribute("data-rendered", "1");
  if (window.performance && performance.mark) { performance.mark("dashboard-rendered"); }
})();
