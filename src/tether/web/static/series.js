// What the compare page does to series before they are drawn, in the browser: smoothing, x by
// wall-clock time, and a group's runs reduced to mean, min and max on one x.
const GRID = 1000; // x positions of a group's curves at most

// Exponential moving average with weight `w` (0: none), bias-corrected so the first points are
// not pulled towards zero.
export function ema(ys, w) {
  if (!w) return ys;
  const out = new Array(ys.length);
  let acc = 0;
  let n = 0;
  for (let i = 0; i < ys.length; i++) {
    if (ys[i] === null || !Number.isFinite(ys[i])) { out[i] = null; continue; }
    acc = acc * w + (1 - w) * ys[i];
    n++;
    out[i] = acc / (1 - w ** n);
  }
  return out;
}

// x as seconds since the run's first point (the rows' `t`); null when the run logged no times.
export function byTime(s) {
  if (!s.t) return null;
  const x = [];
  const y = [];
  let t0 = null;
  for (let i = 0; i < s.t.length; i++) {
    if (s.t[i] === null) continue;
    if (t0 === null) t0 = s.t[i];
    x.push(s.t[i] - t0);
    y.push(s.y[i]);
  }
  return { x, y };
}

// The members' curves interpolated on one x (the union of their x, at most GRID positions),
// and at each x the mean, min and max of the members that reach it.
export function aggregate(members) {
  const all = [...new Set(members.flatMap((m) => m.x))].sort((a, b) => a - b);
  const step = Math.max(1, all.length / GRID);
  const grid = [];
  for (let i = 0; i < all.length; i += step) grid.push(all[Math.floor(i)]);
  if (all.length && grid[grid.length - 1] !== all[all.length - 1]) grid.push(all[all.length - 1]);
  const mean = [];
  const min = [];
  const max = [];
  const at = members.map(() => 0);
  for (const x of grid) {
    let sum = 0;
    let n = 0;
    let lo = Infinity;
    let hi = -Infinity;
    members.forEach((m, k) => {
      const v = valueAt(m, x, at, k);
      if (v === null) return;
      sum += v; n++;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    });
    mean.push(n ? sum / n : null);
    min.push(n ? lo : null);
    max.push(n ? hi : null);
  }
  return { x: grid, mean, min, max };
}

// Linear interpolation of member `m` at `x` (grid x only grows: `at[k]` walks forward).
function valueAt(m, x, at, k) {
  const xs = m.x;
  if (!xs.length || x < xs[0] || x > xs[xs.length - 1]) return null;
  let i = at[k];
  while (i < xs.length - 1 && xs[i + 1] <= x) i++;
  at[k] = i;
  const y0 = m.y[i];
  if (xs[i] === x || i === xs.length - 1) return y0;
  const y1 = m.y[i + 1];
  if (y0 === null || y1 === null) return y0 ?? y1;
  return y0 + ((y1 - y0) * (x - xs[i])) / (xs[i + 1] - xs[i]);
}
