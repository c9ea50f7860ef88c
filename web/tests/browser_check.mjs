// Drive the framecast page in Debian's headless Chromium (playwright-core, no bundled browser).
//
//   node web/tests/browser_check.mjs URL SCREENSHOT.png [--no-run] [--timeout-ms N]
//            [--executable /usr/bin/chromium]
//
// Opens URL and waits until the page reports `document.body.dataset.status` other than
// "loading". Then, unless --no-run or the page reports an error: clicks Step STEPS times and
// Play until the session ends (reported as `playback`: the steps clicked and the frame and
// call counts after the steps and after playing), and calls
// `window.framecast.runAll()`, then exercises the importable module (motion-corrector.js)
// the way an app would (`module`, see moduleCheck below). Saves a screenshot and prints one
// JSON object on stdout:
//   { status, error_box: {visible, text}, playback, predictions, latencies_ms, module,
//     backend, latency_text, group_options, console, page_errors, failed_requests,
//     external_requests }
// Exit status 0 when that JSON was printed (the caller judges it), 2 on usage errors,
// 1 when the browser could not be driven.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

function parseArgs(argv) {
  const args = { run: true, timeoutMs: 60000, executable: "/usr/bin/chromium", positional: [] };
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i];
    if (a === "--no-run") args.run = false;
    else if (a === "--timeout-ms") args.timeoutMs = Number(argv[(i += 1)]);
    else if (a === "--executable") args.executable = argv[(i += 1)];
    else args.positional.push(a);
  }
  if (args.positional.length !== 2 || !(args.timeoutMs > 0)) {
    console.error("usage: browser_check.mjs URL SCREENSHOT.png [--no-run] [--timeout-ms N]");
    process.exit(2);
  }
  [args.url, args.screenshot] = args.positional;
  return args;
}

const STEPS = 6; // single steps clicked before playing
const args = parseArgs(process.argv.slice(2));
const pageOrigin = new URL(args.url).origin;
// A fresh profile for every run: no cache, no state from a previous run.
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "framecast-chromium-"));
const report = {
  status: null,
  error_box: null,
  playback: null,
  predictions: null,
  latencies_ms: null,
  module: null,
  backend: null,
  latency_text: null,
  group_options: null,
  console: [],
  page_errors: [],
  failed_requests: [],
  external_requests: [],
};

/**
 * Runs in the page: the module's API as an app (e.g. an Angular service) uses it. Loads a
 * second MotionCorrector on the page's model, feeds the page's session frame by frame in
 * the users' collector format (ISO-8601 timestamps without offset, hips as {x, y, z}, the
 * other joints as [x, y, z]) through correct(), and reports what came back, the stats,
 * reset/resetStats, a bad frame's error and a few parsed timestamps.
 */
async function moduleCheck() {
  const mod = await import("./motion-corrector.js");
  const ort = await import("./node_modules/onnxruntime-web/dist/ort.wasm.min.mjs");
  const params = new URLSearchParams(window.location.search);
  const corrector = await mod.MotionCorrector.load({ model: params.get("model"), ort });
  const [frames] = await mod.fetchJson(params.get("session"), "session file");
  const start = Date.UTC(2026, 10, 30, 8, 37, 4);
  const steps = [];
  for (let i = 0; i < frames.length; i += 1) {
    const f = frames[i];
    const frame = {
      timestamp: new Date(start + (i * 1000) / 30).toISOString().replace("Z", ""),
      head: f.head,
      hips: { x: f.hips[0], y: f.hips[1], z: f.hips[2] },
      left_arm: f.left_arm,
      right_arm: f.right_arm,
    };
    const out = await corrector.correct(frame);
    steps.push({
      corrected: out.corrected,
      timestamp_kept: out.timestamp === frame.timestamp,
      hips_is_object: !Array.isArray(out.hips) && typeof out.hips.x === "number",
      head_is_list: Array.isArray(out.head) && out.head.length === 3,
      features: [...out.head, out.hips.x, out.hips.y, out.hips.z, ...out.left_arm, ...out.right_arm],
      window_size: corrector.windowSize,
    });
  }
  const stats = corrector.stats();
  const latencies = corrector.latencies;
  corrector.reset();
  const afterReset = { window_size: corrector.windowSize, ready: corrector.ready, count: corrector.stats().count };
  corrector.resetStats();
  const afterResetStats = corrector.stats().count;
  let badFrame = null;
  try {
    await corrector.correct({ head: [1, 2], hips: [0, 0, 0], left_arm: [0, 0, 0], right_arm: [0, 0, 0] });
  } catch (error) {
    badFrame = { name: error.name, module_error: error instanceof mod.MotionCorrectorError, message: error.message };
  }
  const timestamps = [
    "2026-11-30T08:37:04",
    "2026-11-30T08:37:04.250000",
    "2026-11-30T09:37:04.250000+01:00",
    "2026-11-30T08:37:04.250Z",
    new Date(Date.UTC(2026, 10, 30, 8, 37, 4, 250)),
    12.5,
  ].map((t) => mod.parseTimestamp(t));
  await corrector.dispose();
  return {
    sequence_length: corrector.sequenceLength,
    target: corrector.target,
    input_name: corrector.inputName,
    output_name: corrector.outputName,
    steps,
    stats,
    latencies,
    after_reset: afterReset,
    after_reset_stats: afterResetStats,
    bad_frame: badFrame,
    timestamps,
  };
}

