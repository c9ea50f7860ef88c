// framecast web page: the exported motion-correction model in the browser.
//
// Loads `motion_correction.onnx` (+ the JSON written beside it by `framecast export onnx`)
// and a recorded session file, plays the session frame by frame, feeds every frame to a
// MotionCorrector (motion-corrector.js: the importable module apps use; onnxruntime-web,
// WASM backend, one thread), which runs the model on the last `sequence_length` frames
// once a full window exists, and draws the raw and the corrected track on a canvas together
// with the latency of every call.
//
// URL parameters (relative to this page): ?model=...onnx  &meta=...json (default: the model
// name with .json)  &session=...json  &index=N (which session of the file, default 0).
//
// For tests: `window.framecast = { ready, runAll() }` and `document.body.dataset.status`
// ("loading" | "ready" | "error: ..."), see the bottom of this file.

// onnxruntime-web is served from the npm install next to this page; nothing is fetched from
// the internet. The WASM-only build loads its .mjs/.wasm helpers from `wasmPaths`.
import {
  AXES,
  JOINTS,
  MotionCorrector,
  MotionCorrectorError,
  fetchJson,
  latencyStats,
  parseSessions,
} from "./motion-corrector.js";

const ORT_DIST = "node_modules/onnxruntime-web/dist/";
const ORT_MODULE = `./${ORT_DIST}ort.wasm.min.mjs`;
const AXIS_COLOURS = ["#d62728", "#2ca02c", "#1f77b4"]; // x, y, z
const DEFAULT_FPS = 30;

const params = new URLSearchParams(window.location.search);
const urls = {
  model: params.get("model") ?? "motion_correction.onnx",
  session: params.get("session") ?? "session.json",
};
urls.meta = params.get("meta") ?? `${urls.model.replace(/\.onnx$/i, "")}.json`;

/** An error meant for the page's error box (a message a user can act on). */
class PageError extends Error {}

const $ = (id) => document.getElementById(id);

const state = {
  ort: null, // the onnxruntime-web module
  corrector: null, // MotionCorrector: the model, its rolling window and latencies
  meta: null, // motion_correction.json
  sessions: [], // [{ raw: Float32Array[] (T rows of 12), timestamps: number[] }]
  current: 0, // index of the shown session
  frame: -1, // last frame played (-1: none yet)
  corrected: [], // per frame index: Float32Array(12) predicted for that frame, or undefined
  speed: 1,
  group: "head",
  playToken: 0, // bumps on every play/pause/reset so an old playback loop stops
  playing: false,
  failed: null,
};

// -- status and errors ---------------------------------------------------------------------
function setStatus(status) {
  document.body.dataset.status = status;
}

function showError(error) {
  const known = error instanceof PageError || error instanceof MotionCorrectorError;
  const message = known ? error.message : `unexpected error: ${error}`;
  state.failed = message;
  state.playing = false;
  state.playToken += 1;
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
  for (const id of ["play", "step", "reset"]) $(id).disabled = true;
  setStatus(`error: ${message}`);
  console.error(error);
}

// -- loading ---------------------------------------------------------------------------------
async function loadOrt() {
  let ort;
  try {
    ort = await import(ORT_MODULE);
  } catch (error) {
    throw new PageError(
      `onnxruntime-web could not be loaded from web/${ORT_DIST} (${error.message}); ` +
        "install it with `npm ci` in web/ (or `make web-deps`)",
    );
  }
  // Single-threaded WASM: no SharedArrayBuffer/worker needs, same numbers on every machine.
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  ort.env.wasm.wasmPaths = new URL(ORT_DIST, window.location.href).href;
  ort.env.logLevel = "warning";
  return ort;
}

async function load() {
  setStatus("loading");
  $("sources").textContent = `model ${urls.model} · session ${urls.session}`;
  state.ort = await loadOrt();
  state.corrector = await MotionCorrector.load({ model: urls.model, meta: urls.meta, ort: state.ort });
  state.meta = state.corrector.meta;

  const sessions = parseSessions(
    await fetchJson(urls.session, "session file", "; name one with ?session=..."),
    `session file ${urls.session}`,
  );
  const L = state.meta.sequence_length;
  const longest = Math.max(...sessions.map((s) => s.raw.length));
  if (longest < L) {
    throw new PageError(
      `session file ${urls.session}: its longest session has ${longest} frame(s); the model ` +
        `needs windows of sequence_length ${L}`,
    );
  }
  state.sessions = sessions;
  const wanted = Number.parseInt(params.get("index") ?? "0", 10);
  if (!(wanted >= 0 && wanted < sessions.length)) {
    throw new PageError(`?index=${params.get("index")}: the file has ${sessions.length} session(s)`);
  }
  fillSessionSelect(wanted);

  $("backend").textContent = `onnxruntime-web ${state.ort.env.versions?.web ?? ""} · wasm · 1 thread` +
    (window.crossOriginIsolated ? "" : " · timer resolution ~0.1 ms (page not cross-origin isolated)");
  $("model-info").textContent =
    `${urls.model.split("/").pop()} · window ${L} frames · target ${state.meta.target} · ` +
    `input "${state.corrector.inputName}" (1, ${L}, 12) · opset ${state.meta.opset ?? "?"}`;
  selectSession(wanted);
  for (const id of ["play", "step", "reset"]) $(id).disabled = false;
  setStatus("ready");
  return { sequenceLength: L, target: state.meta.target, sessions: sessions.length };
}

