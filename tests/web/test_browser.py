"""The web page (web/) in headless Chromium: onnxruntime-web matches onnxruntime in Python.

A tiny motion run is trained and exported into a temporary folder with a short synthetic
session; ``web/serve.py`` serves web/ at ``/`` and that folder at ``/data/``; a Node script
(``web/tests/browser_check.mjs``, playwright-core driving Debian's ``/usr/bin/chromium``)
opens the page, calls ``window.framecast.runAll()`` and saves a screenshot. The predictions
are compared with onnxruntime's on the same windows; bad inputs must show an error on the
page.

Needs ``/usr/bin/chromium`` (``apt-get install -y chromium chromium-driver``), Node and
``web/node_modules`` (``make web-deps``); without them the tests are skipped, except when
``CI`` is set, where a missing piece is a failure.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from framecast.data.motion import (
    JOINTS,
    NUM_FEATURES,
    load_sessions,
    save_sessions,
    synthetic_sessions,
)
from framecast.export.onnx import INPUT_NAME, OUTPUT_NAME

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "web"
CHROMIUM = Path("/usr/bin/chromium")
CHECK_SCRIPT = WEB / "tests" / "browser_check.mjs"
SESSION_FRAMES = 30
TOLERANCE = 1e-4


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _require(condition: bool, reason: str) -> None:
    """Skip with ``reason`` when ``condition`` is false; fail instead under CI."""
    if condition:
        return
    if _in_ci():
        pytest.fail(f"CI is set and the browser test cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser_ready() -> str:
    """Path of ``node``, once Chromium, Node and web/node_modules are checked."""
    _require(
        CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK),
        f"{CHROMIUM} is missing: install it with `apt-get install -y chromium chromium-driver` "
        "(or `make web-deps` as root)",
    )
    node = shutil.which("node")
    _require(
        node is not None,
        "node is missing: install Node.js (>= 18, e.g. `apt-get install -y nodejs npm`), "
        "then `make web-deps`",
    )
    _require(
        (WEB / "node_modules" / "playwright-core" / "package.json").is_file()
        and (WEB / "node_modules" / "onnxruntime-web" / "dist" / "ort.wasm.min.mjs").is_file(),
        "web/node_modules is not installed: run `make web-deps` "
        "(or `npm ci --prefix web --no-audit --no-fund`)",
    )
    pytest.importorskip("onnxruntime")
    return node


@pytest.fixture(scope="session")
def web_data(tiny_motion_run, tmp_path_factory) -> Path:
    """A folder with motion_correction.onnx/.json exported from the tiny motion run
    (tests/conftest.py) and session.json (one synthetic session of SESSION_FRAMES frames)."""
    from framecast.export.onnx import export_onnx

    data = tmp_path_factory.mktemp("web_data")
    result = export_onnx(tiny_motion_run, data / "motion_correction.onnx")
    assert result.max_diff <= TOLERANCE and result.opset == 12  # the users' guide's opset
    old = export_onnx(tiny_motion_run, data / "motion_correction_opset11.onnx", opset=11)
    assert old.max_diff <= TOLERANCE
    (session,) = synthetic_sessions(1, length=2 * SESSION_FRAMES, seed=11)
    session = dataclasses.replace(
        session,
        raw=session.raw[:SESSION_FRAMES],
        clean=session.clean[:SESSION_FRAMES],
        timestamps=session.timestamps[:SESSION_FRAMES],
    )
    save_sessions([session], data / "session.json")
    return data


@pytest.fixture(scope="module")
def base_url(web_data):
    """web/ at / and the data folder at /data/, on 127.0.0.1 and a free port."""
    spec = importlib.util.spec_from_file_location("framecast_web_serve", WEB / "serve.py")
    serve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(serve)
    server, url = serve.start_server(WEB, data_dir=web_data)
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()


def run_page(node: str, url: str, screenshot: Path, *extra: str) -> dict:
    """Run browser_check.mjs on ``url``; its JSON report."""
    proc = subprocess.run(
        [node, str(CHECK_SCRIPT), url, str(screenshot), *extra],
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=240,
    )
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and lines, (
        f"browser_check.mjs exited {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\n"
        f"stderr:\n{proc.stderr[-4000:]}"
    )
    return json.loads(lines[-1])


def onnxruntime_predictions(model: Path, raw: np.ndarray, sequence_length: int) -> np.ndarray:
    """onnxruntime (Python, CPU) on every window of ``raw``, batch 1, in order."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    out = []
    for end in range(sequence_length - 1, len(raw)):
        window = np.ascontiguousarray(raw[None, end + 1 - sequence_length : end + 1], np.float32)
        (prediction,) = session.run([OUTPUT_NAME], {INPUT_NAME: window})
        out.append(prediction[0])
    return np.asarray(out, dtype=np.float64)


