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
    if (!table) { return; }
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
    var valueAxis = { beginAtZero: true, ticks: { color: "#1a1a1a" },
                      title: { display: percent, text: "percent", color: "#1a1a1a" } };
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
  if (window.Chart) {
    window.Chart.defaults.font.family = "system-ui, sans-serif";
    Array.prototype.forEach.call(document.querySelectorAll("canvas[data-chart]"), draw);
    window.addEventListener("beforeprint", function () {
      Object.values(window.Chart.instances).forEach(function (c) { c.resize(); });
    });
  }
  document.documentElement.setAttribute("data-rendered", "1");
  if (window.performance && performance.mark) { performance.mark("dashboard-rendered"); }
})();
