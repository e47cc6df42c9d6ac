"use strict";
// The race page. Every path, curve and arrow it draws was computed by ravine's optimizer classes at `ravine race`
// time (or by the live server); nothing here re-implements an optimizer. Data: one packed block per surface
// (16-bit, delta-coded, gzip, base64; see ravine/race/pack.py), decoded when the surface is first shown.
const RACE = JSON.parse(document.getElementById("race-data").textContent);
window.RACE = RACE;
const $ = (id) => document.getElementById(id);
const LEVELS = 65535;
const NAMES = Object.keys(RACE.surfaces);
const S = {surface: NAMES[0], shown: null, cells: {}, step: 0, noise: false, view: "2d", arrows: "",
           yaw: -0.7, pitch: 0.8};
const DATA = {};   // surface name -> {index, raw, runs}
let timer = null, hashTimer = null;
window.timing = {firstPaint: null, lastDraw: null, lastSwitch: null};

// ---- decoding ---------------------------------------------------------------------------------------------
async function inflate(b64) {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Uint16Array(await new Response(stream).arrayBuffer());
}
function series(raw, offset, n, low, high, levels) {
  const out = new Float64Array(n);
  let acc = 0;
  for (let i = 0; i < n; i++) {
    acc = (acc + raw[offset + i]) & 0xffff;
    out[i] = low + (acc / levels) * (high - low);
  }
  return out;
}
async function load(name) {
  if (!DATA[name]) {
    const index = RACE.surfaces[name];
    DATA[name] = {index, raw: await inflate(index.blob), runs: new Map(), backgrounds: new Map()};
  }
  return DATA[name];
}
function decodeRun(d, record) {
  const I = d.index, [x0, x1, y0, y1] = I.window, w = x1 - x0, h = y1 - y0;
  const [n, at, ox, oy, og, ...arrows] = record;
  const k = Math.min(n, I.steps), A = (1 << I.arrow_bits) - 1;
  const vectors = (oa, ol) => ({angle: series(d.raw, oa, k, -Math.PI, Math.PI, A),
                                log: series(d.raw, ol, k, I.arrow_range[0], I.arrow_range[1], A)});
  return {n, at, x: series(d.raw, ox, n, x0 - w, x1 + w, LEVELS), y: series(d.raw, oy, n, y0 - h, y1 + h, LEVELS),
          gap: series(d.raw, og, n, I.gap_range[0], I.gap_range[1], LEVELS),
          g: arrows.length >= 2 ? vectors(arrows[0], arrows[1]) : null,
          m: arrows.length >= 4 ? vectors(arrows[2], arrows[3]) : null};
}
function cellOf(c) {
  const s = S.cells[c.name];
  return c.knob ? s.lr * c.knob.values.length + s.b : s.lr;
}
function runOf(d, c) {  // the run the sliders and the noise toggle select
  let key, record;
  if (d.index.live) { key = "live"; record = c.runs[0]; }
  else if (S.noise) { const j = c.knob ? S.cells[c.name].b : 0; key = "noisy" + j; record = c.noisy[j]; }
  else { key = "cell" + cellOf(c); record = c.runs[cellOf(c)]; }
  key = c.name + "/" + key;
  if (!d.runs.has(key)) d.runs.set(key, decodeRun(d, record));
  return d.runs.get(key);
}
function lrOf(d, c) {
  if (d.index.live) return c.settings.lr;
  return c.lr * (S.noise ? 1 : RACE.multipliers[S.cells[c.name].lr]);
}
function knobOf(d, c) {
  if (d.index.live) return c.settings.beta1;
  return c.knob ? c.knob.values[S.cells[c.name].b] : null;
}

// ---- formatting -------------------------------------------------------------------------------------------
const SUP = {"-": "⁻", "0": "⁰", "1": "¹", "2": "²", "3": "³", "4": "⁴", "5": "⁵", "6": "⁶", "7": "⁷", "8": "⁸",
             "9": "⁹"};
const power = (k) => "10" + String(k).split("").map((ch) => SUP[ch]).join("");
const num = (v, digits = 3) => (Math.abs(v) >= 1e-3 && Math.abs(v) < 1e4) || v === 0
  ? String(Number(v.toPrecision(digits))) : v.toExponential(digits - 1);
function niceTicks(lo, hi, count) {
  const raw = (hi - lo) / count, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((f) => f * mag).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step) out.push(Math.abs(v) < 1e-12 ? 0 : v);
  return out;
}

