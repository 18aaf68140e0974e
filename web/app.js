// The page: opens WebGPU through the wasm build of ddpm (pkg/, written by `cargo xtask web`),
// trains the toy live (loss curve, fresh samples, steps/s) and samples uploaded image
// checkpoints frame by frame. With ?test it runs the browser test suite first and reports each
// result to the test server (`cargo xtask web-test`) by fetching /__report.
import init, * as ddpm from "./pkg/ddpm_web.js";

const $ = (id) => document.getElementById(id);
const TEST = new URLSearchParams(location.search).has("test");
const STEPS_PER_CALL = 25;
// A scatter is a whole reverse chain (T = 100 model calls): redraw it every this many steps, so
// sampling stays a small share of the time on a software adapter.
const SAMPLE_EVERY_STEPS = 100;
const N_SCATTER = 500;

function showError(message) {
  const box = $("error");
  box.hidden = false;
  box.textContent = message;
}

async function report(fields) {
  if (!TEST) return;
  try {
    await fetch("/__report?" + new URLSearchParams(fields));
  } catch (e) {
    console.error("report failed", e);
  }
}

const NO_WEBGPU =
  "This browser has no WebGPU (navigator.gpu is missing), so ddpm cannot run here.\n" +
  "• Chrome or Edge 113+: WebGPU is on by default on Windows, macOS and ChromeOS; on Linux start " +
  "the browser with --enable-unsafe-webgpu (and --enable-features=Vulkan), or enable " +
  "chrome://flags/#enable-unsafe-webgpu.\n" +
  "• Safari 26+ has WebGPU; Firefox has it on Windows from version 141 (elsewhere: " +
  "dom.webgpu.enabled in about:config, Nightly).\n" +
  "• The page must come from https:// or http://127.0.0.1 (a secure context).";

// ---- the toy ---------------------------------------------------------------------------------

const toy = {
  session: null,
  running: false,
  losses: [],
  trainMs: 0,
  trainSteps: 0,
  lastSample: 0, // the step of the last scatter
  data: [],
  samples: null,
  busy: false,
};

async function createSession() {
  const data = $("data").value;
  const classCond = $("class-cond").checked;
  const batch = Math.max(8, Math.min(4096, parseInt($("batch").value) || 128));
  const session = await ddpm.ToySession.create(data, classCond, batch, 0);
  toy.session = session;
  toy.losses = [];
  toy.trainMs = 0;
  toy.trainSteps = 0;
  toy.samples = null;
  toy.lastSample = 0;
  toy.data = Array.from(session.data_points(2000));
  $("adapter").textContent = "Adapter: " + session.adapter();
  $("params").textContent = `${session.n_params()} parameters`;
  const classes = session.classes();
  const pick = $("class-pick");
  pick.innerHTML = "";
  pick.append(new Option("all (unconditional)", "-1"));
  classes.forEach((name, i) => pick.append(new Option(`${i}: ${name}`, String(i))));
  $("class-pick-label").hidden = classes.length === 0;
  $("guidance-label").hidden = classes.length === 0;
  drawLoss();
  drawScatter();
}

function updateStats() {
  const s = toy.session ? toy.session.step() : 0;
  $("step").textContent = `step ${s}`;
  if (toy.trainMs > 0) {
    $("speed").textContent = `${(toy.trainSteps / (toy.trainMs / 1000)).toFixed(1)} steps/s`;
  }
  if (toy.losses.length) {
    const tail = toy.losses.slice(-50);
    $("loss").textContent = `loss ${(tail.reduce((a, b) => a + b, 0) / tail.length).toFixed(4)}`;
  }
}

async function sampleToy() {
  const cls = parseInt($("class-pick").value ?? "-1");
  const guidance = parseFloat($("guidance").value) || 1;
  const frames = await toy.session.sample(N_SCATTER, isNaN(cls) ? -1 : cls, guidance, 1);
  toy.samples = frames[frames.length - 1];
  drawScatter();
}