def distinct_colours(png: Path) -> int:
    from PIL import Image

    with Image.open(png) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    return len(colours or [])


def test_page_matches_onnxruntime_and_draws(browser_ready, web_data, base_url, tmp_path):
    shot = web_data / "framecast_web.png"
    url = f"{base_url}index.html?model=data/motion_correction.onnx&session=data/session.json"
    report = run_page(browser_ready, url, shot)
    assert report["status"] == "ready", report
    assert report["page_errors"] == [], report["page_errors"]
    assert report["external_requests"] == [], "the page must load nothing from the internet"
    assert report["failed_requests"] == [], report["failed_requests"]
    assert not [line for line in report["console"] if line.startswith("error")], report["console"]
    assert not report["error_box"]["visible"]
    # the feature-group select is filled from app.js's JOINTS, which must match Python's
    assert report["group_options"] == list(JOINTS), report["group_options"]

    meta = json.loads((web_data / "motion_correction.json").read_text())
    length = meta["sequence_length"]
    # Each Step runs the model once per frame from the first full window; Play runs to the end.
    steps = report["playback"]["steps"]
    assert steps >= length, f"browser_check.mjs steps {steps} < sequence_length {length}"
    assert report["playback"]["after_steps"] == {
        "frame": steps,
        "calls": steps - length + 1,
    }, report["playback"]
    assert report["playback"]["after_play"] == {
        "frame": SESSION_FRAMES,
        "calls": SESSION_FRAMES - length + 1,
    }, report["playback"]
    (session,) = load_sessions(web_data / "session.json")
    want = onnxruntime_predictions(web_data / "motion_correction.onnx", session.raw, length)
    got = np.asarray(report["predictions"], dtype=np.float64)
    assert got.shape == want.shape == (SESSION_FRAMES - length + 1, NUM_FEATURES)
    diff = float(np.abs(got - want).max())
    latencies = np.asarray(report["latencies_ms"], dtype=np.float64)
    print(
        f"\nonnxruntime-web (WASM, 1 thread) vs onnxruntime (Python): {len(got)} windows of "
        f"{length} frames, max abs diff {diff:.3e}; latency per call median "
        f"{np.median(latencies):.3f} ms, p95 {np.percentile(latencies, 95):.3f} ms "
        f"({report['backend']})"
    )
    assert diff <= TOLERANCE

    assert latencies.shape == (len(got),)
    assert np.all(np.isfinite(latencies)) and np.all(latencies > 0), latencies
    assert report["latency_text"]["count"] == str(len(got))
    assert report["latency_text"]["median"].endswith(" ms")

    check_module_api(report["module"], want, length, session.raw)

    assert shot.is_file() and shot.stat().st_size > 10_000
    assert distinct_colours(shot) >= 20, "the screenshot looks blank"
    kept = tmp_path / "framecast_web.png"
    shutil.copyfile(shot, kept)
    print(f"screenshot: {kept}")


def check_module_api(module: dict, want: np.ndarray, length: int, raw: np.ndarray) -> None:
    """What browser_check.mjs's moduleCheck reports: web/motion-corrector.js used as an app
    would (users' collector frames through correct()), checked against onnxruntime."""
    assert module is not None, "browser_check.mjs did not run the module check"
    assert (module["input_name"], module["output_name"]) == (INPUT_NAME, OUTPUT_NAME)
    assert module["sequence_length"] == length and module["target"] in ("next", "denoise")
    steps = module["steps"]
    assert len(steps) == SESSION_FRAMES
    # the rolling window: pass-through until sequence_length frames were seen
    assert [s["corrected"] for s in steps] == [False] * (length - 1) + [True] * (
        SESSION_FRAMES - length + 1
    )
    assert [s["window_size"] for s in steps] == [min(i + 1, length) for i in range(len(steps))]
    assert all(s["timestamp_kept"] and s["hips_is_object"] and s["head_is_list"] for s in steps)
    passed = np.asarray([s["features"] for s in steps[: length - 1]], dtype=np.float64)
    assert np.array_equal(passed, raw[: length - 1].astype(np.float64))
    got = np.asarray([s["features"] for s in steps[length - 1 :]], dtype=np.float64)
    diff = float(np.abs(got - want).max())
    print(f"motion-corrector.js correct() vs onnxruntime (Python): max abs diff {diff:.3e}")
    assert diff <= TOLERANCE
    stats = module["stats"]
    latencies = np.asarray(module["latencies"], dtype=np.float64)
    assert stats["count"] == len(latencies) == SESSION_FRAMES - length + 1
    assert np.all(latencies > 0) and stats["lastMs"] == latencies[-1]
    assert stats["medianMs"] == np.sort(latencies)[int(np.ceil(0.5 * len(latencies))) - 1]
    assert stats["p95Ms"] == np.sort(latencies)[int(np.ceil(0.95 * len(latencies))) - 1]
    assert abs(stats["meanMs"] - latencies.mean()) < 1e-9
    assert module["after_reset"] == {"window_size": 0, "ready": False, "count": len(latencies)}
    assert module["after_reset_stats"] == 0
    bad = module["bad_frame"]
    assert bad and bad["name"] == "MotionCorrectorError" and bad["module_error"], bad
    assert "head must be a list of 3 numbers" in bad["message"]
    base = 1_796_027_824.0  # 2026-11-30T08:37:04 UTC, as Python's loader reads it
    assert np.allclose(
        module["timestamps"], [base, base + 0.25, base + 0.25, base + 0.25, base + 0.25, 12.5]
    )


