// framecast web page: the exported motion-correction model in the browser.
//
// Loads `motion_correction.onnx` (+ the JSON written beside it by `framecast export onnx`)
// and a recorded session file, plays the session frame by frame, runs the model with
// onnxruntime-web (WASM backend, one thread) on the last `sequence_length` frames each time
// a full window exists, and draws the raw and the corrected track on a canvas together with
// the latency of every call.
//
// URL parameters (relative to this page): ?model=...onnx  &meta=...json (default: the model
// name with .json)  &session=...json  &index=N (which session of the file, default 0).
//
// For tests: `window.framecast = { ready, runAll() }` and `document.body.dataset.status`
// ("loading" | "ready" | "error: ..."), see the bottom of this file.

// onnxruntime-web is served from the npm install next to this page; nothing is fetched from
// the internet. The WASM-only build loads its .mjs/.wasm helpers from `wasmPaths`.
const ORT_DIST = "node_modules/onnxruntime-web/dist/";
const ORT_MODULE = `./${ORT_DIST}ort.wasm.min.mjs`;

const JOINTS = ["head", "hips", "left_arm", "right_arm"];
const AXES = ["x", "y", "z"];
const NUM_FEATURES = 3 * JOINTS.length;
const FRAME_KEYS = ["timestamp", ...JOINTS];
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
  model: null, // ort.InferenceSession
  inputName: "window",
  outputName: "prediction",
  meta: null, // motion_correction.json
  sessions: [], // [{ raw: Float32Array[] (T rows of 12), timestamps: number[] }]
  current: 0, // index of the shown session
  frame: -1, // last frame played (-1: none yet)
  corrected: [], // per frame index: Float32Array(12) predicted for that frame, or undefined
  latencies: [], // ms per model call since the last reset
  speed: 1,
  group: "head",
  playToken: 0, // bumps on every play/pause/reset so an old playback loop stops
  playing: false,
  queue: Promise.resolve(), // model calls run one at a time (a session is not re-entrant)
  failed: null,
};

// -- status and errors ---------------------------------------------------------------------
function setStatus(status) {
  document.body.dataset.status = status;
}

function showError(error) {
  const message = error instanceof PageError ? error.message : `unexpected error: ${error}`;
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
async function fetchOk(url, what, hint = "") {
  let response;
  try {
    response = await fetch(url, { cache: "no-store" });
  } catch (error) {
    throw new PageError(`${what} ${url}: could not be fetched (${error.message})${hint}`);
  }
  if (!response.ok) {
    throw new PageError(
      `${what} ${url}: HTTP ${response.status} ${response.statusText || ""}`.trim() + hint,
    );
  }
  return response;
}

async function fetchJson(url, what, hint = "") {
  const text = await (await fetchOk(url, what, hint)).text();
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new PageError(`${what} ${url}: malformed JSON (${error.message})`);
  }
}

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

function checkMeta(meta, url) {
  const where = `model description ${url}`;
  if (meta === null || typeof meta !== "object" || Array.isArray(meta)) {
    throw new PageError(`${where}: expected an object as written by framecast export onnx`);
  }
  const length = meta.sequence_length;
  if (!Number.isInteger(length) || length < 1) {
    throw new PageError(`${where}: sequence_length ${JSON.stringify(length)} is not an integer >= 1`);
  }
  if (!Array.isArray(meta.feature_names) || meta.feature_names.length !== NUM_FEATURES) {
    const got = Array.isArray(meta.feature_names) ? meta.feature_names.length : "none";
    throw new PageError(`${where}: expected ${NUM_FEATURES} feature_names, got ${got}`);
  }
  if (!["next", "denoise"].includes(meta.target)) {
    throw new PageError(`${where}: target ${JSON.stringify(meta.target)}, expected next or denoise`);
  }
  return meta;
}

/** The users' session format (see framecast.data.motion), checked like the Python loader. */
function parseSessions(data, url) {
  if (!Array.isArray(data)) {
    throw new PageError(`session file ${url}: expected a list of sessions, got ${typeName(data)}`);
  }
  if (data.length === 0) throw new PageError(`session file ${url}: holds no sessions`);
  return data.map((frames, s) => {
    if (!Array.isArray(frames)) {
      throw new PageError(
        `session file ${url}: session ${s}: expected a list of frames, got ${typeName(frames)}`,
      );
    }
    const raw = [];
    const timestamps = [];
    frames.forEach((frame, f) => {
      const where = `session file ${url}: session ${s} frame ${f}`;
      if (frame === null || typeof frame !== "object" || Array.isArray(frame)) {
        throw new PageError(`${where}: expected an object with keys ${FRAME_KEYS.join(", ")}`);
      }
      const missing = FRAME_KEYS.filter((key) => !(key in frame));
      if (missing.length) throw new PageError(`${where}: missing key(s) ${missing.join(", ")}`);
      const t = Number(frame.timestamp);
      if (typeof frame.timestamp === "boolean" || !Number.isFinite(t)) {
        throw new PageError(`${where}: timestamp ${JSON.stringify(frame.timestamp)} is not a finite number`);
      }
      const row = new Float32Array(NUM_FEATURES);
      JOINTS.forEach((joint, j) => {
        const vec = frame[joint];
        if (!Array.isArray(vec) || vec.length !== 3) {
          const got = Array.isArray(vec) ? `length ${vec.length}` : typeName(vec);
          throw new PageError(`${where}: ${joint} must be a list of 3 numbers, got ${got}`);
        }
        vec.forEach((v, k) => {
          if (typeof v !== "number" || !Number.isFinite(v)) {
            throw new PageError(`${where}: ${joint} holds ${JSON.stringify(v)}, expected finite numbers`);
          }
          row[3 * j + k] = v;
        });
      });
      raw.push(row);
      timestamps.push(t);
    });
    return { raw, timestamps };
  });
}

