// The runs table: the --where language in the filter box (its error shown with the caret under
// the column), sortable columns, columns picked from the keys the runs have, runs picked for
// compare, and virtualised scrolling: only the rows in view are in the page, fetched from the
// server a chunk at a time as the user scrolls.
import { get } from "./api.js";
import { go, isCurrent } from "./app.js";
import { el, fmt, ago, statusCell } from "./dom.js";

const ROW = 28; // px of a row (style.css)
const OVERSCAN = 10; // rows drawn above and below the visible ones
// Runs one request fetches: about three screens of the window (a cheap first page, few
// requests while scrolling), 30 to 200.
const chunkSize = () => Math.min(200, Math.max(30, 10 * Math.ceil((3 * Math.max(240, innerHeight - 170)) / ROW / 10)));
let active = null; // the table shown now: the live updates refresh it in place

export function refreshTable() {
  if (!active || !document.body.contains(active.scroller)) return false;
  active.refresh();
  return true;
}

export async function renderTable(main, params, n) {
  const where = params.get("where") || "";
  const sort = params.get("sort") || "";
  const columns = params.get("columns") || "";
  const picked = new Set((params.get("sel") || "").split(",").filter(Boolean));
  const state = { where, sort, columns, sel: [...picked].join(",") };
  const nav = (changes) => go("/runs", { ...state, ...changes });

  const box = el("input", { type: "text", id: "where", value: where, placeholder: "status = completed and config.lr >= 0.01" });
  const cols = el("input", { type: "text", id: "columns", value: columns, placeholder: "columns: name,status,config.lr,metrics.loss" });
  const submit = () => nav({ where: box.value.trim(), columns: cols.value.trim() });
  box.addEventListener("keydown", (e) => { if (e.key === "Enter") submit(); });
  cols.addEventListener("keydown", (e) => { if (e.key === "Enter") submit(); });
  const compare = el("button", {
    id: "compare-button", disabled: picked.size < 2 ? true : undefined,
    onclick: () => go("/compare", { runs: [...picked].join(",") }),
  }, `compare (${picked.size})`);
  const picker = el("details", { id: "column-picker" }, el("summary", {}, "pick columns"));
  const bar = el("div", { class: "bar" }, box, cols, el("button", { id: "filter", onclick: submit }, "filter"), picker, compare);
  const error = el("div", { id: "where-error" });

  // Chunks of rows by their first offset, fetched once; the first tells the total and the
  // columns (later chunks ask for the same columns, so every row has the same cells).
  const chunks = new Map();
  const CHUNK = chunkSize();
  const fetchChunk = (offset, names) => get("/api/runs", { where, sort, columns: names, limit: CHUNK, offset });
  let first;
  try {
    first = await fetchChunk(0, columns);
  } catch (err) {
    if (!isCurrent(n)) return;
    error.append(el("pre", { class: "error", text: err.message }));
    main.replaceChildren(bar, error);
    return;
  }
  if (!isCurrent(n)) return;
  chunks.set(0, first);
  let total = first.total;
  const shownColumns = first.columns;
  const names = shownColumns.map((c) => c.name).join(",");

  const keys = sort.split(",").filter(Boolean);
  const lead = keys[0] || "";
  const head = el("tr", {}, el("th", {}, ""), el("th", {}, "id"), shownColumns.map((c) => {
    const cls = lead === c.name ? "sorted-asc" : lead === `-${c.name}` ? "sorted-desc" : undefined;
    const next = lead === `-${c.name}` ? c.name : `-${c.name}`;
    const label = c.name.startsWith("metrics.") ? c.name.slice(8) : c.name;
    return el("th", { "data-field": c.name, class: cls, onclick: () => nav({ sort: next }) }, label);
  }));
  const body = el("tbody", {});
  const table = el("table", { id: "runs" }, el("thead", {}, head), body);
  const sizer = el("div", { class: "runs-sizer" }, table);
  const scroller = el("div", { id: "runs-scroll" }, sizer);
  const count = el("span", { id: "count" });
  let rowHeight = 0;

  const rowOf = (r, i) => {
    const check = el("input", {
      type: "checkbox", checked: picked.has(r.id) ? true : undefined,
      onchange: (e) => {
        if (e.target.checked) picked.add(r.id); else picked.delete(r.id);
        state.sel = [...picked].join(",");
        // The selection is in the URL without drawing the table again (the scroll stays).
        history.replaceState(null, "", `#/runs?${new URLSearchParams(Object.entries(state).filter(([, v]) => v))}`);
        compare.disabled = picked.size < 2;
        compare.textContent = `compare (${picked.size})`;
      },
    });
    return el("tr", { "data-id": r.id, "data-status": r.status, "data-index": i },
      el("td", {}, check),
      el("td", {}, el("a", { href: `#/run/${r.id}` }, r.short_id)),
      shownColumns.map((c) => cell(r, c)));
  };
  const placeholder = (i) => el("tr", { class: "loading", "data-index": i },
    el("td", { colspan: shownColumns.length + 2, class: "muted" }, "…"));

  // Draw the rows in view (plus OVERSCAN), fetching the chunks they need.
  let drawing = 0;
  const draw = () => {
    const mine = ++drawing;
    const height = rowHeight || ROW;
    const top = Math.max(0, Math.floor(scroller.scrollTop / height) - OVERSCAN);
    const visible = Math.ceil(scroller.clientHeight / height);
    const end = Math.min(total, top + visible + 2 * OVERSCAN);
    const rowsDrawn = [];
    const missing = new Set();
    for (let i = top; i < end; i++) {
      const at = i - (i % CHUNK);
      const chunk = chunks.get(at);
      if (chunk && chunk.runs) rowsDrawn.push(chunk.runs[i - at] ? rowOf(chunk.runs[i - at], i) : placeholder(i));
      else { rowsDrawn.push(placeholder(i)); missing.add(at); }
    }
    body.replaceChildren(...rowsDrawn);
    table.style.top = `${top * height}px`;
    const shownFirst = Math.min(total, Math.floor(scroller.scrollTop / height) + 1);
    const shownLast = Math.min(total, Math.floor(scroller.scrollTop / height) + visible);
    count.textContent = total ? `${shownFirst}–${shownLast} of ${total} runs` : "no runs match";
    if (!rowHeight && body.firstElementChild && !body.firstElementChild.classList.contains("loading")) {
      rowHeight = body.firstElementChild.getBoundingClientRect().height || ROW;
      if (Math.abs(rowHeight - height) > 0.5) { sizeUp(); draw(); return; }
    }
    for (const at of missing) {
      if (chunks.has(at)) continue;
      const pending = fetchChunk(at, names).then((page) => {
        chunks.set(at, page);
        total = page.total;
        sizeUp();
        if (mine === drawing || isCurrent(n)) draw();
      }, () => chunks.delete(at));
      chunks.set(at, { pending });
    }
  };
  const sizeUp = () => {
    const headHeight = table.tHead ? table.tHead.getBoundingClientRect().height : 30;
    sizer.style.height = `${total * (rowHeight || ROW) + headHeight}px`;
  };
  let queued = false;
  scroller.addEventListener("scroll", () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; draw(); });
  });
  active = {
    scroller,
    // A run changed: ask again for the chunks in view, keep the scroll.
    refresh: () => {
      for (const at of [...chunks.keys()]) if (chunks.get(at).runs) chunks.delete(at);
      draw();
    },
  };
  main.replaceChildren(bar, error, el("div", { class: "bar" }, count), scroller);
  sizeUp();
  draw();
  columnPicker(picker, shownColumns.map((c) => c.name), (chosen) => nav({ columns: chosen.join(",") }));
}

// The keys the runs have (GET /api/keys), each a checkbox: ticking one adds it as a column.
async function columnPicker(picker, current, choose) {
  let keys;
  try { keys = await get("/api/keys"); } catch { return; }
  const chosen = new Set(current);
  const find = el("input", { type: "text", id: "column-find", placeholder: "find a key" });
  const list = el("div", { class: "picker-list" }, [...keys.plain, ...keys.keys].map((k) => el("label", { "data-key": k },
    el("input", {
      type: "checkbox", value: k, checked: chosen.has(k) ? true : undefined,
      onchange: (e) => {
        const next = current.filter((c) => c !== k);
        if (e.target.checked) next.push(k);
        choose(next);
      },
    }), ` ${k}`)));
  find.addEventListener("input", () => {
    const q = find.value.toLowerCase();
    for (const label of list.children) label.hidden = q && !label.dataset.key.toLowerCase().includes(q);
  });
  picker.append(find, list);
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