// -- inference -------------------------------------------------------------------------------
/**
 * Feed frame `index` of the shown session to the corrector (frames go in in order from a
 * reset, so its rolling window is the window ending at `index`); the prediction, or null
 * while fewer than sequence_length frames were fed. `show`: refresh the latency panel.
 */
async function feed(index, { show = true } = {}) {
  const prediction = await state.corrector.correctFeatures(session().raw[index]);
  if (prediction && show) updateLatency();
  return prediction;
}

/** Frame index a prediction made from the window ending at `end` stands for. */
function targetFrame(end) {
  return state.meta.target === "next" ? end + 1 : end;
}

// -- playback --------------------------------------------------------------------------------
function session() {
  return state.sessions[state.current];
}

async function advance() {
  const s = session();
  if (state.frame >= s.raw.length - 1) return false;
  state.frame += 1;
  const prediction = await feed(state.frame);
  if (prediction) state.corrected[targetFrame(state.frame)] = prediction;
  draw();
  return true;
}

/** Seconds between frame i and i + 1 (from the timestamps; 1/30 s when they are unusable). */
function frameInterval(i) {
  const t = session().timestamps;
  const dt = i >= 0 && i + 1 < t.length ? t[i + 1] - t[i] : 0;
  return dt > 0 && dt < 5 ? dt : 1 / DEFAULT_FPS;
}

async function play() {
  if (state.frame >= session().raw.length - 1) reset();
  const token = ++state.playToken;
  state.playing = true;
  updatePlayButton();
  try {
    while (token === state.playToken) {
      const started = performance.now();
      if (!(await advance())) break;
      const wait = (frameInterval(state.frame - 1) * 1000) / state.speed - (performance.now() - started);
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, wait)));
    }
  } catch (error) {
    showError(new PageError(`model call failed: ${error.message ?? error}`));
  }
  if (token === state.playToken) {
    state.playing = false;
    updatePlayButton();
  }
}

function pause() {
  state.playToken += 1;
  state.playing = false;
  updatePlayButton();
}

function reset() {
  pause();
  state.frame = -1;
  state.corrected = [];
  state.corrector?.reset();
  state.corrector?.resetStats();
  updateLatency();
  draw();
}

function selectSession(index) {
  state.current = index;
  $("session-index").value = String(index);
  reset();
}

function fillSessionSelect(selected) {
  const select = $("session-index");
  select.replaceChildren(
    ...state.sessions.map((s, i) => new Option(`${i} (${s.raw.length} frames)`, String(i))),
  );
  select.value = String(selected);
  select.disabled = state.sessions.length < 2;
}

function fillGroupSelect() {
  const select = $("group");
  select.replaceChildren(...JOINTS.map((joint) => new Option(joint.replace("_", " "), joint)));
  select.value = state.group;
}

function updatePlayButton() {
  $("play").textContent = state.playing ? "Pause" : "▶ Play";
}

// -- latency ---------------------------------------------------------------------------------
function formatMs(ms) {
  return Number.isFinite(ms) ? `${ms.toFixed(3)} ms` : "–";
}

function updateLatency() {
  const stats = state.corrector ? state.corrector.stats() : latencyStats([]);
  $("lat-last").textContent = formatMs(stats.lastMs);
  $("lat-median").textContent = formatMs(stats.medianMs);
  $("lat-p95").textContent = formatMs(stats.p95Ms);
  $("lat-count").textContent = String(stats.count);
}