// ---- the 2-D view -----------------------------------------------------------------------------------------
const PAD = {l: 44, r: 10, t: 10, b: 30};
function frame(d, W, H) {  // window coordinates -> canvas pixels
  const [x0, x1, y0, y1] = d.index.window, pw = W - PAD.l - PAD.r, ph = H - PAD.t - PAD.b;
  return {px: (x) => PAD.l + ((x - x0) / (x1 - x0)) * pw, py: (y) => PAD.t + ph - ((y - y0) / (y1 - y0)) * ph,
          x: (px) => x0 + ((px - PAD.l) / pw) * (x1 - x0), y: (py) => y0 + ((PAD.t + ph - py) / ph) * (y1 - y0),
          pw, ph};
}
function shadeImage(d) {
  const I = d.index, n = I.shade_size, grey = new Uint8ClampedArray(n * n * 4), z = series(d.raw, I.shade, n * n, 0, 1, LEVELS);
  for (let row = 0; row < n; row++) {
    for (let col = 0; col < n; col++) {
      const v = z[row * n + col], i = ((n - 1 - row) * n + col) * 4, g = 252 - 70 * v;  // low: light, high: grey
      grey[i] = g; grey[i + 1] = g; grey[i + 2] = g + 4; grey[i + 3] = 255;
    }
  }
  const small = document.createElement("canvas");
  small.width = n; small.height = n;
  small.getContext("2d").putImageData(new ImageData(grey, n, n), 0, 0);
  return small;
}
function background(d, W, H, dpr) {
  const key = W + "x" + H + "@" + dpr;
  if (d.backgrounds.has(key)) return d.backgrounds.get(key);
  const canvas = document.createElement("canvas");
  canvas.width = W * dpr; canvas.height = H * dpr;
  const ctx = canvas.getContext("2d"), f = frame(d, W, H), I = d.index, [x0, x1, y0, y1] = I.window;
  ctx.scale(dpr, dpr);
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(shadeImage(d), PAD.l, PAD.t, f.pw, f.ph);
  ctx.save();
  ctx.beginPath(); ctx.rect(PAD.l, PAD.t, f.pw, f.ph); ctx.clip();
  for (const [level, n, ox, oy] of I.contours) {  // every contour a line, the innermost included
    const xs = series(d.raw, ox, n, x0, x1, LEVELS), ys = series(d.raw, oy, n, y0, y1, LEVELS);
    ctx.strokeStyle = level < 4 ? "rgba(40,40,40,0.8)" : "rgba(70,70,70,0.45)";
    ctx.lineWidth = level < 4 ? 1 : 0.8;
    polyline(ctx, n, (i) => f.px(xs[i]), (i) => f.py(ys[i]));
    ctx.stroke();
  }
  ctx.restore();
  ctx.strokeStyle = "#444"; ctx.lineWidth = 1; ctx.strokeRect(PAD.l, PAD.t, f.pw, f.ph);
  ctx.fillStyle = "#333"; ctx.font = "11px system-ui, sans-serif"; ctx.textAlign = "center"; ctx.textBaseline = "top";
  for (const v of niceTicks(x0, x1, Math.max(3, Math.floor(f.pw / 80)))) ctx.fillText(num(v), f.px(v), PAD.t + f.ph + 4);
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  for (const v of niceTicks(y0, y1, Math.max(3, Math.floor(f.ph / 60)))) ctx.fillText(num(v), PAD.l - 4, f.py(v));
  d.backgrounds.set(key, canvas);
  return canvas;
}
function polyline(ctx, n, x, y) {  // a new path through (x(i), y(i)) for i < n
  ctx.beginPath();
  for (let i = 0; i < n; i++) (i ? ctx.lineTo : ctx.moveTo).call(ctx, x(i), y(i));
}
function star(ctx, x, y, r) {
  ctx.beginPath();
  for (let i = 0; i < 10; i++) {
    const a = -Math.PI / 2 + (i * Math.PI) / 5, rr = i % 2 ? r * 0.45 : r;
    ctx.lineTo(x + rr * Math.cos(a), y + rr * Math.sin(a));
  }
  ctx.closePath(); ctx.fillStyle = "#fff"; ctx.fill(); ctx.strokeStyle = "#000"; ctx.lineWidth = 1.3; ctx.stroke();
}
function arrow(ctx, x, y, angle, length, colour, label, dash) {
  const ex = x + length * Math.cos(angle), ey = y - length * Math.sin(angle);
  ctx.save();
  ctx.strokeStyle = colour; ctx.fillStyle = colour; ctx.lineWidth = 2; ctx.setLineDash(dash);
  ctx.beginPath(); ctx.moveTo(x, y); ctx.lineTo(ex, ey); ctx.stroke(); ctx.setLineDash([]);
  const a = Math.atan2(ey - y, ex - x);
  ctx.beginPath(); ctx.moveTo(ex, ey);
  ctx.lineTo(ex - 9 * Math.cos(a - 0.4), ey - 9 * Math.sin(a - 0.4));
  ctx.lineTo(ex - 9 * Math.cos(a + 0.4), ey - 9 * Math.sin(a + 0.4)); ctx.closePath(); ctx.fill();
  ctx.font = "bold 12px system-ui, sans-serif"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
  ctx.lineWidth = 3; ctx.strokeStyle = "#fff"; ctx.strokeText(label, ex + 12 * Math.cos(a), ey + 12 * Math.sin(a));
  ctx.fillText(label, ex + 12 * Math.cos(a), ey + 12 * Math.sin(a));
  ctx.restore();
}
function visible(d) { return d.index.contestants.filter((c) => S.shown.has(c.name)); }
function draw2d(d, ctx, W, H, dpr) {
  ctx.drawImage(background(d, W, H, dpr), 0, 0, W, H);
  const f = frame(d, W, H);
  ctx.save();
  ctx.beginPath(); ctx.rect(PAD.l, PAD.t, f.pw, f.ph); ctx.clip();
  for (const c of visible(d)) {
    const r = runOf(d, c), last = Math.min(S.step, r.n - 1);
    ctx.strokeStyle = c.colour; ctx.lineWidth = 2; ctx.lineJoin = "round";
    polyline(ctx, last + 1, (i) => f.px(r.x[i]), (i) => f.py(r.y[i]));
    ctx.stroke();
    const hx = f.px(r.x[last]), hy = f.py(r.y[last]);
    if (r.at >= 0 && S.step >= r.n) {  // diverged: a cross where its line ends
      ctx.lineWidth = 2.5; ctx.beginPath();
      ctx.moveTo(hx - 5, hy - 5); ctx.lineTo(hx + 5, hy + 5); ctx.moveTo(hx + 5, hy - 5); ctx.lineTo(hx - 5, hy + 5);
      ctx.stroke();
    } else {
      ctx.beginPath(); ctx.arc(hx, hy, 4, 0, 2 * Math.PI); ctx.fillStyle = c.colour; ctx.fill();
      ctx.lineWidth = 1; ctx.strokeStyle = "#fff"; ctx.stroke();
    }
  }
  for (const [mx, my] of d.index.minima) star(ctx, f.px(mx), f.py(my), 9);
  const [sx, sy] = d.index.start;
  ctx.fillStyle = "#fff"; ctx.strokeStyle = "#000"; ctx.lineWidth = 1.3;
  ctx.fillRect(f.px(sx) - 5, f.py(sy) - 5, 10, 10); ctx.strokeRect(f.px(sx) - 5, f.py(sy) - 5, 10, 10);
  const who = visible(d).find((c) => c.name === S.arrows);
  if (who) {
    const r = runOf(d, who), k = Math.min(S.step, r.n - 1);
    if (r.g && k < r.g.angle.length && k + 1 < r.n) {
      const x = f.px(r.x[k]), y = f.py(r.y[k]), L = Math.min(70, f.pw / 6);
      // directions in pixels: the window's x and y scales differ, so map each vector through the frame
      const dir = (angle) => Math.atan2(Math.sin(angle) * f.ph / (d.index.window[3] - d.index.window[2]),
                                        Math.cos(angle) * f.pw / (d.index.window[1] - d.index.window[0]));
      if (r.g.log[k] > d.index.arrow_range[0]) arrow(ctx, x, y, dir(r.g.angle[k]) + Math.PI, L, "#000", "−∇f", []);
      if (r.m && r.m.log[k] > d.index.arrow_range[0]) arrow(ctx, x, y, dir(r.m.angle[k]) + Math.PI, L, "#555", "−m", [5, 4]);
      const dx = f.px(r.x[k + 1]) - x, dy = y - f.py(r.y[k + 1]);
      if (dx || dy) arrow(ctx, x, y, Math.atan2(dy, dx), L, who.colour, "step", []);
    }
  }
  ctx.restore();
}

