// The page's router: every view and its state (filter, sort, columns, selection, runs compared,
// chart options) lives in the URL's hash, so a view is shareable and back/forward walk them.
import { renderTable, refreshTable } from "./table.js";
import { renderRun } from "./run.js";
import { renderCompare, forgetCompare } from "./compare.js";

export function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/runs";
  const [path, query = ""] = raw.split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query) };
}

export function go(path, params = {}) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") query.set(k, v);
  const qs = query.toString();
  location.hash = `#${path}${qs ? `?${qs}` : ""}`;
}

let current = 0; // a newer navigation makes an older render's late answers drop
export const isCurrent = (n) => n === current;

async function route() {
  const n = ++current;
  const main = document.getElementById("main");
  const { parts, params } = parseHash();
  if (parts[0] !== "compare") forgetCompare(); // compare asks the server again next time
  try {
    if (parts[0] === "run" && parts[1]) await renderRun(main, parts[1], params, n);
    else if (parts[0] === "compare") await renderCompare(main, params, n);
    else await renderTable(main, params, n);
  } catch (err) {
    if (!isCurrent(n)) return;
    main.replaceChildren();
    const pre = document.createElement("pre");
    pre.className = "error";
    pre.textContent = err.message;
    main.append(pre);
  }
}

// Live rows: the server says when a run changed (/api/events); the table shown then asks again
// for the rows in view (in place: the scroll stays), unless the user is typing in its boxes.
let pending = null;
function changed(event) {
  const change = JSON.parse(event.data);
  window.dispatchEvent(new CustomEvent("tether-change", { detail: change }));
  const { parts } = parseHash();
  const typing = document.activeElement && document.activeElement.tagName === "INPUT" && document.activeElement.type === "text";
  if ((parts[0] || "runs") !== "runs" || typing || pending) return;
  pending = setTimeout(() => { pending = null; if (!refreshTable()) route(); }, 300);
}

window.addEventListener("hashchange", route);
if (window.EventSource) new EventSource("/api/events").addEventListener("change", changed);
route();
