// One run: summary, label and tags, config, metric charts, files and the output log (which
// follows the file while the run is running).
import { get, post, runPath } from "./api.js";
import { isCurrent } from "./app.js";
import { el, fmt, statusCell } from "./dom.js";
import { lineChart } from "./chart.js";
import { lineageGraph } from "./lineage.js";

const LIVE = new Set(["running", "pending"]);

export async function renderRun(main, id, params, n) {
  const run = await get(runPath(id));
  if (!isCurrent(n)) return;
  const [metrics, files] = await Promise.all([
    get(`${runPath(run.id)}/metrics`, { points: 1500 }),
    get(`${runPath(run.id)}/files`),
  ]);
  if (!isCurrent(n)) return;
  const st = run.state;
  const summary = el("dl", { class: "kv" },
    kv("id", run.id), kv("name", run.name), kv("status", el("span", { id: "run-status" }, statusCell(st.status))),
    kv("started", st.started || "-"), kv("stopped", st.stopped || "-"),
    st.exit_code ? kv("exit", `${st.exit_code} ${st.error || ""}`) : null,
    kv("dir", run.dir), kv("command", run.command.join(" ")),
    kv("reproduce", `tether reproduce ${run.short_id}`),
    run.sources.map((s) => kv("source", `${s.path || "."} ${s.commit ? s.commit.slice(0, 12) : "(files snapshotted)"}${s.dirty ? " dirty" : ""}`)),
    st.attempts && st.attempts.length > 1 ? kv("attempts", String(st.attempts.length)) : null);

  const attrs = el("div", { id: "attrs" });
  const showAttrs = (a) => attrs.replaceChildren(
    el("span", { class: "label", id: "label-text", text: a.label || "(no label)" }),
    ...a.tags.map((t) => el("span", { class: "tag", text: t })),
    ...a.notes.map((x) => el("div", { class: "muted", text: `${x.t} ${x.author}: ${x.text}` })));
  showAttrs(run.attrs);
  const labelBox = el("input", { type: "text", id: "label-input", value: run.attrs.label || "", placeholder: "label" });
  const tagBox = el("input", { type: "text", id: "tag-input", placeholder: "+tag -tag" });
  const problem = el("pre", { class: "error", id: "attr-error", hidden: true });
  const guarded = async (call) => {
    problem.hidden = true;
    try { showAttrs(await call()); } catch (err) { problem.textContent = err.message; problem.hidden = false; }
  };
  const saveLabel = () => guarded(() => post(`${runPath(run.id)}/label`, { label: labelBox.value.trim() || null }));
  const saveTags = () => {
    const words = tagBox.value.split(/\s+/).filter(Boolean);
    const add = words.filter((w) => !w.startsWith("-")).map((w) => w.replace(/^\+/, ""));
    const remove = words.filter((w) => w.startsWith("-")).map((w) => w.slice(1));
    return guarded(() => post(`${runPath(run.id)}/tags`, { add, remove }));
  };
  const editor = el("div", { class: "bar" }, labelBox, el("button", { id: "label-save", onclick: saveLabel }, "set label"),
    tagBox, el("button", { id: "tag-save", onclick: saveTags }, "tags"));

  const config = el("table", { id: "config" }, Object.entries(run.config_flat).map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, fmt(v)))));
  const metricRows = Object.entries(run.metrics).map(([k, m]) => el("tr", {}, el("td", {}, k),
    ["last", "min", "max", "step"].map((s) => el("td", { class: "num" }, fmt(m[s])))));
  const charts = el("div", { class: "grid", id: "charts" });
  const drawn = {};
  for (const [key, s] of Object.entries(metrics.series)) {
    drawn[key] = { x: [...s.x], y: [...s.y] };
    charts.append((drawn[key].box = lineChart(key, [{ label: key, x: s.x, y: s.y }])));
  }
  const live = { since: metrics.next, drawn, charts };
  const fileList = el("ul", { id: "files" }, files.files.map((f) => el("li", {},
    el("a", { href: `${runPath(run.id)}/files/${f.path.split("/").map(encodeURIComponent).join("/")}`, target: "_blank", rel: "noopener" }, f.path),
    el("span", { class: "muted", text: ` ${f.size} B ${f.kind}` }))));
  const log = el("pre", { class: "log", id: "log" });
  const runLink = (id, text) => el("a", { href: `#/run/${id}` }, text || id.slice(0, 13));
  const deps = el("ul", { id: "deps" },
    run.data.map((d) => el("li", {}, `data ${d.path} `, el("span", { class: "muted", text: `${d.algo}:${(d.digest || "pending").slice(0, 16)} ${d.files} files ${d.bytes} B` }))),
    run.stages.map((st) => el("li", {}, `stage ${st.name}: `, runLink(st.run))));
  const attempts = el("table", { id: "attempts" }, el("tr", {}, ["#", "host", "job", "start", "stop", "status", "exit"].map((h) => el("th", {}, h))),
    (st.attempts || []).map((a, i) => el("tr", {}, [i + 1, a.host, a.job_id, a.start, a.stop, a.status, a.exit_code].map((v) => el("td", {}, fmt(v))))));
  const ranks = el("table", { id: "ranks" }, run.ranks.map((r) => el("tr", {}, [r.rank, r.host, r.status, r.exit_code, r.error].map((v) => el("td", {}, fmt(v))))));
  const other = el("input", { type: "text", id: "diff-other", placeholder: "another run: index, id or name" });
  const diffOut = el("div", { id: "diff" });
  const showDiff = async () => {
    diffOut.replaceChildren();
    try {
      const d = await get(`${runPath(run.id)}/diff/${encodeURIComponent(other.value.trim())}`);
      diffOut.append(...[
        d.identical ? el("p", { text: "identical inputs" }) : null,
        el("table", {}, d.config.map((c) => el("tr", {}, el("td", {}, c.key), el("td", {}, c.change), el("td", {}, fmt(c.old)), el("td", {}, fmt(c.new))))),
        d.sources.filter((x) => x.change !== "same").map((x) => el("div", {}, el("p", { text: `${x.path || "."}: ${x.change} ${x.message || x.stat || ""}` }), x.patch ? el("pre", { class: "log", text: x.patch }) : null)),
        d.data.map((x) => el("p", { text: `data ${x.path}: ${x.change}` })),
        d.stages.map((x) => el("p", { text: `stage ${x.name}: ${x.change}` })),
      ].flat().filter(Boolean));
    } catch (err) { diffOut.append(el("pre", { class: "error", text: err.message })); }
  };
  other.addEventListener("keydown", (e) => { if (e.key === "Enter") showDiff(); });
  const headOut = el("div", { id: "head-diff" });
  const showHead = async () => {
    headOut.replaceChildren(el("p", { class: "muted", text: "asking git…" }));
    try {
      const d = await get(`${runPath(run.id)}/headdiff`);
      headOut.replaceChildren(...(d.sources.length ? d.sources.map(headEntry) : [el("p", { class: "muted", text: "the run recorded no sources" })]));
    } catch (err) { headOut.replaceChildren(el("pre", { class: "error", text: err.message })); }
  };

  main.replaceChildren(...[
    el("h2", {}, `${run.name} `, el("span", { class: "muted", text: run.short_id })),
    section("summary", summary), section("label and tags", attrs, editor, problem),
    section("metrics", el("table", {}, el("tr", {}, ["key", "last", "min", "max", "step"].map((h) => el("th", {}, h))), metricRows), charts),
    section("config", config),
    run.data.length || run.stages.length ? section("data and stages", deps) : null,
    run.lineage.children.length ? section("lineage", lineageGraph(run.lineage)) : null,
    (st.attempts || []).length > 1 ? section("attempts", attempts) : null,
    run.ranks.length ? section("ranks", ranks) : null,
    section("code against HEAD", el("div", { class: "bar" }, el("button", { id: "head-go", onclick: showHead }, "diff against HEAD")), headOut),
    section("diff", el("div", { class: "bar" }, other, el("button", { id: "diff-go", onclick: showDiff }, "diff")), diffOut),
    section("files", fileList), section("output", log),
  ].filter(Boolean));
  follow(run, log, live, n);
}