def test_page_accepts_the_users_collector_format(browser_ready, web_data, base_url, tmp_path):
    """ISO-8601 timestamps (datetime.now().isoformat()) and {x, y, z} joints load on the page
    like the Python loader reads them."""
    (session,) = load_sessions(web_data / "session.json")
    frames = []
    for i, row in enumerate(session.raw.tolist()):
        frames.append(
            {
                "timestamp": f"2026-11-30T08:37:{4 + i // 30:02d}.{(i % 30) * 33333:06d}",
                "head": row[0:3],
                "hips": dict(zip("xyz", row[3:6])),
                "left_arm": row[6:9],
                "right_arm": dict(zip("xyz", row[9:12])),
            }
        )
    (web_data / "users.json").write_text(json.dumps([frames]))
    (users,) = load_sessions(web_data / "users.json")
    assert np.array_equal(users.raw, session.raw)
    url = f"{base_url}index.html?model=data/motion_correction.onnx&session=data/users.json"
    report = run_page(browser_ready, url, tmp_path / "users.png", "--no-run")
    assert report["status"] == "ready", report
    assert report["page_errors"] == [], report["page_errors"]


BAD_INPUTS = {
    # name: (file written into the data folder or None, URL parameters, expected message part)
    "malformed-json": (
        ("bad_json.json", '[[{"timestamp": 0.0, "head": [1, 2'),
        "session=data/bad_json.json",
        "malformed JSON",
    ),
    "wrong-feature-length": (
        (
            "bad_length.json",
            json.dumps(
                [
                    [
                        {
                            "timestamp": 0.0,
                            "head": [1.0, 2.0],
                            "hips": [0.0, 0.0, 0.0],
                            "left_arm": [0.0, 0.0, 0.0],
                            "right_arm": [0.0, 0.0, 0.0],
                        }
                    ]
                ]
            ),
        ),
        "session=data/bad_length.json",
        'head must be a list of 3 numbers or an {"x", "y", "z"} object, got length 2',
    ),
    "missing-model": (
        None,
        "model=data/missing.onnx&session=data/session.json",
        "model data/missing.onnx: HTTP 404",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_show_an_error_on_the_page(browser_ready, web_data, base_url, tmp_path, case):
    file, query, expected = BAD_INPUTS[case]
    if file is not None:
        (web_data / file[0]).write_text(file[1], encoding="utf-8")
    if "model=" not in query:
        query = f"model=data/motion_correction.onnx&{query}"
    report = run_page(
        browser_ready, f"{base_url}index.html?{query}", tmp_path / "error.png", "--no-run"
    )
    print(f"\n{case}: {report['status']}")
    assert report["status"].startswith("error: "), report
    assert expected in report["status"]
    assert report["error_box"]["visible"], "the error must be shown on the page"
    assert expected in report["error_box"]["text"]
    # The failure is reported on the page, not thrown uncaught, and no model call was timed.
    assert report["page_errors"] == [], report["page_errors"]
    assert report["latency_text"]["count"] == "0", report["latency_text"]
    assert (tmp_path / "error.png").is_file()


def test_page_runs_the_opset_11_export(browser_ready, web_data, base_url, tmp_path):
    """--opset 11 (the lowest torch writes this graph at) stays selectable: the page runs it
    and agrees with onnxruntime as for the default opset 12."""
    model = "data/motion_correction_opset11.onnx"
    url = f"{base_url}index.html?model={model}&session=data/session.json"
    report = run_page(browser_ready, url, tmp_path / "opset11.png")
    assert report["status"] == "ready" and report["page_errors"] == [], report
    length = json.loads((web_data / "motion_correction_opset11.json").read_text())[
        "sequence_length"
    ]
    (session,) = load_sessions(web_data / "session.json")
    want = onnxruntime_predictions(web_data / "motion_correction_opset11.onnx", session.raw, length)
    got = np.asarray(report["predictions"], dtype=np.float64)
    assert got.shape == want.shape
    assert float(np.abs(got - want).max()) <= TOLERANCE
