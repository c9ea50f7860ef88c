// framecast motion correction in the browser: an importable ES module (no build step).
//
//   import * as ort from "onnxruntime-web";
//   import { MotionCorrector } from "./motion-corrector.js";
//
//   const corrector = await MotionCorrector.load({ model: "assets/motion_correction.onnx", ort });
//   const out = await corrector.correct({ timestamp: new Date().toISOString(),
//     head: [x, y, z], hips: {x, y, z}, left_arm: [...], right_arm: [...] });
//   // out: the same frame shape, corrected once `sequenceLength` frames were seen
//   //      (out.corrected === false before: the input frame is passed through)
//   corrector.stats();  // { count, lastMs, meanMs, medianMs, p95Ms } of the model calls
//
// Loads the ONNX model written by `framecast export onnx` and the JSON beside it
// (sequence_length, target, input/output names, feature names), keeps the rolling window of
// the last `sequenceLength` frames, runs one model call per frame (batch 1) once the window
// is full, and records the latency of every call. Frames are the users' format: joints
// "head", "hips", "left_arm", "right_arm" as [x, y, z] or {x, y, z}; timestamps in seconds or
// ISO-8601 (`datetime.now().isoformat()`, `new Date().toISOString()`).
//
// The web page (app.js) and the Chromium test (tests/web) use this module; the types are in
// motion-corrector.d.ts.

export const JOINTS = Object.freeze(["head", "hips", "left_arm", "right_arm"]);
export const AXES = Object.freeze(["x", "y", "z"]);
export const NUM_FEATURES = 3 * JOINTS.length;
export const FEATURE_NAMES = Object.freeze(JOINTS.flatMap((j) => AXES.map((a) => `${j}_${a}`)));
const FRAME_KEYS = ["timestamp", ...JOINTS];

/** A problem a user can act on (bad model file, bad frame, bad session file). */
export class MotionCorrectorError extends Error {
  constructor(message) {
    super(message);
    this.name = "MotionCorrectorError";
  }
}

function typeName(value) {
  if (value === null) return "null";
  return Array.isArray(value) ? "a list" : typeof value;
}

function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

// -- frames ----------------------------------------------------------------------------------
const ISO_DATE_TIME = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$/i;

/**
 * Seconds from a number, a Date or an ISO-8601 date-time string (with or without offset;
 * without one it is read as UTC, like the Python loader, so only differences matter).
 */
export function parseTimestamp(value, where = "frame") {
  if (value instanceof Date) value = value.getTime() / 1000;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) {
      throw new MotionCorrectorError(`${where}: timestamp ${value} is not a finite number`);
    }
    return value;
  }
  if (typeof value === "string") {
    const text = value.trim();
    if (text !== "" && Number.isFinite(Number(text))) return Number(text);
    const match = ISO_DATE_TIME.exec(text);
    if (match) {
      // Date.parse keeps milliseconds only; Python's isoformat writes microseconds.
      const fraction = match[2] ? Number(`0${match[2]}`) : 0;
      const whole = text.replace(/\.\d+/, "").replace(" ", "T");
      const zoned = match[3] ? whole : `${whole}Z`;
      const ms = Date.parse(zoned.replace(/([+-]\d{2})(\d{2})$/, "$1:$2"));
      if (Number.isFinite(ms)) return ms / 1000 + fraction;
    }
  }
  throw new MotionCorrectorError(
    `${where}: timestamp ${JSON.stringify(value)} is neither a number (seconds) nor an ` +
      "ISO-8601 date-time such as 2026-11-30T08:37:04.123456",
  );
}

function jointValues(vec, joint, where) {
  let values = vec;
  if (isObject(vec)) {
    const missing = AXES.filter((a) => !(a in vec));
    if (missing.length) {
      throw new MotionCorrectorError(
        `${where}: ${joint} object lacks ${missing.join(", ")}; expected {"x", "y", "z"} or [x, y, z]`,
      );
    }
    values = AXES.map((a) => vec[a]);
  } else if (!Array.isArray(vec) || vec.length !== 3) {
    const got = Array.isArray(vec) ? `length ${vec.length}` : typeName(vec);
    throw new MotionCorrectorError(
      `${where}: ${joint} must be a list of 3 numbers or an {"x", "y", "z"} object, got ${got}`,
    );
  }
  for (const v of values) {
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new MotionCorrectorError(`${where}: ${joint} holds ${JSON.stringify(v)}, expected finite numbers`);
    }
  }
  return values;
}

