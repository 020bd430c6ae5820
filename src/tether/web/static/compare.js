// Runs side by side: only the config keys that differ (or all), final metrics, one chart per
// metric key with every run's curve on it (or each group's mean and min-max band), and the
// sweep's parallel coordinates and scatter. Every option is in the URL.
import { get } from "./api.js";
import { go, isCurrent } from "./app.js";
import { el, fmt, statusCell } from "./dom.js";
import { COLOURS, alignedChart, lineChart, tint, empty } from "./chart.js";
import { aggregate, byTime, ema } from "./series.js";
import { parallelChart, scatterChart } from "./plots.js";

const shown = (v) => (v === undefined ? "(none)" : typeof v === "string" ? v : JSON.stringify(v));

// A curve is named by what sets it apart (`optim.lr=0.3 model=long`), as `tether plot` names
// it; the short id when nothing differs.
function legend(run, differing) {
  const text = (differing || []).map((k) => `${k}=${shown(run.config[k])}`).join(" ");
  return text || run.short_id;
}

// The last answers, so a change of chart options (smoothing, grouping, axes) draws again
// without asking the server.
let memo = { key: null, cmp: null, all: null };
export function forgetCompare() { memo = { key: null, cmp: null, all: null }; }

async function load(runs, every) {
  const key = `${runs}|${every}`;
  if (memo.key === key) return memo;
  const cmp = await get("/api/compare", { runs, all: every ? "1" : "" });
  // One request for every run's series; fewer points per curve the more curves share a chart
  // (each bucket still keeps its min, max and last point).
  const points = Math.max(300, Math.min(1500, Math.round(30000 / cmp.runs.length)));
  const all = await get("/api/metrics", { runs: cmp.runs.map((r) => r.id).join(","), points });
  memo = { key, cmp, all };
  return memo;
}

export async function renderCompare(main, params, n) {
  const state = {
    runs: params.get("runs") || "",
    all: params.get("all") === "1" ? "1" : "",
    log: params.get("log") === "1" ? "1" : "",
    group: params.get("group") || "",
    smooth: Math.min(0.99, Math.max(0, Number(params.get("smooth")) || 0)),
    x: params.get("x") === "time" ? "time" : "",
    sx: params.get("sx") || "",
    sy: params.get("sy") || "",
  };
  const nav = (changes) => go("/compare", { ...state, smooth: state.smooth || "", ...changes });
  const { cmp, all } = await load(state.runs, state.all === "1");
  if (!isCurrent(n)) return;
  const series = cmp.runs.map((r) => all.runs[r.id]);

  const check = (id, on, text, key) => el("label", {}, el("input", {
    type: "checkbox", id, checked: on ? true : undefined, onchange: (e) => nav({ [key]: e.target.checked ? "1" : "" }),
  }), ` ${text}`);
  const select = (id, value, options, onchange) => el("select", { id, onchange: (e) => onchange(e.target.value) },
    options.map(([v, text]) => el("option", { value: v, selected: v === value ? true : undefined }, text)));
  const smoothText = el("span", { id: "smooth-value", text: state.smooth.toFixed(2) });
  const slider = el("input", {
    type: "range", id: "smooth", min: "0", max: "0.99", step: "0.01", value: String(state.smooth),
    oninput: (e) => { smoothText.textContent = Number(e.target.value).toFixed(2); },
    onchange: (e) => nav({ smooth: Number(e.target.value) || "" }),
  });
  const toggles = el("div", { class: "bar" },
    check("all-keys", state.all, "every config key", "all"),
    check("log-scale", state.log, "log scale", "log"),
    el("label", {}, "x ", select("x-axis", state.x || "step", [["step", "step"], ["time", "time (s)"]], (v) => nav({ x: v === "time" ? "time" : "" }))),
    el("label", {}, "group by ", select("group-by", state.group, [["", "(none)"], ...cmp.keys.map((k) => [k, k])], (v) => nav({ group: v }))),
    el("label", {}, "smoothing ", slider, " ", smoothText));

  const head = el("tr", {}, el("th", {}, "run"), el("th", {}, "status"),
    cmp.keys.map((k) => el("th", { class: "config-key" }, k)),
    cmp.metric_keys.map((k) => el("th", {}, k)));
  const rows = cmp.runs.map((r) => el("tr", { "data-id": r.id },
    el("td", {}, el("a", { href: `#/run/${r.id}` }, `${r.name} ${r.short_id}`)),
    el("td", {}, statusCell(r.status)),
    cmp.keys.map((k) => el("td", {}, fmt(r.config[k]))),
    cmp.metric_keys.map((k) => el("td", { class: "num" }, fmt(r.metrics[k] ? r.metrics[k].last : null)))));

  const charts = el("div", { class: "grid", id: "charts" });
  const xLabel = state.x === "time" ? "seconds" : "step";
  const curve = (i, key) => {
    const s = series[i] && series[i].series[key];
    if (!s) return { x: [], y: [] };
    const base = state.x === "time" ? byTime(s) || { x: [], y: [] } : s;
    return { x: base.x, y: ema(base.y, state.smooth) };
  };
  for (const key of cmp.metric_keys) {
    if (state.group) charts.append(groupChart(key, cmp, curve, state, xLabel));
    else {
      const lines = cmp.runs.map((r, i) => ({ label: legend(r, cmp.differing), ...curve(i, key) }));
      charts.append(lineChart(key, lines, { log: state.log === "1", xLabel }));
    }
  }

  main.replaceChildren(el("h2", {}, `compare ${cmp.runs.length} runs`), toggles,
    el("p", { class: "muted", text: state.all ? "every config key" : `${cmp.differing.length} config keys differ` }),
    el("table", { id: "compare" }, el("thead", {}, head), el("tbody", {}, rows)), charts,
    sweep(cmp, state, nav));
}