async function trainLoop() {
  while (toy.running) {
    const t0 = performance.now();
    const losses = await toy.session.train(STEPS_PER_CALL);
    toy.trainMs += performance.now() - t0;
    toy.trainSteps += losses.length;
    for (const l of losses) toy.losses.push(l);
    updateStats();
    drawLoss();
    if (toy.session.step() - toy.lastSample >= SAMPLE_EVERY_STEPS) {
      toy.lastSample = toy.session.step();
      await sampleToy();
    }
    // Give the page a frame to paint between calls.
    await new Promise((r) => setTimeout(r, 0));
  }
}

async function start() {
  if (toy.running) return;
  try {
    if (!toy.session || toy.configChanged) {
      await createSession();
      toy.configChanged = false;
    }
    toy.running = true;
    $("start").disabled = true;
    $("pause").disabled = false;
    await trainLoop();
  } catch (e) {
    toy.running = false;
    showError("Training stopped: " + (e?.message ?? e) + "\n" + ddpm.last_error());
  } finally {
    $("start").disabled = false;
    $("pause").disabled = true;
  }
}

function pause() {
  toy.running = false;
}

async function pauseAndSample() {
  const wasRunning = toy.running;
  pause();
  // The scatter of the final weights, once the loop has let go of the run.
  if (wasRunning && toy.session) setTimeout(() => sampleToy().catch((e) => showError(String(e))), 100);
}

// ---- drawing ---------------------------------------------------------------------------------

function drawLoss() {
  const c = $("loss-plot");
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const pad = { l: 48, r: 10, t: 10, b: 28 };
  const w = c.width - pad.l - pad.r, h = c.height - pad.t - pad.b;
  g.strokeStyle = "#999";
  g.strokeRect(pad.l, pad.t, w, h);
  const ls = toy.losses.filter((v) => v > 0 && isFinite(v));
  if (ls.length < 2) return;
  let lo = Math.log10(Math.min(...ls)), hi = Math.log10(Math.max(...ls));
  if (hi - lo < 0.1) { lo -= 0.05; hi += 0.05; }
  const x = (i) => pad.l + (i / (ls.length - 1)) * w;
  const y = (v) => pad.t + (1 - (Math.log10(v) - lo) / (hi - lo)) * h;
  g.fillStyle = "#333";
  g.font = "11px sans-serif";
  for (let k = 0; k <= 4; k++) {
    const v = Math.pow(10, lo + (k / 4) * (hi - lo));
    g.fillText(v.toPrecision(2), 4, y(v) + 4);
  }
  g.fillText(`step ${ls.length}`, pad.l + w - 60, c.height - 8);
  g.fillText("1", pad.l, c.height - 8);
  g.strokeStyle = "rgba(70,110,200,0.35)";
  g.beginPath();
  ls.forEach((v, i) => (i ? g.lineTo(x(i), y(v)) : g.moveTo(x(i), y(v))));
  g.stroke();
  // Running mean over 50 steps: the trend the noisy per-step losses hide.
  g.strokeStyle = "#c33";
  g.lineWidth = 2;
  g.beginPath();
  let sum = 0;
  ls.forEach((v, i) => {
    sum += v;
    if (i >= 50) sum -= ls[i - 50];
    const m = sum / Math.min(i + 1, 50);
    i ? g.lineTo(x(i), y(m)) : g.moveTo(x(i), y(m));
  });
  g.stroke();
  g.lineWidth = 1;
}