// New points of a running run: appended as they come (the first answer was cut to a budget;
// what follows is small).
async function more(run, live) {
  const update = await get(`${runPath(run.id)}/metrics`, { since: live.since, points: 100000 });
  live.since = update.next;
  for (const [key, s] of Object.entries(update.series)) {
    let d = live.drawn[key];
    if (!d) {
      d = live.drawn[key] = { x: [], y: [] };
      live.charts.append((d.box = lineChart(key, [{ label: key, x: [], y: [] }])));
    }
    d.x.push(...s.x);
    d.y.push(...s.y);
    if (d.box.chart) d.box.chart.setData([d.x, d.y]);
    else {
      const fresh = lineChart(key, [{ label: key, x: d.x, y: d.y }]);
      d.box.replaceWith(fresh);
      d.box = fresh;
    }
  }
}

async function follow(run, log, live, n) {
  let offset = 0;
  for (;;) {
    const response = await fetch(`${runPath(run.id)}/log?offset=${offset}`, { credentials: "same-origin" });
    if (!isCurrent(n) || !response.ok) return;
    const text = await response.text();
    offset = Number(response.headers.get("x-next-offset") || offset);
    if (text) { log.textContent += text; log.scrollTop = log.scrollHeight; }
    if (!LIVE.has(run.state.status)) return;
    await new Promise((done) => setTimeout(done, 1000));
    if (!isCurrent(n)) return;
    const was = run.state.status;
    run = await get(runPath(run.id));
    await more(run, live);
    if (run.state.status !== was) {
      const badge = document.getElementById("run-status");
      if (badge) badge.replaceChildren(statusCell(run.state.status));
    }
  }
}

// One source entry against its repository's HEAD: the commits, the stat and the patch, or why
// it cannot be compared.
function headEntry(x) {
  const what = `${x.path || "."}: ${(x.commit || "").slice(0, 12)} → HEAD ${(x.head || "").slice(0, 12)}`;
  if (x.change === "same") return el("p", { class: "head-same", text: `${what}: no change` });
  if (x.change !== "changed") return el("p", { class: "muted", text: `${x.path || "."}: ${x.message || x.change}` });
  const patch = el("pre", { class: "log patch" }, (x.patch || "").split("\n").map((line) => el("span", {
    class: line.startsWith("+") && !line.startsWith("+++") ? "add" : line.startsWith("-") && !line.startsWith("---") ? "del" : undefined,
    text: `${line}\n`,
  })));
  return el("div", { class: "head-changed" }, el("p", { text: what }), el("pre", { class: "muted", text: x.stat || "" }), patch,
    x.truncated ? el("p", { class: "muted", text: "(patch cut at 2 MiB)" }) : null);
}

const kv = (k, v) => [el("dt", {}, k), el("dd", {}, v)];
const section = (title, ...body) => el("section", {}, el("h3", {}, title), ...body);
