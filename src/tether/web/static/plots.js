// Charts of a sweep, drawn on a plain canvas: parallel coordinates (one vertical axis per
// column, one line per run) and a scatter of two chosen columns. A column is numeric (a linear
// axis from its min to its max) or categorical (its values, sorted, evenly spaced).
import { el, fmt } from "./dom.js";

const INK = "#1d232a";
const GRIDLINE = "#c4cbd3";
const LOW = [37, 99, 235]; // a line's colour runs from blue (lowest of the last column) ...
const HIGH = [220, 38, 38]; // ... to red (highest)

// {name, values} -> {name, pos(v) in 0..1 or null, ticks: [[pos, text]]}
export function axis(column) {
  const present = column.values.filter((v) => v !== null && v !== undefined);
  const numeric = present.length > 0 && present.every((v) => typeof v === "number" && Number.isFinite(v));
  if (numeric) {
    const lo = Math.min(...present);
    const hi = Math.max(...present);
    const span = hi - lo || 1;
    const pos = (v) => (typeof v === "number" && Number.isFinite(v) ? (hi === lo ? 0.5 : (v - lo) / span) : null);
    return { name: column.name, pos, ticks: hi === lo ? [[0.5, fmt(lo)]] : [[0, fmt(lo)], [1, fmt(hi)]] };
  }
  const key = (v) => (typeof v === "string" ? v : JSON.stringify(v));
  const levels = [...new Set(present.map(key))].sort();
  const where = new Map(levels.map((k, i) => [k, levels.length === 1 ? 0.5 : i / (levels.length - 1)]));
  const pos = (v) => (v === null || v === undefined ? null : where.get(key(v)) ?? null);
  return { name: column.name, pos, ticks: levels.map((k) => [where.get(k), k]) };
}

function canvas(id, width, height) {
  const ratio = window.devicePixelRatio || 1;
  const c = el("canvas", { id, width: Math.round(width * ratio), height: Math.round(height * ratio) });
  c.style.width = `${width}px`;
  c.style.height = `${height}px`;
  const ctx = c.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.font = "11px system-ui, sans-serif";
  return [c, ctx];
}

function colourOf(t) {
  if (t === null) return "rgba(107,116,128,.6)";
  const mix = LOW.map((a, i) => Math.round(a + (HIGH[i] - a) * t));
  return `rgb(${mix.join(",")})`;
}

// columns: [{name, values: [one per run]}]; the lines are coloured by the last column.
export function parallelChart(columns, { width = 860, height = 280 } = {}) {
  const [c, ctx] = canvas("parcoords", width, height);
  const axes = columns.map(axis);
  const top = 28;
  const bottom = height - 24;
  const left = 60;
  const right = width - 60;
  const xAt = (i) => (axes.length === 1 ? (left + right) / 2 : left + ((right - left) * i) / (axes.length - 1));
  const yAt = (p) => bottom - (bottom - top) * p;
  const colour = axes.length ? axes[axes.length - 1] : null;
  const runs = columns.length ? columns[0].values.length : 0;
  ctx.lineWidth = 1.5;
  for (let r = 0; r < runs; r++) {
    ctx.strokeStyle = colourOf(colour ? colour.pos(columns[columns.length - 1].values[r]) : null);
    ctx.beginPath();
    let open = false;
    axes.forEach((a, i) => {
      const p = a.pos(columns[i].values[r]);
      if (p === null) { open = false; return; }
      if (open) ctx.lineTo(xAt(i), yAt(p)); else ctx.moveTo(xAt(i), yAt(p));
      open = true;
    });
    ctx.stroke();
  }
  ctx.lineWidth = 1;
  axes.forEach((a, i) => {
    const x = xAt(i);
    ctx.strokeStyle = GRIDLINE;
    ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, bottom); ctx.stroke();
    ctx.fillStyle = INK;
    ctx.textAlign = "center";
    ctx.fillText(a.name, x, top - 12);
    for (const [p, text] of a.ticks.slice(0, 12)) ctx.fillText(String(text).slice(0, 14), x, p === 0 ? bottom + 14 : yAt(p) - 3);
  });
  return el("div", { class: "plot" }, el("h4", { text: "parallel coordinates" }), c);
}

// One point per run at (x column, y column); the runs' labels as the points' titles.
export function scatterChart(xcol, ycol, labels, { width = 420, height = 300 } = {}) {
  const [c, ctx] = canvas("scatter", width, height);
  const ax = axis(xcol);
  const ay = axis(ycol);
  const left = 56;
  const right = width - 16;
  const top = 12;
  const bottom = height - 36;
  const px = (p) => left + (right - left) * p;
  const py = (p) => bottom - (bottom - top) * p;
  ctx.strokeStyle = GRIDLINE;
  ctx.strokeRect(left, top, right - left, bottom - top);
  ctx.fillStyle = INK;
  ctx.textAlign = "center";
  ctx.fillText(ax.name, (left + right) / 2, height - 6);
  for (const [p, text] of ax.ticks.slice(0, 12)) ctx.fillText(String(text).slice(0, 12), px(p), bottom + 14);
  ctx.textAlign = "right";
  for (const [p, text] of ay.ticks.slice(0, 12)) ctx.fillText(String(text).slice(0, 10), left - 4, py(p) + 4);
  ctx.save(); ctx.translate(12, (top + bottom) / 2); ctx.rotate(-Math.PI / 2); ctx.textAlign = "center";
  ctx.fillText(ay.name, 0, 0); ctx.restore();
  const drawn = [];
  xcol.values.forEach((v, i) => {
    const p = ax.pos(v);
    const q = ay.pos(ycol.values[i]);
    if (p === null || q === null) return;
    ctx.fillStyle = "rgba(37,99,235,.8)";
    ctx.beginPath(); ctx.arc(px(p), py(q), 4.5, 0, 2 * Math.PI); ctx.fill();
    drawn.push({ x: px(p), y: py(q), label: labels[i] });
  });
  c.dataset.points = String(drawn.length);
  c.addEventListener("mousemove", (e) => {
    const hit = drawn.find((d) => Math.hypot(d.x - e.offsetX, d.y - e.offsetY) < 6);
    c.title = hit ? hit.label : "";
  });
  return el("div", { class: "plot" }, el("h4", { text: `${ycol.name} against ${xcol.name}` }), c);
}