function drawScatter() {
  const c = $("scatter");
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const all = toy.data.concat(toy.samples ? Array.from(toy.samples) : []);
  if (!all.length) return;
  let m = 0;
  for (const v of toy.data) m = Math.max(m, Math.abs(v));
  m = (m || 2) * 1.15;
  const px = (v) => ((v + m) / (2 * m)) * c.width;
  const py = (v) => ((m - v) / (2 * m)) * c.height;
  g.fillStyle = "rgba(0,0,0,0.15)";
  for (let i = 0; i + 1 < toy.data.length; i += 2) g.fillRect(px(toy.data[i]) - 1, py(toy.data[i + 1]) - 1, 2, 2);
  if (toy.samples) {
    g.fillStyle = "rgba(30,90,220,0.7)";
    const s = toy.samples;
    for (let i = 0; i + 1 < s.length; i += 2) {
      if (Math.abs(s[i]) > m || Math.abs(s[i + 1]) > m) continue;
      g.fillRect(px(s[i]) - 1.5, py(s[i + 1]) - 1.5, 3, 3);
    }
  }
}

// ---- image checkpoints -----------------------------------------------------------------------

const images = { sampler: null };

async function loadCheckpoint(file) {
  $("image-status").textContent = `Reading ${file.name}…`;
  $("sample-images").disabled = true;
  try {
    const bytes = new Uint8Array(await file.arrayBuffer());
    images.sampler = await ddpm.ImageSampler.load(bytes, file.name);
    const classes = images.sampler.classes();
    const pick = $("image-class");
    pick.innerHTML = "";
    pick.append(new Option("unconditional", "-1"));
    classes.forEach((name, i) => pick.append(new Option(`${i}: ${name}`, String(i))));
    $("image-class-label").hidden = classes.length === 0;
    $("image-guidance-label").hidden = classes.length === 0;
    $("image-steps").max = String(images.sampler.n_timesteps());
    $("image-status").textContent = images.sampler.describe();
    $("sample-images").disabled = false;
  } catch (e) {
    images.sampler = null;
    $("image-status").textContent = "";
    showError(`${file.name}: ${e?.message ?? e}`);
  }
}

async function sampleImages() {
  const s = images.sampler;
  if (!s) return;
  $("sample-images").disabled = true;
  try {
    const n = Math.max(1, Math.min(64, parseInt($("n-images").value) || 16));
    const steps = Math.max(1, Math.min(s.n_timesteps(), parseInt($("image-steps").value) || 50));
    const cls = parseInt($("image-class").value ?? "-1");
    const guidance = parseFloat($("image-guidance").value);
    const canvas = $("image-grid");
    const seed = (Math.random() * 2 ** 32) >>> 0;
    // About 50 frames of the reverse chain, x_T first and x_0 last.
    await s.sample(n, steps, isNaN(cls) ? -1 : cls, isNaN(guidance) ? 1 : guidance, seed, 50,
      (rgba, w, h, done) => {
        drawImageGrid(canvas, rgba, w, h);
        $("image-status").textContent = `${s.describe()} · step ${done} of ${steps}`;
      });
  } catch (e) {
    showError("Sampling failed: " + (e?.message ?? e) + "\n" + ddpm.last_error());
  } finally {
    $("sample-images").disabled = false;
  }
}

function drawImageGrid(canvas, rgba, w, h) {
  canvas.width = w;
  canvas.height = h;
  canvas.style.width = `${Math.min(640, w * 4)}px`;
  canvas.style.imageRendering = "pixelated";
  canvas.getContext("2d").putImageData(new ImageData(rgba, w, h), 0, 0);
}

// ---- the browser test suite (?test) ----------------------------------------------------------

// A check that panics in wasm never settles its promise: a deadline turns that into a failure
// with the panic's message instead of a silent hang.
function withDeadline(promise, seconds) {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(
      `no result after ${seconds} s`)), seconds * 1000)),
  ]);
}