// ---- the 3-D view -----------------------------------------------------------------------------------------
const MESH = 40;
function project(d, W, H) {
  const [x0, x1, y0, y1] = d.index.window, span = Math.max(x1 - x0, y1 - y0) / 2;
  const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2, cy_ = Math.cos(S.yaw), sy_ = Math.sin(S.yaw);
  const cp = Math.cos(S.pitch), sp = Math.sin(S.pitch), scale = Math.min(W, H) * 0.36;
  const [zlo, zhi] = d.index.zrange;
  return (x, y, gap) => {
    const X = (x - cx) / span, Y = (y - cy) / span, Z = (Math.min(Math.max(gap, zlo), zhi) - zlo) / (zhi - zlo) * 0.9 - 0.45;
    const X1 = X * cy_ - Y * sy_, Y1 = X * sy_ + Y * cy_;
    return [W / 2 + scale * X1, H / 2 - scale * (Y1 * sp + Z * cp), Y1 * cp - Z * sp];
  };
}
function mesh(d, W, H, dpr) {
  const key = "3d" + W + "x" + H + "@" + dpr + ":" + S.yaw.toFixed(3) + "," + S.pitch.toFixed(3);
  if (d.backgrounds.has(key)) return d.backgrounds.get(key);
  for (const k of [...d.backgrounds.keys()]) if (k.startsWith("3d")) d.backgrounds.delete(k);
  const I = d.index, n = I.shade_size, z = series(d.raw, I.shade, n * n, I.zrange[0], I.zrange[1], LEVELS);
  const [x0, x1, y0, y1] = I.window, P = project(d, W, H), quads = [];
  const at = (i, j) => {  // mesh node (i along x, j along y) -> world point
    const col = Math.round((i / MESH) * (n - 1)), row = Math.round((j / MESH) * (n - 1));
    return [x0 + (i / MESH) * (x1 - x0), y0 + (j / MESH) * (y1 - y0), z[row * n + col]];
  };
  for (let i = 0; i < MESH; i++) {
    for (let j = 0; j < MESH; j++) {
      const corners = [at(i, j), at(i + 1, j), at(i + 1, j + 1), at(i, j + 1)];
      const pts = corners.map(([x, y, g]) => P(x, y, g));
      const height = (corners.reduce((s, c) => s + c[2], 0) / 4 - I.zrange[0]) / (I.zrange[1] - I.zrange[0]);
      quads.push([pts.reduce((s, p) => s + p[2], 0) / 4, pts, height]);
    }
  }
  quads.sort((a, b) => b[0] - a[0]);  // far to near
  const canvas = document.createElement("canvas");
  canvas.width = W * dpr; canvas.height = H * dpr;
  const ctx = canvas.getContext("2d");
  ctx.scale(dpr, dpr); ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
  for (const [, pts, height] of quads) {
    const g = Math.round(235 - 120 * height);
    ctx.fillStyle = `rgb(${g},${g},${g + 6})`; ctx.strokeStyle = "rgba(60,60,60,0.35)"; ctx.lineWidth = 0.5;
    polyline(ctx, pts.length, (i) => pts[i][0], (i) => pts[i][1]); ctx.closePath();
    ctx.fill(); ctx.stroke();
  }
  d.backgrounds.set(key, canvas);
  return canvas;
}
function draw3d(d, ctx, W, H, dpr) {
  ctx.drawImage(mesh(d, W, H, dpr), 0, 0, W, H);
  const P = project(d, W, H);
  for (const c of visible(d)) {
    const r = runOf(d, c), last = Math.min(S.step, r.n - 1);
    const [x0, x1, y0, y1] = d.index.window;
    ctx.strokeStyle = c.colour; ctx.lineWidth = 2.5; ctx.beginPath();
    let pen = false;  // off the mesh (outside the window) the line breaks
    for (let i = 0; i <= last; i++) {
      if (r.x[i] < x0 || r.x[i] > x1 || r.y[i] < y0 || r.y[i] > y1) { pen = false; continue; }
      const [px, py] = P(r.x[i], r.y[i], r.gap[i]);
      (pen ? ctx.lineTo : ctx.moveTo).call(ctx, px, py);
      pen = true;
    }
    ctx.stroke();
    const [hx, hy] = P(r.x[last], r.y[last], r.gap[last]);
    ctx.beginPath(); ctx.arc(hx, hy, 4, 0, 2 * Math.PI); ctx.fillStyle = c.colour; ctx.fill();
  }
  for (const [mx, my] of d.index.minima) { const [px, py] = P(mx, my, -99); star(ctx, px, py, 8); }
  ctx.fillStyle = "#333"; ctx.font = "12px system-ui, sans-serif"; ctx.textAlign = "left"; ctx.textBaseline = "top";
  ctx.fillText("height: log10(f − f*) · drag to turn", 8, 8);
}