/**
 * The 12 features (head xyz, hips xyz, left arm xyz, right arm xyz) of one frame, checked;
 * `requireTimestamp`: the frame must also carry a timestamp (session files) and it is
 * returned in seconds.
 */
export function frameFeatures(frame, where = "frame", { requireTimestamp = false } = {}) {
  if (!isObject(frame)) {
    throw new MotionCorrectorError(`${where}: expected an object with keys ${FRAME_KEYS.join(", ")}`);
  }
  const keys = requireTimestamp ? FRAME_KEYS : JOINTS;
  const missing = keys.filter((key) => frame[key] === undefined || frame[key] === null);
  if (missing.length) throw new MotionCorrectorError(`${where}: missing key(s) ${missing.join(", ")}`);
  const features = new Float32Array(NUM_FEATURES);
  JOINTS.forEach((joint, j) => features.set(jointValues(frame[joint], joint, where), 3 * j));
  const timestamp = requireTimestamp ? parseTimestamp(frame.timestamp, where) : null;
  return { features, timestamp };
}

/**
 * A frame from 12 features; each joint in the shape `like`'s joint has ([x, y, z] by
 * default, {x, y, z} where `like` uses objects); other keys of `like` (timestamp, ...) kept.
 */
export function featuresToFrame(features, like = null) {
  const frame = isObject(like) ? { ...like } : {};
  JOINTS.forEach((joint, j) => {
    const xyz = Array.from(features.slice(3 * j, 3 * j + 3));
    frame[joint] = isObject(like?.[joint]) ? { ...like[joint], x: xyz[0], y: xyz[1], z: xyz[2] } : xyz;
  });
  return frame;
}

/**
 * A session file (a list of sessions, each a list of frames) → [{raw: Float32Array[],
 * timestamps: number[]}]; the first bad frame throws, naming source, session and frame.
 */
export function parseSessions(data, source = "session file") {
  if (!Array.isArray(data)) {
    throw new MotionCorrectorError(`${source}: expected a list of sessions, got ${typeName(data)}`);
  }
  if (data.length === 0) throw new MotionCorrectorError(`${source}: holds no sessions`);
  return data.map((frames, s) => {
    if (!Array.isArray(frames)) {
      throw new MotionCorrectorError(
        `${source}: session ${s}: expected a list of frames, got ${typeName(frames)}`,
      );
    }
    const raw = [];
    const timestamps = [];
    frames.forEach((frame, f) => {
      const where = `${source}: session ${s} frame ${f}`;
      const { features, timestamp } = frameFeatures(frame, where, { requireTimestamp: true });
      if (timestamps.length && timestamp < timestamps[timestamps.length - 1]) {
        throw new MotionCorrectorError(`${where}: timestamp goes back from the previous frame's`);
      }
      raw.push(features);
      timestamps.push(timestamp);
    });
    return { raw, timestamps };
  });
}

// -- latency ---------------------------------------------------------------------------------
/** Nearest-rank percentile of a sorted array (NaN when empty). */
function percentile(sorted, p) {
  if (!sorted.length) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** count, last, mean, median and p95 (nearest rank) of latencies in ms; NaN when empty. */
export function latencyStats(latencies) {
  const sorted = [...latencies].sort((a, b) => a - b);
  const count = latencies.length;
  return {
    count,
    lastMs: count ? latencies[count - 1] : NaN,
    meanMs: count ? latencies.reduce((a, b) => a + b, 0) / count : NaN,
    medianMs: percentile(sorted, 50),
    p95Ms: percentile(sorted, 95),
  };
}

// -- loading ---------------------------------------------------------------------------------
async function fetchOk(url, what, hint = "") {
  let response;
  try {
    response = await fetch(url, { cache: "no-store" });
  } catch (error) {
    throw new MotionCorrectorError(`${what} ${url}: could not be fetched (${error.message})${hint}`);
  }
  if (!response.ok) {
    throw new MotionCorrectorError(
      `${what} ${url}: HTTP ${response.status} ${response.statusText || ""}`.trim() + hint,
    );
  }
  return response;
}

/** Fetch and parse JSON; a malformed file names the URL. */
export async function fetchJson(url, what = "file", hint = "") {
  const text = await (await fetchOk(url, what, hint)).text();
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new MotionCorrectorError(`${what} ${url}: malformed JSON (${error.message})`);
  }
}

