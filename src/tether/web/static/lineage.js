// A run's lineage as a small SVG: a box per run (this one on the right, the runs it used as
// stages to its left, theirs further left), an arrow per stage named by the stage.
const NS = "http://www.w3.org/2000/svg";
const W = 170; // box width
const H = 34; // box height
const GAP_X = 90;
const GAP_Y = 14;

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// node: {id, name, status, stage, missing, children} as GET /api/runs/RUN/lineage answers.
export function lineageGraph(root) {
  const placed = [];
  let row = 0;
  let depth = 0;
  // Leaves take the next row; a parent sits at the middle of its children.
  const place = (node, level) => {
    depth = Math.max(depth, level);
    let y;
    if (!node.children.length) y = row++;
    else {
      const ys = node.children.map((c) => place(c, level + 1));
      y = (ys[0] + ys[ys.length - 1]) / 2;
    }
    placed.push({ node, level, y });
    return y;
  };
  place(root, 0);
  const width = (depth + 1) * W + depth * GAP_X + 20;
  const height = Math.max(1, row) * (H + GAP_Y) + 10;
  const at = new Map();
  const graph = svg("svg", { class: "lineage", id: "lineage-graph", width, height, viewBox: `0 0 ${width} ${height}` });
  for (const p of placed) at.set(p.node, { x: 10 + (depth - p.level) * (W + GAP_X), y: 5 + p.y * (H + GAP_Y) });
  const defs = svg("defs");
  graph.append(defs);
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto" });
  marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#6b7480" }));
  defs.append(marker);
  for (const p of placed) {
    const to = at.get(p.node);
    for (const c of p.node.children) {
      const from = at.get(c);
      const x1 = from.x + W;
      const y1 = from.y + H / 2;
      const x2 = to.x;
      const y2 = to.y + H / 2;
      graph.append(svg("path", { class: "edge", d: `M${x1},${y1} C${x1 + GAP_X / 2},${y1} ${x2 - GAP_X / 2},${y2} ${x2},${y2}`, fill: "none", stroke: "#6b7480", "marker-end": "url(#arrow)" }));
      graph.append(svg("text", { x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 4, "text-anchor": "middle", fill: "#6b7480" }, c.stage || ""));
    }
  }
  for (const p of placed) {
    const { x, y } = at.get(p.node);
    const n = p.node;
    const link = svg("a", { href: n.missing ? "" : `#/run/${n.id}`, class: "node", "data-id": n.id });
    link.append(svg("rect", { x, y, width: W, height: H, rx: 4, fill: n.missing ? "#fef3f2" : p.level === 0 ? "#eef2ff" : "#f6f8fa", stroke: "#c4cbd3" }));
    link.append(svg("text", { x: x + 6, y: y + 14 }, (n.missing ? "missing" : n.name || "").slice(0, 22)));
    link.append(svg("text", { x: x + 6, y: y + 28, fill: "#6b7480" }, `${n.id.slice(0, 13)} ${n.status || ""}`));
    graph.append(link);
  }
  return graph;
}