// ---- the loss curves --------------------------------------------------------------------------------------
function drawCurves(d) {
  const canvas = $("curves"), {ctx, W, H} = sized(canvas);
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
  const runs = visible(d).map((c) => [c, runOf(d, c)]);
  let lo = Infinity, hi = -Infinity;
  for (const [, r] of runs) for (const v of r.gap) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (!isFinite(lo)) { lo = -12; hi = 1; }
  lo = Math.floor(lo); hi = Math.max(Math.ceil(hi), lo + 1);
  const p = {l: 46, r: 18, t: 22, b: 28}, pw = W - p.l - p.r, ph = H - p.t - p.b, steps = d.index.steps;
  const X = (s) => p.l + (s / steps) * pw, Y = (v) => p.t + ph - ((v - lo) / (hi - lo)) * ph;
  ctx.fillStyle = "#222"; ctx.font = "12px system-ui, sans-serif"; ctx.textAlign = "left"; ctx.textBaseline = "top";
  ctx.fillText("f − f* (log scale) by step", p.l, 4);
  ctx.font = "11px system-ui, sans-serif"; ctx.textAlign = "right"; ctx.textBaseline = "middle";
  const every = Math.max(1, Math.ceil((hi - lo) / Math.max(2, Math.floor(ph / 22))));
  for (let k = Math.ceil(lo / every) * every; k <= hi; k += every) {
    ctx.strokeStyle = "#eee"; ctx.beginPath(); ctx.moveTo(p.l, Y(k)); ctx.lineTo(p.l + pw, Y(k)); ctx.stroke();
    ctx.fillText(power(k), p.l - 4, Y(k));
  }
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  for (const s of niceTicks(0, steps, Math.max(2, Math.floor(pw / 70)))) ctx.fillText(String(s), X(s), p.t + ph + 4);
  ctx.strokeStyle = "#999"; ctx.strokeRect(p.l, p.t, pw, ph);
  for (const [c, r] of runs) {
    const last = Math.min(S.step, r.n - 1);
    ctx.strokeStyle = c.colour; ctx.lineWidth = 1.6;
    polyline(ctx, last + 1, X, (i) => Y(r.gap[i]));
    ctx.stroke();
  }
  ctx.strokeStyle = "rgba(0,0,0,0.35)"; ctx.beginPath(); ctx.moveTo(X(S.step), p.t); ctx.lineTo(X(S.step), p.t + ph); ctx.stroke();
}