/** The model description written beside the model by `framecast export onnx`, checked. */
export function checkMeta(meta, where = "model description") {
  if (!isObject(meta)) {
    throw new MotionCorrectorError(`${where}: expected an object as written by framecast export onnx`);
  }
  const length = meta.sequence_length;
  if (!Number.isInteger(length) || length < 1) {
    throw new MotionCorrectorError(`${where}: sequence_length ${JSON.stringify(length)} is not an integer >= 1`);
  }
  if (!Array.isArray(meta.feature_names) || meta.feature_names.length !== NUM_FEATURES) {
    const got = Array.isArray(meta.feature_names) ? meta.feature_names.length : "none";
    throw new MotionCorrectorError(`${where}: expected ${NUM_FEATURES} feature_names, got ${got}`);
  }
  if (!["next", "denoise"].includes(meta.target)) {
    throw new MotionCorrectorError(`${where}: target ${JSON.stringify(meta.target)}, expected next or denoise`);
  }
  return meta;
}

const EXPORT_HINT = "; export one with `framecast export onnx --run RUN --out motion_correction.onnx`";
const META_HINT = "; it is written beside the model by `framecast export onnx`";

export class MotionCorrector {
  /**
   * Load the model (URL, ArrayBuffer or Uint8Array) and its description (`meta`: URL or the
   * parsed object; default: the model URL with `.json`). `ort`: the onnxruntime-web module
   * (default: `import("onnxruntime-web")`, which a bundler such as Angular's resolves).
   * One untimed warm-up call checks the output size.
   */
  static async load({ model, meta, ort, executionProviders = ["wasm"], sessionOptions = {} } = {}) {
    if (model === undefined || model === null) {
      throw new MotionCorrectorError("MotionCorrector.load: give the model (a URL or the bytes)");
    }
    const modelUrl = typeof model === "string" ? model : null;
    const modelName = modelUrl ?? "model";
    if (meta === undefined || meta === null) {
      if (!modelUrl) {
        throw new MotionCorrectorError("MotionCorrector.load: give meta when the model is given as bytes");
      }
      meta = `${modelUrl.replace(/\.onnx(\?.*)?$/i, "")}.json`;
    }
    if (!ort) {
      try {
        ort = await import("onnxruntime-web");
      } catch (error) {
        throw new MotionCorrectorError(
          `onnxruntime-web could not be imported (${error.message}); install it (npm i onnxruntime-web) or pass { ort }`,
        );
      }
    }
    const bytes = modelUrl
      ? new Uint8Array(await (await fetchOk(modelUrl, "model", EXPORT_HINT)).arrayBuffer())
      : model instanceof Uint8Array
        ? model
        : new Uint8Array(model);
    const metaWhere = typeof meta === "string" ? `model description ${meta}` : "model description";
    const description = checkMeta(
      typeof meta === "string" ? await fetchJson(meta, "model description", META_HINT) : meta,
      metaWhere,
    );
    let session;
    try {
      session = await ort.InferenceSession.create(bytes, {
        executionProviders,
        graphOptimizationLevel: "all",
        ...sessionOptions,
      });
    } catch (error) {
      throw new MotionCorrectorError(`model ${modelName}: onnxruntime-web cannot load it (${error.message})`);
    }
    const corrector = new MotionCorrector(ort, session, description, modelName);
    const mean = description.normalisation?.mean;
    const row = Array.isArray(mean) && mean.length === NUM_FEATURES ? mean : new Array(NUM_FEATURES).fill(0);
    const warm = await corrector.predictWindow(
      Array.from({ length: description.sequence_length }, () => row),
      { timed: false },
    );
    if (warm.length !== NUM_FEATURES) {
      throw new MotionCorrectorError(`model ${modelName}: output has ${warm.length} values, expected ${NUM_FEATURES}`);
    }
    return corrector;
  }