let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: args.executable,
    headless: true,
    viewport: { width: 1280, height: 720 },
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(args.timeoutMs);
  page.on("console", (msg) => report.console.push(`${msg.type()}: ${msg.text()}`));
  page.on("pageerror", (error) => report.page_errors.push(String(error)));
  page.on("requestfailed", (req) =>
    report.failed_requests.push(`${req.url()} (${req.failure()?.errorText ?? "failed"})`),
  );
  page.on("request", (req) => {
    // The page must load nothing from outside the local server.
    const url = req.url();
    if (!url.startsWith(pageOrigin) && !url.startsWith("data:") && !url.startsWith("blob:")) {
      report.external_requests.push(url);
    }
  });

  await page.goto(args.url, { waitUntil: "load" });
  await page.waitForFunction(() => {
    const status = document.body?.dataset.status;
    return status && status !== "loading";
  });
  report.status = await page.evaluate(() => document.body.dataset.status);

  if (args.run && report.status === "ready") {
    // The controls a user has: a few single steps, then play to the end of the session.
    const counters = () =>
      page.evaluate(() => ({
        frame: Number(document.getElementById("frame").textContent.match(/\d+/)?.[0] ?? -1),
        calls: Number(document.getElementById("lat-count").textContent),
      }));
    for (let i = 0; i < STEPS; i += 1) {
      await page.click("#step");
      // a step runs the model asynchronously: wait until the frame counter moved
      await page.waitForFunction(
        (n) => document.getElementById("frame").textContent.startsWith(`frame ${n} `),
        i + 1,
      );
    }
    report.playback = { steps: STEPS, after_steps: await counters() };
    await page.click("#play");
    await page.waitForFunction(() => {
      const [frame, total] = document.getElementById("frame").textContent.match(/\d+/g) ?? [];
      return frame && frame === total && document.getElementById("play").textContent.includes("Play");
    });
    report.playback.after_play = await counters();
    const result = await page.evaluate(() => window.framecast.runAll());
    report.predictions = result.predictions;
    report.latencies_ms = result.latencies_ms;
    report.module = await page.evaluate(moduleCheck);
    report.status = await page.evaluate(() => document.body.dataset.status);
  }
  report.error_box = await page.evaluate(() => {
    const box = document.getElementById("error");
    const style = window.getComputedStyle(box);
    const rect = box.getBoundingClientRect();
    return {
      visible: !box.hidden && style.display !== "none" && rect.width > 0 && rect.height > 0,
      text: box.textContent,
    };
  });
  report.backend = await page.evaluate(() => document.getElementById("backend").textContent);
  report.latency_text = await page.evaluate(() =>
    Object.fromEntries(
      ["last", "median", "p95", "count"].map((k) => [
        k,
        document.getElementById(`lat-${k}`).textContent,
      ]),
    ),
  );
  report.group_options = await page.evaluate(() =>
    Array.from(document.getElementById("group").options, (o) => o.value),
  );
  fs.mkdirSync(path.dirname(path.resolve(args.screenshot)), { recursive: true });
  await page.screenshot({ path: args.screenshot, fullPage: true });
  process.stdout.write(`${JSON.stringify(report)}\n`);
} catch (error) {
  report.page_errors.push(`browser_check: ${error.stack ?? error}`);
  process.stdout.write(`${JSON.stringify(report)}\n`);
  process.exitCode = 1;
} finally {
  if (context) await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