// One chart per metric key: per group (the runs with one value of the group key), the mean
// line and the band from the group's min to its max at each x.
function groupChart(key, cmp, curve, state, xLabel) {
  const groups = new Map();
  cmp.runs.forEach((r, i) => {
    const c = curve(i, key);
    if (!c.x.length) return;
    const name = shown(r.config[state.group]);
    if (!groups.has(name)) groups.set(name, []);
    groups.get(name).push(c);
  });
  if (!groups.size) return empty(key);
  const reduced = [...groups].map(([name, members]) => ({ name, size: members.length, ...aggregate(members) }));
  const x = [...new Set(reduced.flatMap((g) => g.x))].sort((a, b) => a - b);
  const data = [x];
  const lines = [];
  const bands = [];
  reduced.forEach((g, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const at = new Map(g.x.map((v, j) => [v, j]));
    const column = (ys) => x.map((v) => (at.has(v) ? ys[at.get(v)] : null));
    const label = `${state.group}=${g.name} (${g.size})`;
    data.push(column(g.mean), column(g.max), column(g.min));
    lines.push({ label, stroke: colour, width: 2 },
      { label: `${label} max`, stroke: tint(colour, 0.35), width: 1 },
      { label: `${label} min`, stroke: tint(colour, 0.35), width: 1 });
    const mean = data.length - 3;
    bands.push([mean + 1, mean + 2, tint(colour, 0.18)]);
  });
  return alignedChart(key, data, lines, bands, { log: state.log === "1", xLabel });
}

// The sweep: the shown config keys and the final metrics as columns of a parallel-coordinates
// chart, and two of them chosen for a scatter.
function sweep(cmp, state, nav) {
  const columns = [
    ...cmp.keys.map((k) => ({ name: k, values: cmp.runs.map((r) => r.config[k]) })),
    ...cmp.metric_keys.map((k) => ({ name: k, values: cmp.runs.map((r) => (r.metrics[k] ? r.metrics[k].last : null)) })),
  ];
  if (!columns.length) return el("section", { id: "sweep" });
  const names = columns.map((c) => c.name);
  const sx = names.includes(state.sx) ? state.sx : names[0];
  const sy = names.includes(state.sy) ? state.sy : cmp.metric_keys[0] || names[names.length - 1];
  const pick = (id, value, key) => el("select", { id, onchange: (e) => nav({ [key]: e.target.value }) },
    names.map((k) => el("option", { value: k, selected: k === value ? true : undefined }, k)));
  const byName = (k) => columns.find((c) => c.name === k);
  return el("section", { id: "sweep" }, el("h3", {}, "sweep"),
    parallelChart(columns),
    el("div", { class: "bar" }, el("label", {}, "scatter x ", pick("scatter-x", sx, "sx")), el("label", {}, " y ", pick("scatter-y", sy, "sy"))),
    scatterChart(byName(sx), byName(sy), cmp.runs.map((r) => `${r.name} ${r.short_id}`)));
}