// ---- the panel of optimizers: visibility, sliders, status -------------------------------------------------
function buildRows(d) {
  const rows = $("rows");
  rows.textContent = "";
  for (const c of d.index.contestants) {
    if (!S.cells[c.name]) S.cells[c.name] = {lr: RACE.multipliers.indexOf(1), b: c.knob ? c.knob.values.indexOf(c.knob.default) : 0};
    const row = document.createElement("div");
    row.className = "row"; row.dataset.name = c.name;
    const live = RACE.live;
    const knob = c.knob;
    row.innerHTML = `<label class="who"><input type="checkbox" class="on"><span class="swatch" style="background:${c.colour}"></span>
      <span class="name"></span></label><span class="status"></span><div class="knobs">
      <label>lr <input type="range" class="lr" min="${live ? -2 : 0}" max="${live ? 2 : RACE.multipliers.length - 1}"
        step="${live ? 0.1 : 1}"><output class="lr-out"></output></label>
      ${knob ? `<label><span class="knob-label"></span> <input type="range" class="b"><output class="b-out"></output></label>` : ""}
      ${live && knob && knob.beta2 !== null ? `<label>β₂ <input type="range" class="b2" min="1" max="4" step="0.1"><output class="b2-out"></output></label>` : ""}
      ${live ? `<label>noise σ <input type="range" class="noise" min="0" max="3" step="0.1" value="0"><output class="noise-out"></output></label>` : ""}
      </div>`;
    row.querySelector(".name").textContent = c.name;
    row.querySelector(".on").checked = S.shown.has(c.name);
    row.querySelector(".on").addEventListener("change", (e) => {
      if (e.target.checked) S.shown.add(c.name); else S.shown.delete(c.name);
      $("show").value = "custom"; refresh();
    });
    const lr = row.querySelector(".lr"), labels = [];
    const on = (input, label) => { labels.push(label); input.addEventListener("input", label);
                                   input.addEventListener("change", () => rerun()); };
    const given = c.settings || {};  // a live race's own settings, which the sliders keep showing
    if (live) {
      lr.value = String(Math.log10(given.lr_scale || 1));
      on(lr, () => { row.querySelector(".lr-out").textContent = num(c.lr * 10 ** Number(lr.value), 2); });
    } else {
      lr.value = String(S.cells[c.name].lr);
      lr.addEventListener("input", () => { S.cells[c.name].lr = Number(lr.value); refresh(); });
    }
    const b = row.querySelector(".b");
    if (b) {
      row.querySelector(".knob-label").textContent = knob.label;
      if (live) {
        b.min = String(knob.values[0]); b.max = "0.99"; b.step = "0.01";
        b.value = String(given.beta1 ?? knob.default);
        on(b, () => { row.querySelector(".b-out").textContent = b.value; });
      } else {
        b.min = "0"; b.max = String(c.knob.values.length - 1); b.step = "1"; b.value = String(S.cells[c.name].b);
        b.addEventListener("input", () => { S.cells[c.name].b = Number(b.value); refresh(); });
      }
    }
    const b2 = row.querySelector(".b2");
    if (b2) {
      b2.value = String(-Math.log10(1 - (given.beta2 ?? knob.beta2)));
      on(b2, () => { row.querySelector(".b2-out").textContent = num(1 - 10 ** -Number(b2.value), 4); });
    }
    const noise = row.querySelector(".noise");
    if (noise) {
      noise.max = String(Number((3 * d.index.sigma).toPrecision(2)));
      noise.step = String(Number(noise.max) / 30);
      noise.value = String(given.noise ?? RACE.noise ?? 0);
      on(noise, () => { row.querySelector(".noise-out").textContent = num(Number(noise.value), 2); });
    }
    for (const label of labels) label();
    rows.appendChild(row);
  }
}
function updateRows(d) {
  for (const c of d.index.contestants) {
    const row = document.querySelector(`.row[data-name="${CSS.escape(c.name)}"]`);
    if (!row) continue;
    const on = S.shown.has(c.name), r = runOf(d, c);
    row.classList.toggle("off", !on);
    row.querySelector(".on").checked = on;
    for (const input of row.querySelectorAll(".knobs input")) input.disabled = !on;
    if (!RACE.live) {
      row.querySelector(".lr").disabled = !on || S.noise;  // the noisy race runs at each optimizer's own lr
      row.querySelector(".lr-out").textContent = num(lrOf(d, c), 2);
      if (c.knob) row.querySelector(".b-out").textContent = String(knobOf(d, c));
    }
    const status = row.querySelector(".status");
    status.textContent = r.at >= 0 ? `diverged at step ${r.at}` : `f − f* ${num(10 ** r.gap[r.n - 1] , 2)} at the end`;
    status.classList.toggle("bad", r.at >= 0);
  }
  const arrows = $("arrows");
  const options = ["", ...visible(d).map((c) => c.name)];
  if (arrows.options.length !== options.length || [...arrows.options].some((o, i) => o.value !== options[i])) {
    arrows.textContent = "";
    for (const name of options) arrows.add(new Option(name || "none", name));
  }
  if (!options.includes(S.arrows)) S.arrows = "";
  arrows.value = S.arrows;
}
function readout(d) {
  const who = visible(d).find((c) => c.name === S.arrows), out = $("readout");
  if (!who) { out.textContent = "Pick an optimizer under “arrows” to see its gradient, momentum and step."; return; }
  const r = runOf(d, who), k = Math.min(S.step, r.n - 1);
  if (!r.g || k >= r.g.angle.length || k + 1 >= r.n) { out.textContent = `${who.name}: no step from here.`; return; }
  const deg = (a) => Math.round((a * 180) / Math.PI) + "°";
  const size = (v) => (v.log[k] <= d.index.arrow_range[0] ? "0" : num(10 ** v.log[k], 2));
  const parts = [`gradient |∇f| ${size(r.g)} toward ${deg(r.g.angle[k])}`];
  if (r.m) parts.push(`momentum / first moment |m| ${size(r.m)} toward ${deg(r.m.angle[k])}`);
  parts.push(`step taken (${num(r.x[k + 1] - r.x[k], 3)}, ${num(r.y[k + 1] - r.y[k], 3)})`);
  out.textContent = `${who.name}, step ${k} → ${k + 1}: ` + parts.join(" · ");
}

