// Line charts on uPlot (vendored: vendor/uPlot.iife.min.js, MIT, see vendor/uPlot.LICENSE).
/* global uPlot */
import { el } from "./dom.js";

export const COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f"];

// `#2563eb` at `alpha`: the fill of a group's min-max band.
export function tint(hex, alpha) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${n >> 16},${(n >> 8) & 255},${n & 255},${alpha})`;
}

// series: [{label, x: [...], y: [...]}]; one chart, x aligned across the series by uPlot.join.
export function lineChart(title, series, { width = 420, height = 220, log = false, xLabel = "step" } = {}) {
  const usable = series.filter((s) => s.x.length);
  if (!usable.length) return empty(title);
  const data = usable.length === 1 ? [usable[0].x, usable[0].y] : uPlot.join(usable.map((s) => [s.x, s.y]));
  const lines = usable.map((s, i) => ({ label: s.label, stroke: s.stroke || COLOURS[i % COLOURS.length] }));
  return alignedChart(title, data, lines, [], { width, height, log, xLabel });
}

// data: [x, y1, y2, ...] on one x; lines: [{label, stroke, width, dash}] for y1...; bands:
// [[upper, lower, fill]] as indices into data (a group's max and min), filled between.
export function alignedChart(title, data, lines, bands, { width = 420, height = 220, log = false, xLabel = "step" } = {}) {
  const box = el("div", { class: "chart", "data-key": title }, el("h4", { text: title }));
  const opts = {
    width, height,
    scales: { x: { time: false }, y: log ? { distr: 3 } : {} },
    legend: { show: lines.length > 1 },
    axes: [{ label: xLabel, labelSize: 18 }, {}],
    series: [{ label: xLabel }, ...lines.map((s) => ({
      label: s.label, stroke: s.stroke, width: s.width || 1.5, dash: s.dash, spanGaps: true, points: { show: false },
    }))],
    bands: bands.map(([upper, lower, fill]) => ({ series: [upper, lower], fill })),
  };
  box.chart = new uPlot(opts, data, box);
  box.bands = bands.map(([upper, lower]) => [upper, lower]); // for tests and tooltips
  return box;
}

export function empty(title) {
  return el("div", { class: "chart", "data-key": title }, el("h4", { text: title }), el("p", { class: "muted", text: "no points" }));
}