function typeName(value) {
  if (value === null) return "null";
  return Array.isArray(value) ? "a list" : typeof value;
}

async function load() {
  setStatus("loading");
  $("sources").textContent = `model ${urls.model} · session ${urls.session}`;
  const exportHint =
    "; export one with `framecast export onnx --run RUN --out web/motion_correction.onnx` " +
    "or name it with ?model=...";
  state.ort = await loadOrt();
  const bytes = await (await fetchOk(urls.model, "model", exportHint)).arrayBuffer();
  const metaHint = "; it is written beside the model by `framecast export onnx` (or name it with ?meta=...)";
  state.meta = checkMeta(await fetchJson(urls.meta, "model description", metaHint), urls.meta);
  try {
    state.model = await state.ort.InferenceSession.create(new Uint8Array(bytes), {
      executionProviders: ["wasm"],
      graphOptimizationLevel: "all",
    });
  } catch (error) {
    throw new PageError(`model ${urls.model}: onnxruntime-web cannot load it (${error.message})`);
  }
  const { inputNames, outputNames } = state.model;
  state.inputName = inputNames.includes(state.meta.input?.name) ? state.meta.input.name : inputNames[0];
  state.outputName = outputNames.includes(state.meta.output?.name)
    ? state.meta.output.name
    : outputNames[0];

  const sessions = parseSessions(
    await fetchJson(urls.session, "session file", "; name one with ?session=..."),
    urls.session,
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

  // One untimed call: the first run compiles kernels, and a wrong output shows up here.
  const warm = await infer(sessions[wanted].raw.slice(0, L), { timed: false });
  if (warm.length !== NUM_FEATURES) {
    throw new PageError(`model ${urls.model}: output has ${warm.length} values, expected ${NUM_FEATURES}`);
  }
  $("backend").textContent = `onnxruntime-web ${state.ort.env.versions?.web ?? ""} · wasm · 1 thread` +
    (window.crossOriginIsolated ? "" : " · timer resolution ~0.1 ms (page not cross-origin isolated)");
  $("model-info").textContent =
    `${urls.model.split("/").pop()} · window ${L} frames · target ${state.meta.target} · ` +
    `input ${state.inputName} (1, ${L}, ${NUM_FEATURES})`;
  selectSession(wanted);
  for (const id of ["play", "step", "reset"]) $(id).disabled = false;
  setStatus("ready");
  return { sequenceLength: L, target: state.meta.target, sessions: sessions.length };
}

// -- inference -------------------------------------------------------------------------------
/**
 * Run the model on one window (array of L rows of 12), batch 1; the prediction (12).
 * `timed`: record the call's latency; `show`: refresh the latency panel after it (off for
 * runAll, which refreshes it once at the end instead of sorting all latencies per call).
 */
function infer(rows, { timed = true, show = true } = {}) {
  const run = async () => {
    const L = rows.length;
    const data = new Float32Array(L * NUM_FEATURES);
    rows.forEach((row, i) => data.set(row, i * NUM_FEATURES));
    const t0 = performance.now();
    const input = new state.ort.Tensor("float32", data, [1, L, NUM_FEATURES]);
    const outputs = await state.model.run({ [state.inputName]: input });
    const elapsed = performance.now() - t0;
    const prediction = Float32Array.from(outputs[state.outputName].data);
    if (timed) {
      state.latencies.push(elapsed);
      if (show) updateLatency();
    }
    return prediction;
  };
  // Chain on the queue; a failed call must not block the ones after it.
  const result = state.queue.then(run);
  state.queue = result.catch(() => {});
  return result;
}

/** Frame index a prediction made from the window ending at `end` stands for. */
function targetFrame(end) {
  return state.meta.target === "next" ? end + 1 : end;
}

/** Window ending at frame `end` of the shown session, or null while too few frames exist. */
function windowEndingAt(end) {
  const L = state.meta.sequence_length;
  if (end + 1 < L) return null;
  return state.sessions[state.current].raw.slice(end + 1 - L, end + 1);
}

// -- playback --------------------------------------------------------------------------------
function session() {
  return state.sessions[state.current];
}

async function advance() {
  const s = session();
  if (state.frame >= s.raw.length - 1) return false;
  state.frame += 1;
  const rows = windowEndingAt(state.frame);
  if (rows) state.corrected[targetFrame(state.frame)] = await infer(rows);
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
  state.latencies = [];
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
/** Nearest-rank percentile of a sorted array. */
function percentile(sorted, p) {
  if (!sorted.length) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

function formatMs(ms) {
  return Number.isFinite(ms) ? `${ms.toFixed(3)} ms` : "–";
}

function updateLatency() {
  const lat = state.latencies;
  const sorted = [...lat].sort((a, b) => a - b);
  $("lat-last").textContent = formatMs(lat[lat.length - 1]);
  $("lat-median").textContent = formatMs(percentile(sorted, 50));
  $("lat-p95").textContent = formatMs(percentile(sorted, 95));
  $("lat-count").textContent = String(lat.length);
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
  await state.queue;
  const T = session().raw.length;
  const predictions = [];
  for (let end = state.meta.sequence_length - 1; end < T; end += 1) {
    const prediction = await infer(windowEndingAt(end), { show: false });
    state.corrected[targetFrame(end)] = prediction;
    predictions.push(Array.from(prediction));
  }
  state.frame = T - 1;
  updateLatency();
  draw();
  return { predictions, latencies_ms: [...state.latencies] };
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
