// Runs side by side: only the config keys that differ (or all), final metrics, and one chart
// per metric key with every run's curve on it.
import { get } from "./api.js";
import { go, isCurrent } from "./app.js";
import { el, fmt, statusCell } from "./dom.js";
import { lineChart } from "./chart.js";

// A curve is named by what sets it apart (`optim.lr=0.3 model=long`), as `tether plot` names
// it; the short id when nothing differs.
function legend(run, differing) {
  const shown = (v) => (typeof v === "string" ? v : JSON.stringify(v));
  const text = (differing || []).map((k) => `${k}=${shown(run.config[k])}`).join(" ");
  return text || run.short_id;
}

export async function renderCompare(main, params, n) {
  const runs = params.get("runs") || "";
  const every = params.get("all") === "1";
  const log = params.get("log") === "1";
  const cmp = await get("/api/compare", { runs, all: every ? "1" : "" });
  if (!isCurrent(n)) return;
  // One request for every run's series; fewer points per curve the more curves share a chart
  // (each bucket still keeps its min, max and last point).
  const points = Math.max(300, Math.min(1500, Math.round(30000 / cmp.runs.length)));
  const all = await get("/api/metrics", { runs: cmp.runs.map((r) => r.id).join(","), points });
  if (!isCurrent(n)) return;
  const series = cmp.runs.map((r) => all.runs[r.id]);
  const toggles = el("div", { class: "bar" },
    el("label", {}, el("input", { type: "checkbox", id: "all-keys", checked: every ? true : undefined,
      onchange: (e) => go("/compare", { runs, all: e.target.checked ? "1" : "", log: log ? "1" : "" }) }), " every config key"),
    el("label", {}, el("input", { type: "checkbox", id: "log-scale", checked: log ? true : undefined,
      onchange: (e) => go("/compare", { runs, all: every ? "1" : "", log: e.target.checked ? "1" : "" }) }), " log scale"));
  const head = el("tr", {}, el("th", {}, "run"), el("th", {}, "status"),
    cmp.keys.map((k) => el("th", { class: "config-key" }, k)),
    cmp.metric_keys.map((k) => el("th", {}, k)));
  const rows = cmp.runs.map((r) => el("tr", { "data-id": r.id },
    el("td", {}, el("a", { href: `#/run/${r.id}` }, `${r.name} ${r.short_id}`)),
    el("td", {}, statusCell(r.status)),
    cmp.keys.map((k) => el("td", {}, fmt(r.config[k]))),
    cmp.metric_keys.map((k) => el("td", { class: "num" }, fmt(r.metrics[k] ? r.metrics[k].last : null)))));
  const charts = el("div", { class: "grid", id: "charts" });
  for (const key of cmp.metric_keys) {
    const lines = cmp.runs.map((r, i) => {
      const s = series[i].series[key];
      return { label: legend(r, cmp.differing), x: s ? s.x : [], y: s ? s.y : [] };
    });
    charts.append(lineChart(key, lines, { log }));
  }
  main.replaceChildren(el("h2", {}, `compare ${cmp.runs.length} runs`), toggles,
    el("p", { class: "muted", text: every ? "every config key" : `${cmp.differing.length} config keys differ` }),
    el("table", { id: "compare" }, el("thead", {}, head), el("tbody", {}, rows)), charts);
}
