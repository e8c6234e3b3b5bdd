"""Dashboard performance: start-up, Analyze round trip, and opening History with 10,000 analyses.

Run from the repository root (needs the trained model; Chromium for the browser figure):

    python benchmarks/bench_app.py [--runs 20] [--history-rows 10000]

Figures (medians) and their targets:
- app start to ready (`ecg-app serve` until it answers HTTP), target <= 20 s; and app start to the
  first result (ready, then one analysis and its PDF through gradio_client), which shows what the
  first user waits for while the background part of the warm-up (`ui.app.finish_warm_up`) may still run;
- Analyze round trip through gradio_client: `analyze` (upload, inference, storage) + `report` (PDF),
  target <= 1.0 s;
- History tab with 10,000 stored analyses: click on the tab until the first page is shown in Chromium,
  target <= 1 s; also the `history` API call that runs the same query.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ecg_app.config import DEFAULT_MODEL_DIR, Settings  # noqa: E402
from ecg_app.labels import CLASSES  # noqa: E402
from ecg_app.serving.classifier import decide  # noqa: E402
from ecg_app.serving.intake import load_image  # noqa: E402
from ecg_app.store import PatientInfo, open_store  # noqa: E402
from ecg_app.ui.analyze_tab import EXAMPLES_DIR  # noqa: E402

ECG_IMAGE = EXAMPLES_DIR / "MI(19).jpg"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip


def seed_history(data_dir: Path, rows: int) -> float:
    """Store `rows` analyses (one image, varied classes, dates and patients) straight into the store."""
    settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'ecg_app.sqlite3'}")
    data = ECG_IMAGE.read_bytes()
    rgb = load_image(data)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    now = datetime.now(UTC)
    with open_store(settings) as store:
        for i in range(rows):
            probs = rng.dirichlet(np.ones(len(CLASSES)) * 0.3)
            prediction = decide(probs, "bench", 0.5)
            patient = PatientInfo(name=f"Patient {i:05d}", age=int(rng.integers(18, 95)), sex="female")
            store.add(prediction, data, rgb, ECG_IMAGE.name, patient, created_at=now - timedelta(minutes=i))
    return time.perf_counter() - start


def start_server(data_dir: Path, port: int) -> tuple[subprocess.Popen, float, float]:
    """Start `ecg-app serve`; returns the process, its start (`perf_counter`) and the seconds from then
    until it answers HTTP."""
    env = {k: v for k, v in os.environ.items() if k not in ("ECG_APP_USERS", "ECG_APP_DATABASE_URL")}
    env.update(ECG_APP_DATA_DIR=str(data_dir), GRADIO_ANALYTICS_ENABLED="False", PYTHONPATH=str(REPO))
    log = open(data_dir / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ecg_app.cli", "serve", "--port", str(port)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {(data_dir / 'server.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return proc, start, time.perf_counter() - start
        except OSError:
            time.sleep(0.05)


def analyze_once(client) -> tuple[float, float]:
    """One analysis and its PDF, as the Analyze tab asks for them; seconds each took."""
    from gradio_client import handle_file

    t0 = time.perf_counter()
    result = client.predict(image=handle_file(str(ECG_IMAGE)), api_name="/analyze")
    t1 = time.perf_counter()
    pdf = client.predict(result["id"], api_name="/report")
    t2 = time.perf_counter()
    assert Path(pdf).read_bytes().startswith(b"%PDF")
    return t1 - t0, t2 - t1


def first_result(url: str, started: float) -> float:
    """Seconds from `started` (the server process's start) until its first analysis and PDF are back."""
    from gradio_client import Client

    analyze_once(Client(url, verbose=False))
    return time.perf_counter() - started


def bench_analyze(url: str, runs: int) -> dict[str, list[float]]:
    from gradio_client import Client

    client = Client(url, verbose=False)
    times: dict[str, list[float]] = {"analyze": [], "report": [], "total": []}
    for i in range(runs + 2):
        analyze, report = analyze_once(client)
        if i >= 2:  # the first two warm the client's connection and upload path
            times["analyze"].append(analyze)
            times["report"].append(report)
            times["total"].append(analyze + report)
    return times


def bench_history_api(url: str, runs: int) -> list[float]:
    from gradio_client import Client

    client = Client(url, verbose=False)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        client.predict(limit=20, api_name="/history")
        times.append(time.perf_counter() - t0)
    return times


def bench_history_tab(url: str, rows: int, runs: int) -> list[float] | None:
    """Seconds from clicking the History tab until its first page (of `rows`) is on screen."""
    if not CHROMIUM.exists():
        return None
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        for _ in range(runs):
            page.goto(url)
            page.wait_for_selector("#analyze-button")
            t0 = time.perf_counter()
            page.get_by_role("tab", name="History").click()
            page.wait_for_function(
                "(n) => (document.querySelector('#history-page-info') || {}).innerText?.includes('of ' + n)"
                " && document.querySelector('#history-table [data-testid=cell-0-0]')",
                arg=str(rows),
            )
            times.append(time.perf_counter() - t0)
        browser.close()
    return times


def line(name: str, values: list[float] | None, target: float | None = None, unit: str = "s") -> str:
    if not values:
        return f"{name:<48} skipped"
    median = statistics.median(values)
    p90 = sorted(values)[max(0, int(round(0.9 * len(values))) - 1)]
    verdict = "" if target is None else ("  OK" if median <= target else "  OVER TARGET")
    goal = "" if target is None else f"  (target <= {target:g} {unit})"
    return f"{name:<48} median {median:7.3f} {unit}  p90 {p90:7.3f} {unit}  n={len(values)}{goal}{verdict}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--history-rows", type=int, default=10_000)
    parser.add_argument("--port", type=int, default=7877)
    args = parser.parse_args()
    model_dir = Path(os.environ.get("ECG_APP_MODEL_DIR") or DEFAULT_MODEL_DIR)
    if not (model_dir / "model.json").is_file():
        print(f"no trained model in {model_dir}", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="ecg-bench-") as tmp:
        empty_dir, full_dir = Path(tmp) / "empty", Path(tmp) / "full"
        empty_dir.mkdir()
        full_dir.mkdir()

        proc, started, ready = start_server(empty_dir, args.port)
        try:
            url = f"http://127.0.0.1:{args.port}/"
            first = first_result(url, started)
            analyze = bench_analyze(url, args.runs)
        finally:
            proc.terminate()
            proc.wait()

        seeding = seed_history(full_dir, args.history_rows)
        proc, _, ready_full = start_server(full_dir, args.port + 1)
        try:
            url = f"http://127.0.0.1:{args.port + 1}/"
            history_api = bench_history_api(url, args.runs)
            history_tab = bench_history_tab(url, args.history_rows, max(5, args.runs // 4))
        finally:
            proc.terminate()
            proc.wait()

    print(f"ecg-app dashboard benchmark ({os.cpu_count()} CPU cores, model {model_dir})")
    print(line("app start to ready (empty history)", [ready], 20))
    print(line("app start to first analysis + PDF (empty history)", [first]))
    print(line(f"app start to ready ({args.history_rows} analyses)", [ready_full], 20))
    print(line("analyze (upload + inference + storage)", analyze["analyze"]))
    print(line("report (PDF)", analyze["report"]))
    print(line("Analyze round trip: analyze + PDF", analyze["total"], 1.0))
    print(line(f"history API, first page of {args.history_rows}", history_api))
    print(line(f"History tab opens, {args.history_rows} analyses (Chromium)", history_tab, 1.0))
    print(f"(seeding {args.history_rows} analyses took {seeding:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
