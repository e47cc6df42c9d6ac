// Live mode (`ravine race --serve`): the server recomputes with the real optimizer classes. A click on the
// contour view starts every optimizer there; releasing a row's slider races again from the same start; a typed
// surface races on its own window. Each answer is a surface packed exactly as the offline page's.
function liveRuns(d) {
  return d.index.contestants.map((c) => {
    const row = document.querySelector(`.row[data-name="${CSS.escape(c.name)}"]`);
    const run = {name: c.name, lr_scale: Number((10 ** Number(row.querySelector(".lr").value)).toPrecision(6))};
    const b = row.querySelector(".b"), b2 = row.querySelector(".b2"), noise = row.querySelector(".noise");
    if (b) run.beta1 = Number(b.value);
    if (b2) run.beta2 = Number((1 - 10 ** -Number(b2.value)).toPrecision(8));
    if (noise) run.noise = Number(noise.value);
    return run;
  });
}
async function ask(query) {
  $("status").textContent = "computing…";
  const response = await fetch("/api/race?" + query);
  const body = await response.json();
  if (!response.ok) { $("status").textContent = "error: " + body.error; return null; }
  return body;
}
async function install(key, body) {
  RACE.surfaces[key] = body;
  delete DATA[key];
  const label = body.typed ? `${body.title}: ${body.formula}` : body.title;
  if (![...$("surface").options].some((o) => o.value === key)) $("surface").add(new Option(label, key));
  else [...$("surface").options].find((o) => o.value === key).textContent = label;
  const keep = new Set(S.shown);
  await choose(key, true);
  S.shown = keep;
  const [x, y] = body.start;
  $("status").textContent = `started at (${num(x, 4)}, ${num(y, 4)})`;
  S.step = 0; refresh(); play();
}
async function rerun(start) {
  const key = S.surface, d = DATA[key], index = RACE.surfaces[key];
  const query = new URLSearchParams({surface: index.typed ? "typed" : key, steps: String(RACE.steps),
                                     start: (start || index.start).join(","), runs: JSON.stringify(liveRuns(d))});
  if (index.typed) { query.set("expr", index.formula); query.set("window", index.window.join(",")); }
  const body = await ask(query);
  if (body) await install(key, body);
}
window.rerun = rerun;
$("plot").addEventListener("click", (e) => {
  const d = DATA[S.surface];
  if (!d || S.view !== "2d") return;
  const box = $("plot").getBoundingClientRect(), f = frame(d, box.width, box.height);
  const x = f.x(e.clientX - box.left), y = f.y(e.clientY - box.top), [x0, x1, y0, y1] = d.index.window;
  if (x >= x0 && x <= x1 && y >= y0 && y <= y1) rerun([x, y]);
});
$("typed").addEventListener("submit", async (e) => {
  e.preventDefault();
  const windowText = ["wx0", "wx1", "wy0", "wy1"].map((id) => $(id).value.trim()).join(",");
  const d = DATA[S.surface];
  const query = new URLSearchParams({surface: "typed", expr: $("expr").value, window: windowText,
                                     steps: String(RACE.steps), runs: JSON.stringify(liveRuns(d))});
  const body = await ask(query);
  if (body) await install("typed", body);
});