// ---- drawing, state and the URL ---------------------------------------------------------------------------
function sized(canvas) {
  const dpr = window.devicePixelRatio || 1, W = Math.max(200, Math.round(canvas.clientWidth));
  const H = Math.max(120, Math.round(canvas.clientHeight));
  if (canvas.width !== W * dpr || canvas.height !== H * dpr) { canvas.width = W * dpr; canvas.height = H * dpr; }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return {ctx, W, H, dpr};
}
function draw() {
  const d = DATA[S.surface];
  if (!d) return;
  const t0 = performance.now();
  const plot = $("plot"), [x0, x1, y0, y1] = d.index.window;
  const aspect = S.view === "3d" ? 0.8 : Math.min(1.1, Math.max(0.55, (y1 - y0) / (x1 - x0)));
  plot.style.height = Math.round(plot.clientWidth * aspect) + "px";
  const {ctx, W, H, dpr} = sized(plot);
  (S.view === "3d" ? draw3d : draw2d)(d, ctx, W, H, dpr);
  drawCurves(d);
  readout(d);
  $("slider").value = String(S.step);
  $("counter").textContent = `step ${S.step} / ${d.index.steps}`;
  window.timing.lastDraw = performance.now() - t0;
  if (window.timing.firstPaint === null) window.timing.firstPaint = performance.now();
  if (!timer) saveHash();
}
function refresh() { const d = DATA[S.surface]; if (d) updateRows(d); draw(); }
function saveHash() {
  clearTimeout(hashTimer);
  hashTimer = setTimeout(() => {
    const cells = Object.entries(S.cells).map(([n, c]) => `${n}:${c.lr}.${c.b}`).join(",");
    const p = new URLSearchParams({s: S.surface, show: $("show").value, on: [...S.shown].join(","), cells,
                                   t: String(S.step), noise: S.noise ? "1" : "0", view: S.view, arrows: S.arrows});
    history.replaceState(null, "", "#" + p.toString());
  }, 80);
}
function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  if (p.has("s") && NAMES.includes(p.get("s"))) S.surface = p.get("s");
  if (p.has("on")) S.shown = new Set(p.get("on").split(",").filter(Boolean));
  for (const item of (p.get("cells") || "").split(",").filter(Boolean)) {
    const m = /^(.*):(\d+)\.(\d+)$/.exec(item);
    if (m && m[2] < RACE.multipliers.length && m[3] < 8) S.cells[m[1]] = {lr: Number(m[2]), b: Number(m[3])};
  }
  if (p.has("t")) S.step = Math.max(0, Math.min(RACE.steps, Number(p.get("t")) || 0));
  S.noise = p.get("noise") === "1" && !RACE.live;
  S.view = p.get("view") === "3d" ? "3d" : "2d";
  S.arrows = p.get("arrows") || "";
  return p;
}
function pick(choice, d) {
  const names = d.index.contestants.map((c) => c.name);
  if (choice === "custom") return;
  const chosen = choice === "all" ? names : choice === "curated" ? d.index.curated : RACE.families[choice] || names;
  S.shown = new Set(names.filter((n) => chosen.includes(n)));
}
async function choose(name, keepShown) {
  const t0 = performance.now();
  pause();
  S.surface = name;
  $("surface").value = name;
  const d = await load(name);
  for (const c of d.index.contestants) {  // a knob value index must exist for this contestant
    const cell = S.cells[c.name];
    if (cell && c.knob && cell.b >= c.knob.values.length) cell.b = c.knob.values.indexOf(c.knob.default);
  }
  if (!keepShown) pick($("show").value, d);
  $("note").textContent = `${d.index.title}: ${d.index.formula} — ${d.index.note}`;
  if ($("noise-label")) $("noise-label").textContent = `gradient noise σ = ${num(d.index.sigma, 2)}`;
  buildRows(d); updateRows(d); draw();
  window.timing.lastSwitch = performance.now() - t0;
}
function pause() { if (timer) { clearInterval(timer); timer = null; } $("play").textContent = "▶ play"; saveHash(); }
function play() {
  if (timer) { pause(); return; }
  if (S.step >= RACE.steps) S.step = 0;
  $("play").textContent = "‖ pause";  // U+2016: in Debian's default fonts (U+23F8 is not)
  timer = setInterval(() => {
    if (S.step >= RACE.steps) { pause(); return; }
    S.step = Math.min(RACE.steps, S.step + Number($("speed").value));
    draw();
  }, 40);
}
function show(step) { S.step = Math.max(0, Math.min(RACE.steps, step)); draw(); }
window.show = show; window.pause = pause; window.S = S; window.DATA = DATA; window.runOf = runOf;