// -- drawing ---------------------------------------------------------------------------------
function draw() {
  const canvas = $("tracks");
  const ctx = canvas.getContext("2d");
  const W = canvas.width;
  const H = canvas.height;
  ctx.clearRect(0, 0, W, H);
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, W, H);
  if (!state.sessions.length) return;

  const s = session();
  const T = s.raw.length;
  const group = JOINTS.indexOf(state.group);
  // x axis: every frame, plus one slot after the last for a "next" prediction.
  const slots = Math.max(2, T + (state.meta.target === "next" ? 1 : 0));
  const left = 78;
  const right = 16;
  const top = 30;
  const bottom = 28;
  const laneGap = 10;
  const laneH = (H - top - bottom - 2 * laneGap) / 3;
  const xOf = (i) => left + (i / (slots - 1)) * (W - left - right);

  ctx.font = "13px system-ui, sans-serif";
  ctx.fillStyle = "#1d1d1f";
  ctx.textBaseline = "middle";
  ctx.textAlign = "left";
  ctx.fillText(
    `${state.group.replace("_", " ")} · raw (faint) vs corrected (bold) · frame ` +
      `${Math.max(0, state.frame + 1)}/${T}`,
    left,
    top / 2,
  );

  for (let a = 0; a < 3; a += 1) {
    const feature = 3 * group + a;
    const y0 = top + a * (laneH + laneGap);
    // Fixed y range per lane over the whole session (raw and predictions), padded.
    let lo = Infinity;
    let hi = -Infinity;
    for (const row of s.raw) {
      lo = Math.min(lo, row[feature]);
      hi = Math.max(hi, row[feature]);
    }
    for (const row of state.corrected) {
      if (row) {
        lo = Math.min(lo, row[feature]);
        hi = Math.max(hi, row[feature]);
      }
    }
    if (hi - lo < 1e-6) {
      lo -= 1;
      hi += 1;
    }
    const pad = 0.08 * (hi - lo);
    lo -= pad;
    hi += pad;
    const yOf = (v) => y0 + laneH - ((v - lo) / (hi - lo)) * laneH;

    // lane frame, label and range
    ctx.strokeStyle = "#e3e3e8";
    ctx.lineWidth = 1;
    ctx.strokeRect(left, y0, W - left - right, laneH);
    ctx.fillStyle = AXIS_COLOURS[a];
    ctx.textAlign = "right";
    ctx.fillText(`${state.group}_${AXES[a]}`, left - 8, y0 + laneH / 2);
    ctx.fillStyle = "#6b6b70";
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillText(hi.toFixed(1), left - 8, y0 + 8);
    ctx.fillText(lo.toFixed(1), left - 8, y0 + laneH - 8);
    ctx.font = "13px system-ui, sans-serif";

    // raw track up to the current frame: thin and faint
    const last = state.frame;
    ctx.save();
    ctx.globalAlpha = 0.35;
    ctx.strokeStyle = AXIS_COLOURS[a];
    ctx.lineWidth = 1.2;
    ctx.beginPath();
    for (let i = 0; i <= last; i += 1) {
      const x = xOf(i);
      const y = yOf(s.raw[i][feature]);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    }
    ctx.stroke();
    ctx.restore();

    // corrected track: bold; gaps where no prediction exists yet
    ctx.strokeStyle = AXIS_COLOURS[a];
    ctx.lineWidth = 2.6;
    ctx.lineJoin = "round";
    ctx.beginPath();
    let pen = false;
    for (let i = 0; i < state.corrected.length; i += 1) {
      const row = state.corrected[i];
      if (!row) {
        pen = false;
        continue;
      }
      const x = xOf(i);
      const y = yOf(row[feature]);
      if (pen) ctx.lineTo(x, y);
      else ctx.moveTo(x, y);
      pen = true;
    }
    ctx.stroke();
  }

  // playback cursor and time axis
  if (state.frame >= 0) {
    const x = xOf(state.frame);
    ctx.strokeStyle = "rgba(0, 0, 0, 0.45)";
    ctx.setLineDash([4, 4]);
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(x, top);
    ctx.lineTo(x, H - bottom);
    ctx.stroke();
    ctx.setLineDash([]);
  }
  ctx.fillStyle = "#6b6b70";
  ctx.font = "11px system-ui, sans-serif";
  ctx.textAlign = "left";
  const t0 = s.timestamps[0];
  ctx.fillText(`${(0).toFixed(2)} s`, left, H - bottom / 2);
  ctx.textAlign = "right";
  ctx.fillText(`${(s.timestamps[T - 1] - t0).toFixed(2)} s · ${T} frames`, W - right, H - bottom / 2);
  $("frame").textContent = `frame ${Math.max(0, state.frame + 1)} / ${T}`;
}

// -- test API --------------------------------------------------------------------------------
/**
 * Run the model over every window of the shown session (batch 1, in order: windows ending
 * at frames L-1 … T-1), fill the corrected track, draw it; the predictions and the latency
 * of each call. Resets the page's latency figures first, so they describe these calls.
 */
async function runAll() {
  await ready;
  if (state.failed) throw new Error(state.failed);
  reset();
  await state.corrector.idle();
  const T = session().raw.length;
  const predictions = [];
  for (let i = 0; i < T; i += 1) {
    const prediction = await feed(i, { show: false });
    if (prediction) {
      state.corrected[targetFrame(i)] = prediction;
      predictions.push(Array.from(prediction));
    }
  }
  state.frame = T - 1;
  updateLatency();
  draw();
  return { predictions, latencies_ms: state.corrector.latencies };
}

// -- wiring ----------------------------------------------------------------------------------
fillGroupSelect();
$("play").addEventListener("click", () => (state.playing ? pause() : play()));
$("step").addEventListener("click", async () => {
  pause();
  try {
    await advance();
  } catch (error) {
    showError(new PageError(`model call failed: ${error.message ?? error}`));
  }
});
$("reset").addEventListener("click", reset);
$("speed").addEventListener("change", (event) => {
  state.speed = Number(event.target.value) || 1;
});
$("group").addEventListener("change", (event) => {
  state.group = event.target.value;
  draw();
});
$("session-index").addEventListener("change", (event) => selectSession(Number(event.target.value)));

const ready = load().catch((error) => {
  showError(error);
  throw error;
});
ready.catch(() => {}); // the rejection is shown on the page; callers awaiting `ready` see it too

window.framecast = { ready, runAll };