  /** Use MotionCorrector.load; this wraps an existing ort.InferenceSession. */
  constructor(ort, session, meta, modelName = "model") {
    this.ort = ort;
    this.session = session;
    this.meta = checkMeta(meta);
    this.modelName = modelName;
    const { inputNames, outputNames } = session;
    this.inputName = inputNames.includes(meta.input?.name) ? meta.input.name : inputNames[0];
    this.outputName = outputNames.includes(meta.output?.name) ? meta.output.name : outputNames[0];
    this._window = []; // the last sequenceLength frames, Float32Array(12) each
    this._latencies = [];
    this._queue = Promise.resolve(); // one call at a time: a session is not re-entrant
  }

  /** Frames per model window (the training `sequence_length`). */
  get sequenceLength() {
    return this.meta.sequence_length;
  }

  /** "next": a prediction stands for the frame after the window; "denoise": its last frame. */
  get target() {
    return this.meta.target;
  }

  /** Frames held in the rolling window (up to sequenceLength). */
  get windowSize() {
    return this._window.length;
  }

  /** True once sequenceLength frames were seen since the last reset. */
  get ready() {
    return this._window.length === this.sequenceLength;
  }

  /** Latency of every timed model call since the last resetStats (ms, a copy). */
  get latencies() {
    return [...this._latencies];
  }

  /**
   * Push one frame (users' format; its timestamp, if any, is passed through unread) into
   * the rolling window; once the
   * window is full, the model's corrected frame ({...frame, joints replaced, corrected:
   * true}); before that the input frame itself with corrected: false. For a `next` model
   * the corrected frame is the prediction of the frame after this one.
   */
  async correct(frame) {
    const { features } = frameFeatures(frame, "correct(frame)");
    const out = await this.correctFeatures(features);
    if (out === null) return { ...featuresToFrame(features, frame), corrected: false };
    return { ...featuresToFrame(out, frame), corrected: true };
  }

  /** `correct` on 12 numbers (head xyz, hips xyz, left arm xyz, right arm xyz); null until
   * the window is full. */
  async correctFeatures(features) {
    if (!features || features.length !== NUM_FEATURES) {
      throw new MotionCorrectorError(`correctFeatures: expected ${NUM_FEATURES} numbers, got ${features?.length}`);
    }
    const row = Float32Array.from(features);
    if (!row.every(Number.isFinite)) {
      throw new MotionCorrectorError("correctFeatures: expected finite numbers");
    }
    this._window.push(row);
    if (this._window.length > this.sequenceLength) this._window.shift();
    if (!this.ready) return null;
    return this.predictWindow(this._window);
  }

  /** One model call (batch 1) on a window of rows of 12 (any length >= 1); the 12 outputs.
   * `timed`: record its latency. Calls run one at a time in call order. */
  predictWindow(rows, { timed = true } = {}) {
    const run = async () => {
      const L = rows.length;
      const data = new Float32Array(L * NUM_FEATURES);
      rows.forEach((row, i) => data.set(row, i * NUM_FEATURES));
      const t0 = performance.now();
      const input = new this.ort.Tensor("float32", data, [1, L, NUM_FEATURES]);
      const outputs = await this.session.run({ [this.inputName]: input });
      const elapsed = performance.now() - t0;
      if (timed) this._latencies.push(elapsed);
      return Float32Array.from(outputs[this.outputName].data);
    };
    const result = this._queue.then(run);
    this._queue = result.catch(() => {}); // a failed call must not block the next ones
    return result;
  }

  /** Wait for the calls in flight. */
  async idle() {
    await this._queue;
  }

  /** Empty the rolling window (a new session starts); latencies are kept (resetStats). */
  reset() {
    this._window = [];
  }

  resetStats() {
    this._latencies = [];
  }

  /** { count, lastMs, meanMs, medianMs, p95Ms } of the timed calls since resetStats. */
  stats() {
    return latencyStats(this._latencies);
  }

  /** Release the onnxruntime session. */
  async dispose() {
    await this._queue;
    await this.session.release?.();
  }
}