// ---- hover (2-D) and turning (3-D) ------------------------------------------------------------------------
function nearest(d, mx, my) {
  const f = frame(d, $("plot").clientWidth, $("plot").clientHeight);
  let best = null, bestD = 12 * 12;
  for (const c of visible(d)) {
    const r = runOf(d, c), last = Math.min(S.step, r.n - 1);
    for (let i = 0; i <= last; i++) {
      const dx = f.px(r.x[i]) - mx, dy = f.py(r.y[i]) - my, dd = dx * dx + dy * dy;
      if (dd <= bestD) { bestD = dd; best = {c, r, i}; }
    }
  }
  return best;
}
function hoverAt(mx, my) {
  const d = DATA[S.surface], tip = $("tip");
  const hit = d && S.view === "2d" ? nearest(d, mx, my) : null;
  if (!hit) { tip.hidden = true; return null; }
  const {c, r, i} = hit, knob = knobOf(d, c);
  tip.textContent = `${c.name} · lr ${num(lrOf(d, c), 2)}${knob === null || knob === undefined ? "" : " · " + c.knob.label + " " + knob}`
    + ` · step ${i}\n(${num(r.x[i], 4)}, ${num(r.y[i], 4)}) · f − f* ${num(10 ** r.gap[i], 3)}`;
  tip.hidden = false;
  const box = $("plot").getBoundingClientRect(), wrap = $("plot-wrap").getBoundingClientRect();
  tip.style.left = Math.min(mx + box.left - wrap.left + 12, wrap.width - tip.offsetWidth - 4) + "px";
  tip.style.top = (my + box.top - wrap.top + 12) + "px";
  return {name: c.name, step: i, x: r.x[i], y: r.y[i], gap: r.gap[i], text: tip.textContent};
}
window.hoverAt = hoverAt;
let drag = null;
$("plot").addEventListener("pointerdown", (e) => { if (S.view === "3d") { drag = [e.clientX, e.clientY]; $("plot").setPointerCapture(e.pointerId); } });
$("plot").addEventListener("pointerup", () => { drag = null; saveHash(); });
$("plot").addEventListener("pointermove", (e) => {
  if (drag && S.view === "3d") {
    S.yaw += (e.clientX - drag[0]) * 0.01;
    S.pitch = Math.min(1.5, Math.max(0.1, S.pitch + (e.clientY - drag[1]) * 0.01));
    drag = [e.clientX, e.clientY]; draw(); return;
  }
  const box = $("plot").getBoundingClientRect();
  hoverAt(e.clientX - box.left, e.clientY - box.top);
});
$("plot").addEventListener("pointerleave", () => { $("tip").hidden = true; });

// ---- controls ---------------------------------------------------------------------------------------------
$("play").addEventListener("click", play);
$("slider").max = String(RACE.steps);
$("slider").addEventListener("input", (e) => { pause(); show(Number(e.target.value)); });
$("surface").addEventListener("change", () => choose($("surface").value, false));
$("show").addEventListener("change", () => { pick($("show").value, DATA[S.surface]); refresh(); });
if ($("noise")) $("noise").addEventListener("change", (e) => { S.noise = e.target.checked; refresh(); });
$("view").addEventListener("change", (e) => { S.view = e.target.value; $("tip").hidden = true; draw(); });
$("arrows").addEventListener("change", (e) => { S.arrows = e.target.value; draw(); });
new ResizeObserver(() => draw()).observe($("layout"));
(async () => {
  const p = readHash();
  const d = await load(S.surface);
  if (p.has("show")) $("show").value = p.get("show");
  if (!S.shown) pick($("show").value, d);
  if ($("noise")) $("noise").checked = S.noise;
  $("view").value = S.view;
  await choose(S.surface, true);
})();