async function runTests() {
  const only = new URLSearchParams(location.search).get("only");
  const names = ddpm.list_checks().filter((n) => !only || n.includes(only));
  const page = !only || "page_trains_toy_live".includes(only);
  await report({ event: "plan", n: String(names.length + (page ? 1 : 0)) });
  for (const name of names) {
    const t0 = performance.now();
    let ok = true, msg;
    try {
      msg = await withDeadline(ddpm.run_check(name), name.startsWith("pipelines") ? 600 : 120);
    } catch (e) {
      ok = false;
      msg = String(e?.message ?? e) + "; last error: " + (ddpm.last_error() || "none");
    }
    await report({ event: "result", name, ok: ok ? "1" : "0", ms: String(Math.round(performance.now() - t0)), msg });
  }
  // The page itself: train the toy through the UI until step 300, with the plots drawn (as on
  // native, the loss falls from ~1.0 to under 0.5 by then).
  if (!page) {
    await report({ event: "done" });
    return;
  }
  const t0 = performance.now();
  let ok = false, msg;
  try {
    $("data").value = "s-curve";
    toy.configChanged = true;
    const done = start();
    const deadline = performance.now() + 600e3;
    while (!toy.session || toy.session.step() < 300) {
      if ($("error").hidden === false) throw new Error($("error").textContent);
      if (performance.now() > deadline) throw new Error(`step ${toy.session?.step()} after 600 s`);
      await new Promise((r) => setTimeout(r, 100));
    }
    pause();
    await done;
    await sampleToy();
    const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
    const first = mean(toy.losses.slice(0, 10)), last = mean(toy.losses.slice(-50));
    const speed = toy.trainSteps / (toy.trainMs / 1000);
    ok = last < 0.8 * first && toy.samples !== null;
    msg = `page trained ${toy.session.step()} steps at ${speed.toFixed(1)} steps/s (batch 128): ` +
      `loss ${first.toFixed(3)} -> ${last.toFixed(3)}`;
    await report({ event: "speed", steps_per_s: speed.toFixed(2), adapter: toy.session.adapter() });
  } catch (e) {
    msg = String(e?.message ?? e) + "; last error: " + (ddpm.last_error() || "none");
  }
  await report({ event: "result", name: "page_trains_toy_live", ok: ok ? "1" : "0", ms: String(Math.round(performance.now() - t0)), msg });
  await report({ event: "done" });
}

// ---- start -----------------------------------------------------------------------------------

async function main() {
  $("data").addEventListener("change", () => {
    const labelled = ["moons", "gaussians"].includes($("data").value);
    $("class-cond").disabled = !labelled;
    if (!labelled) $("class-cond").checked = false;
    toy.configChanged = true;
    pause();
  });
  $("class-cond").addEventListener("change", () => { toy.configChanged = true; pause(); });
  $("batch").addEventListener("change", () => { toy.configChanged = true; pause(); });
  $("start").addEventListener("click", start);
  $("pause").addEventListener("click", pauseAndSample);
  $("class-pick").addEventListener("change", () => toy.session && !toy.running && sampleToy());
  $("ckpt").addEventListener("change", (e) => e.target.files[0] && loadCheckpoint(e.target.files[0]));
  $("sample-images").addEventListener("click", sampleImages);

  if (!navigator.gpu) {
    $("adapter").textContent = "No WebGPU.";
    showError(NO_WEBGPU);
    await report({ event: "fatal", msg: "no navigator.gpu" });
    return;
  }
  try {
    await init();
  } catch (e) {
    showError("Loading the wasm module failed: " + (e?.message ?? e) + "\n(Run `cargo xtask web` to build it.)");
    await report({ event: "fatal", msg: "wasm init: " + e });
    return;
  }
  try {
    await createSession();
  } catch (e) {
    $("adapter").textContent = "No usable WebGPU adapter.";
    showError(String(e?.message ?? e) + "\n\n" + NO_WEBGPU);
    await report({ event: "fatal", msg: String(e?.message ?? e) });
    return;
  }
  $("images").hidden = false;
  if (TEST) {
    await runTests();
  }
}

window.addEventListener("error", (e) => showError(String(e.message)));
window.addEventListener("unhandledrejection", (e) => showError(String(e.reason?.message ?? e.reason)));
main();
