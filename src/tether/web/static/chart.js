// Line charts on uPlot (vendored: vendor/uPlot.iife.min.js, MIT, see vendor/uPlot.LICENSE).
/* global uPlot */
import { el } from "./dom.js";

const COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f"];

// series: [{label, x: [...], y: [...]}]; one chart, x aligned across the series by uPlot.join.
export function lineChart(title, series, { width = 420, height = 220, log = false } = {}) {
  const box = el("div", { class: "chart", "data-key": title }, el("h4", { text: title }));
  const usable = series.filter((s) => s.x.length);
  if (!usable.length) {
    box.append(el("p", { class: "muted", text: "no points" }));
    return box;
  }
  const data = usable.length === 1 ? [usable[0].x, usable[0].y] : uPlot.join(usable.map((s) => [s.x, s.y]));
  const opts = {
    width, height,
    scales: { x: { time: false }, y: log ? { distr: 3 } : {} },
    legend: { show: usable.length > 1 },
    series: [{ label: "step" }, ...usable.map((s, i) => ({
      label: s.label, stroke: COLOURS[i % COLOURS.length], width: 1.5, spanGaps: true, points: { show: false },
    }))],
  };
  box.chart = new uPlot(opts, data, box);
  return box;
}
