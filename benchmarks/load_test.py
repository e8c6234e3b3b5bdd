"""Load test of the dashboard's API: C parallel gradio_client clients make N analyses, each with its PDF.

Run from the repository root (needs the trained model):

    python benchmarks/load_test.py [--analyses 100] [--clients 10]

Starts `ecg-app serve` on 127.0.0.1 (a free port, a temporary data dir, SQLite), then each client (its
own `Client`) takes analyses from a shared counter until N are done: `/analyze` with one of the example
images and varied patient details, then `/report` for its PDF. Bounded: N requests of each kind, each
with a timeout. Afterwards, with the server stopped, it checks that
- no request failed and every PDF starts with `%PDF`;
- the database holds exactly the N analyses the clients got back, with the patient details they sent,
  each complete with its image file (hashing to its digest), thumbnail and Grad-CAM overlay, and the
  image folder holds no other file; SQLite's integrity check passes;
- "database is locked" appears nowhere (responses or server log), and the server logged no traceback.
It prints throughput and latency percentiles and exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests" / "integration")]

from app_server import app_process, has_model, model_dir  # noqa: E402
from store_audit import StoreAudit, audit_store  # noqa: E402

from ecg_app.store import PatientInfo  # noqa: E402
from ecg_app.ui.analyze_tab import EXAMPLES_DIR  # noqa: E402

EXAMPLE_IMAGES = sorted(EXAMPLES_DIR.glob("*.jpg"))
# The Analyze form's choices and what the history records for each.
SEXES = {"Female": "female", "Male": "male", "Other": "other", "Not stated": None}
REQUEST_TIMEOUT_S = 120
LOCKED = "database is locked"


def expected_patient(fields: dict) -> PatientInfo:
    """What the history should record for these form fields (blank means absent)."""
    age = int(fields["age"]) if fields["age"] else None
    return PatientInfo(fields["patient_name"], age, SEXES[fields["sex"]], fields["notes"] or None)


def job_fields(i: int) -> dict:
    """The `/analyze` inputs of analysis `i`: the examples in turn, patient details varied (some blank)."""
    return {
        "image": EXAMPLE_IMAGES[i % len(EXAMPLE_IMAGES)],
        "patient_name": f"Load {i:04d}",
        "age": "" if i % 7 == 3 else str(18 + (i * 7) % 80),
        "sex": list(SEXES)[i % len(SEXES)],
        "notes": f"load test, analysis {i}" if i % 2 else "",
    }


@dataclass
class LoadResult:
    analyses: int
    clients: int
    wall_s: float = 0.0
    latencies: list[float] = field(default_factory=list)  # analyze + PDF, per completed analysis
    analyze_s: list[float] = field(default_factory=list)
    report_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    bad_pdfs: list[str] = field(default_factory=list)
    returned: dict[str, int] = field(default_factory=dict)  # analysis id -> job number
    locked: int = 0  # "database is locked" in error messages and the server log
    server_tracebacks: int = 0
    audit: StoreAudit | None = None

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.wall_s if self.wall_s else 0.0

    def failures(self) -> list[str]:
        """Everything that makes the run a failure; empty for a clean run."""
        failures = self.errors[:10] + [f"not a PDF: {name}" for name in self.bad_pdfs[:10]]
        if len(self.latencies) != self.analyses:
            failures.append(f"{len(self.latencies)} of {self.analyses} analyses completed")
        if self.locked:
            failures.append(f"'{LOCKED}' seen {self.locked} times")
        if self.server_tracebacks:
            failures.append(f"{self.server_tracebacks} tracebacks in the server log")
        if self.audit is None:
            return [*failures, "store not audited"]
        failures += self.audit.problems[:10]
        stored = set(self.audit.analyses)
        if len(stored) != self.analyses or stored != set(self.returned):
            failures.append(
                f"{len(stored)} analyses stored, {len(self.returned)} returned, expected {self.analyses}; "
                f"{len(stored ^ set(self.returned))} differ"
            )
        for key in stored & set(self.returned):
            sent, analysis = job_fields(self.returned[key]), self.audit.analyses[key]
            expected = expected_patient(sent)
            if (analysis.patient, analysis.original_filename) != (expected, sent["image"].name):
                failures.append(f"analysis {key} stored {analysis.patient} instead of {expected}")
        return failures

    def summary(self) -> str:
        def stats(values: list[float]) -> str:
            if not values:
                return "none"
            p50, p90, p99 = np.percentile(values, [50, 90, 99])
            return f"p50 {p50:6.2f} s  p90 {p90:6.2f} s  p99 {p99:6.2f} s  max {max(values):6.2f} s"

        stored = "not audited" if self.audit is None else str(len(self.audit.analyses))
        return "\n".join(
            [
                f"ecg-app load test: {self.analyses} analyses from {self.clients} parallel clients "
                f"({os.cpu_count()} CPU cores, model {model_dir()})",
                f"  completed {len(self.latencies)}, errors {len(self.errors)}, "
                f"bad PDFs {len(self.bad_pdfs)}, stored {stored}, '{LOCKED}' {self.locked}, "
                f"server tracebacks {self.server_tracebacks}",
                f"  wall {self.wall_s:.1f} s, throughput {self.throughput:.2f} analyses/s "
                "(each with its PDF)",
                f"  analyze + PDF  {stats(self.latencies)}",
                f"  analyze        {stats(self.analyze_s)}",
                f"  PDF            {stats(self.report_s)}",
            ]
        )


def _client_loop(client, jobs: queue.SimpleQueue, result: LoadResult, lock: threading.Lock) -> None:
    """One client: take job numbers until none are left; analyze, then fetch and check the PDF."""
    from gradio_client import handle_file

    while True:
        try:
            i = jobs.get_nowait()
        except queue.Empty:
            return
        fields = job_fields(i)
        try:
            t0 = time.perf_counter()
            analysis = client.submit(
                **{**fields, "image": handle_file(str(fields["image"]))}, api_name="/analyze"
            ).result(timeout=REQUEST_TIMEOUT_S)
            t1 = time.perf_counter()
            pdf = Path(client.submit(analysis["id"], api_name="/report").result(timeout=REQUEST_TIMEOUT_S))
            t2 = time.perf_counter()
            is_pdf = pdf.read_bytes()[:4] == b"%PDF"
        except Exception as exc:  # noqa: BLE001 - every failure is counted, none may stop the others
            with lock:
                result.errors.append(f"analysis {i}: {type(exc).__name__}: {exc}")
            continue
        with lock:
            result.returned[analysis["id"]] = i
            result.latencies.append(t2 - t0)
            result.analyze_s.append(t1 - t0)
            result.report_s.append(t2 - t1)
            if not is_pdf:
                result.bad_pdfs.append(f"analysis {i} ({pdf.name})")


def run_load_test(data_dir: Path, analyses: int = 100, clients: int = 10) -> LoadResult:
    """Serve from `data_dir` (fresh), run the load, stop the server, then audit the store and its log."""
    from gradio_client import Client

    result = LoadResult(analyses=analyses, clients=clients)
    jobs: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in range(analyses):
        jobs.put(i)
    lock = threading.Lock()
    with tempfile.TemporaryDirectory(prefix="ecg-load-") as downloads, app_process(data_dir) as app:
        # Connected before the clock starts: the figures are about the analyses, not the handshakes.
        connected = [Client(app.url, verbose=False, download_files=downloads) for _ in range(clients)]
        threads = [
            threading.Thread(target=_client_loop, args=(client, jobs, result, lock), daemon=True)
            for client in connected
        ]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()  # bounded: every request has a timeout
        result.wall_s = time.perf_counter() - start
    log = app.log.read_text(errors="replace")
    result.locked = log.lower().count(LOCKED) + sum(LOCKED in error.lower() for error in result.errors)
    result.server_tracebacks = log.count("Traceback (most recent call last)")
    result.audit = audit_store(data_dir)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--analyses", type=int, default=100)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--keep", type=Path, help="use this (new) data dir and keep it, with the server log")
    args = parser.parse_args()
    if not has_model():
        print(f"no trained model in {model_dir()}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ecg-load-data-") as tmp:
        result = run_load_test(args.keep or Path(tmp) / "data", args.analyses, args.clients)
    print(result.summary())
    failures = result.failures()
    for failure in failures:
        print("FAIL:", failure)
    print("FAILED" if failures else "OK: every analysis stored whole, every PDF valid, no errors")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
