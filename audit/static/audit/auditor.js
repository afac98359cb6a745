// The auditors' pages work without this file; it only shows times in the viewer's time
// zone (UTC stays on hover) and draws the overview's charts from the page's numbers.
(function () {
  "use strict";
  var format = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
  });
  document.querySelectorAll("time[datetime]").forEach(function (element) {
    var moment = new Date(element.getAttribute("datetime"));
    if (isNaN(moment.getTime()) || element.getAttribute("datetime").length <= 10) return;
    element.title = element.textContent;
    element.textContent = format.format(moment);
  });

  var source = document.getElementById("chart-data");
  if (!source || typeof Chart === "undefined") return;
  var data = JSON.parse(source.textContent);
  var SHOWN = 8;
  var palette = ["#0b5cad", "#d4462f", "#1a7f37", "#8250df", "#bf8700", "#0598bc",
                 "#cf222e", "#57606a", "#999999"];
  data.metrics.forEach(function (metric) {
    var canvas = document.getElementById("chart-" + metric.key);
    if (!canvas) return;
    var ranked = data.series.slice().sort(function (a, b) {
      return sum(b[metric.key]) - sum(a[metric.key]);
    });
    var datasets = ranked.slice(0, SHOWN).map(function (series, i) {
      return { label: series.partner, data: series[metric.key], borderColor: palette[i],
               backgroundColor: palette[i], tension: 0.2, pointRadius: 1 };
    });
    if (ranked.length > SHOWN) {
      var others = data.days.map(function (_, day) {
        return ranked.slice(SHOWN).reduce(function (total, s) { return total + s[metric.key][day]; }, 0);
      });
      datasets.push({ label: "others", data: others, borderColor: palette[SHOWN],
                      backgroundColor: palette[SHOWN], borderDash: [4, 3], pointRadius: 1 });
    }
    new Chart(canvas, {
      type: "line",
      data: { labels: data.days, datasets: datasets },
      options: { animation: false, responsive: true, maintainAspectRatio: false,
                 interaction: { mode: "index", intersect: false },
                 scales: { y: { beginAtZero: true } } }
    });
  });

  function sum(values) { return values.reduce(function (a, b) { return a + b; }, 0); }
})();
