// The runs table: one server page at a time, the --where language in the filter box (its
// error shown with the caret under the column), sortable columns, runs picked for compare.
import { get } from "./api.js";
import { go, isCurrent } from "./app.js";
import { el, fmt, ago, statusCell } from "./dom.js";

const PAGE = 50;

export async function renderTable(main, params, n) {
  const where = params.get("where") || "";
  const sort = params.get("sort") || "";
  const columns = params.get("columns") || "";
  const offset = Number(params.get("offset") || 0);
  const picked = new Set((params.get("sel") || "").split(",").filter(Boolean));
  const state = { where, sort, columns, sel: [...picked].join(",") };
  const nav = (changes) => go("/runs", { ...state, ...changes });

  const box = el("input", { type: "text", id: "where", value: where, placeholder: "status = completed and config.lr >= 0.01" });
  const cols = el("input", { type: "text", id: "columns", value: columns, placeholder: "columns: name,status,config.lr,metrics.loss" });
  const submit = () => nav({ where: box.value.trim(), columns: cols.value.trim(), offset: 0 });
  box.addEventListener("keydown", (e) => { if (e.key === "Enter") submit(); });
  cols.addEventListener("keydown", (e) => { if (e.key === "Enter") submit(); });
  const compare = el("button", {
    id: "compare-button", disabled: picked.size < 2 ? true : undefined,
    onclick: () => go("/compare", { runs: [...picked].join(",") }),
  }, `compare (${picked.size})`);
  const bar = el("div", { class: "bar" }, box, cols, el("button", { id: "filter", onclick: submit }, "filter"), compare);
  const error = el("div", { id: "where-error" });

  let page;
  try {
    page = await get("/api/runs", { where, sort, columns, limit: PAGE, offset });
  } catch (err) {
    if (!isCurrent(n)) return;
    error.append(el("pre", { class: "error", text: err.message }));
    main.replaceChildren(bar, error);
    return;
  }
  if (!isCurrent(n)) return;

  const keys = sort.split(",").filter(Boolean);
  const first = keys[0] || "";
  const head = el("tr", {}, el("th", {}, ""), el("th", {}, "id"), page.columns.map((c) => {
    const cls = first === c.name ? "sorted-asc" : first === `-${c.name}` ? "sorted-desc" : undefined;
    const next = first === `-${c.name}` ? c.name : `-${c.name}`;
    const label = c.name.startsWith("metrics.") ? c.name.slice(8) : c.name;
    return el("th", { "data-field": c.name, class: cls, onclick: () => nav({ sort: next, offset: 0 }) }, label);
  }));
  const rows = page.runs.map((r) => {
    const check = el("input", {
      type: "checkbox", checked: picked.has(r.id) ? true : undefined,
      onchange: (e) => {
        if (e.target.checked) picked.add(r.id); else picked.delete(r.id);
        nav({ sel: [...picked].join(","), offset });
      },
    });
    return el("tr", { "data-id": r.id, "data-status": r.status },
      el("td", {}, check),
      el("td", {}, el("a", { href: `#/run/${r.id}` }, r.short_id)),
      page.columns.map((c) => cell(r, c)));
  });
  const end = Math.min(offset + page.runs.length, page.total);
  const pager = el("div", { class: "bar" },
    el("button", { id: "prev", disabled: offset <= 0 ? true : undefined, onclick: () => nav({ offset: Math.max(0, offset - PAGE) }) }, "‹ newer"),
    el("span", { id: "count", text: page.total ? `${offset + 1}–${end} of ${page.total} runs` : "no runs match" }),
    el("button", { id: "next", disabled: end >= page.total ? true : undefined, onclick: () => nav({ offset: offset + PAGE }) }, "older ›"));
  main.replaceChildren(bar, error, el("table", { id: "runs" }, el("thead", {}, head), el("tbody", {}, rows)), pager);
}

function cell(run, column) {
  const value = run.columns[column.name];
  if (column.name === "status") return el("td", {}, statusCell(value));
  if (column.name === "label") {
    return el("td", {}, run.label ? el("span", { class: "label", text: run.label }) : "", run.tags.map((t) => el("span", { class: "tag", text: t })));
  }
  if (column.kind === "time") return el("td", { title: value || "" }, ago(value));
  return el("td", { class: typeof value === "number" ? "num" : undefined }, fmt(value));
}
