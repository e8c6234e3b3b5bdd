"""What a change adds to an analysis: the current code against a git revision without it, in turns.

    python benchmarks/bench_analysis_cost.py --baseline REV [--rounds 3] [--n 20] [--data ../shared/data]

    --baseline 6c5aa2d   de-identification (target: at most 20 ms on a printout; the text search 1 s)
    --baseline 4cb78a4   measurements (target: at most 40 ms on a full-size scan)

The baseline revision is checked out into a temporary git worktree. Each round runs one process per
code (baseline, then current), each loading the shipped model and timing `analysis.analyze_and_store`
(classification, quality check, Grad-CAM, measurements, de-identification, store into a temporary
SQLite history) on the same pictures: `--n` Mendeley printouts (the known template) and `--n` pictures
without its frame (other-layout ECGs and non-ECG pictures). Prints the median time per analysis of
each code and the difference. Processes take turns so that the machine's drift falls on both alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WARM_UP = 2  # first analyses of a process build Grad-CAM and warm caches: not timed


def pictures(data: Path, n: int) -> dict[str, list[Path]]:
    sys.path.insert(0, str(REPO))
    from ecg_app.serving.intake import image_files

    printouts = image_files(data / "mendeley-ecg")[:: max(1, 393 // (n + WARM_UP))][: n + WARM_UP]
    others = image_files(data / "other-layout-ecg")[: (n + WARM_UP) // 2]
    others += image_files(data / "non-ecg")[::40][: n + WARM_UP - len(others)]
    return {"printout": printouts, "other picture": others}


def worker(tree: Path, files: dict[str, list[str]]) -> dict[str, list[float]]:
    """Time each analysis with the code of `tree` (its own ecg_app, the current shipped model)."""
    sys.path.insert(0, str(tree))
    import ecg_app
    from ecg_app.analysis import analyze_and_store

    assert Path(ecg_app.__file__).is_relative_to(tree), f"{ecg_app.__file__} is not the code of {tree}"
    from ecg_app.config import Settings
    from ecg_app.store import open_store

    if (tree / "ecg_app" / "serving").is_dir():  # laid out by concern; older commits had one folder
        from ecg_app.serving.classifier import get_classifier
    else:
        from ecg_app.classifier import get_classifier

    classifier = get_classifier(REPO / "model")
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(data_dir=Path(folder), database_url=f"sqlite:///{folder}/h.db")
        with open_store(settings) as store:
            for kind, paths in files.items():
                times[kind] = []
                for k, path in enumerate(paths):
                    data = Path(path).read_bytes()
                    start = time.perf_counter()
                    analyze_and_store(data, Path(path).name, None, store, classifier)
                    if k >= WARM_UP:
                        times[kind].append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", help="a revision without the change (required)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--files", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, json.loads(args.files))))
        return 0
    if not args.baseline:
        parser.error("--baseline is required")

    files = {kind: [str(p) for p in paths] for kind, paths in pictures(args.data, args.n).items()}
    results: dict[str, dict[str, list[float]]] = {"baseline": {}, "current": {}}
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder) / "baseline"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(base), args.baseline],
                       check=True, capture_output=True)  # fmt: skip
        try:
            for round_ in range(args.rounds):
                for name, tree in (("baseline", base), ("current", REPO)):
                    done = subprocess.run(
                        [sys.executable, __file__, "--worker", str(tree), "--files", json.dumps(files)],
                        check=True, capture_output=True, text=True,
                    )  # fmt: skip
                    for kind, values in json.loads(done.stdout.splitlines()[-1]).items():
                        results[name].setdefault(kind, []).extend(values)
                print(f"round {round_ + 1}/{args.rounds} done", flush=True)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], check=False)
    print(f"baseline {args.baseline} against the current code, {args.rounds} rounds in turns:")
    for kind in files:
        before = statistics.median(results["baseline"][kind]) * 1000
        after = statistics.median(results["current"][kind]) * 1000
        count = len(results["current"][kind])
        print(
            f"  {kind:14s} median per analysis {before:7.1f} ms -> {after:7.1f} ms "
            f"(+{after - before:.1f} ms, x{after / before:.2f}; {count} analyses each)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
