"""Lean serving: `ecg-app predict` on a full-size scan from a cold start, per-image time in a batch and
peak memory, for this checkout against other commits (the seed pipeline by default) checked out as git
worktrees, all timed in turns in one run; and the installed size of a serving install against one with
the `train` extra.

Every figure is a whole process: cold start is the wall time of `ecg-app predict SCAN` (imports, model
load, one prediction), peak memory that process's maximum resident set; per-image time is the median of
`--repeats` rounds of a batch of `--batch` scans after a warm-up, in a process of its own. Targets
(lean-serving issue): cold start <= 0.5x the seed pipeline's, per image <= 1.0x, peak memory <= 0.7x.

    python benchmarks/bench_serving.py --data ../shared/data [--baseline 680a26a --baseline 2db5c77]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import cv2
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
SEED_COMMIT = "680a26a"  # the first commit that shipped a model: the seed pipeline
FULL_SIZE = (2213, 1572)
# Run in a process whose sys.path starts with a checkout, so that checkout's ecg_app is the one used.
PER_IMAGE = """
import json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
if (Path(sys.argv[1]) / "ecg_app" / "serving").is_dir():  # laid out by concern; older commits: one folder
    from ecg_app.serving.classifier import Classifier
    from ecg_app.serving.intake import load_image
else:
    from ecg_app.classifier import Classifier
    from ecg_app.intake import load_image
images = [load_image(path) for path in sys.argv[4:]]
classifier = Classifier(sys.argv[1] + "/model")
classifier.predict_batch(images[:2])
rounds = []
for _ in range(int(sys.argv[2])):
    start = time.perf_counter()
    classifier.predict_batch(images, batch_size=int(sys.argv[3]))
    rounds.append((time.perf_counter() - start) / len(images))
print(json.dumps({"per_image_ms": 1000 * statistics.median(rounds)}))
"""
# The whole predict process of a checkout; it ends by printing its peak resident set.
COLD = """
import resource, sys
sys.path.insert(0, sys.argv[1])
from ecg_app.cli import main
code = main(sys.argv[2:])
print(f"peak_kb {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", flush=True)
sys.exit(code)
"""


def cold_start(checkout: Path, scan: Path) -> tuple[float, float]:
    """(seconds, peak resident MB) of one whole `ecg-app predict SCAN` process of this checkout."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", COLD, str(checkout), "predict", "--model", str(checkout / "model"), str(scan)],
        cwd=checkout,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    seconds = time.perf_counter() - start
    peaks = re.findall(r"peak_kb (\d+)", done.stdout)
    if not peaks:
        raise RuntimeError(f"{checkout}: {done.stderr[-1500:]}")
    return seconds, int(peaks[-1]) / 1024


def per_image_ms(checkout: Path, scans: list[Path], repeats: int, batch_size: int) -> float:
    done = subprocess.run(
        [sys.executable, "-c", PER_IMAGE, str(checkout), str(repeats), str(batch_size), *map(str, scans)],
        cwd=checkout,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])["per_image_ms"]


def installed_mb(name: str, extras: tuple[str, ...] = ()) -> float:
    """Size on disk of a distribution and everything it requires (with these extras), as installed here."""
    seen: set[str] = set()
    total = 0
    todo = [(name, set(extras))]
    while todo:
        current, wanted = todo.pop()
        key = canonicalize_name(current)
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(current)
        except metadata.PackageNotFoundError:
            continue
        total += sum(f.size or 0 for f in dist.files or [])
        for line in dist.requires or []:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": extra}) for extra in wanted or {""}):
                todo.append((requirement.name, set(requirement.extras)))
    return total / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--baseline", action="append", help=f"commit to compare (default {SEED_COMMIT})")
    parser.add_argument("--rounds", type=int, default=5, help="cold starts per pipeline, in turns")
    parser.add_argument("--batch", type=int, default=16, help="scans in the per-image batch")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    folder = Path(args.data) / "mendeley-ecg"
    originals = sorted(folder.rglob("*.jpg"))[: args.batch]
    with tempfile.TemporaryDirectory() as scratch:
        scans = []
        for k, path in enumerate(originals):  # full size, as the scanner writes them (shared copies are half)
            page = cv2.imread(str(path))
            scans.append(Path(scratch) / f"scan-{k}.jpg")
            cv2.imwrite(str(scans[-1]), cv2.resize(page, FULL_SIZE, interpolation=cv2.INTER_CUBIC))
        checkouts = {}
        for commit in args.baseline or [SEED_COMMIT]:
            where = Path(scratch) / f"at-{commit}"
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "add", "-f", "--detach", str(where), commit],
                check=True,
                capture_output=True,
            )
            checkouts[commit] = where
        checkouts["this checkout"] = REPO
        try:
            cold: dict[str, list[float]] = {name: [] for name in checkouts}
            peaks: dict[str, list[float]] = {name: [] for name in checkouts}
            for _ in range(args.rounds):
                for name, checkout in checkouts.items():
                    seconds, peak = cold_start(checkout, scans[0])
                    cold[name].append(seconds)
                    peaks[name].append(peak)
            batch = {
                name: per_image_ms(checkout, scans, args.repeats, args.batch)
                for name, checkout in checkouts.items()
            }
        finally:
            for commit in args.baseline or [SEED_COMMIT]:
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(checkouts[commit])],
                    capture_output=True,
                )
    base = next(iter(checkouts))
    heads = ("cold start s", "ratio", "per image ms", "ratio", "peak MB", "ratio")
    print(f"{'pipeline':14s}", *(f"{h:>12s}" for h in heads))
    for name in checkouts:
        row = [statistics.median(cold[name]), batch[name], statistics.median(peaks[name])]
        ratios = [
            row[0] / statistics.median(cold[base]),
            row[1] / batch[base],
            row[2] / statistics.median(peaks[base]),
        ]
        cells = (
            f"{row[0]:.2f}",
            f"{ratios[0]:.2f}",
            f"{row[1]:.1f}",
            f"{ratios[1]:.2f}",
            f"{row[2]:.0f}",
            f"{ratios[2]:.2f}",
        )
        print(f"{name:14s}", *(f"{c:>12s}" for c in cells))
    print(f"(ratios against {base}; medians of {args.rounds} cold starts, {args.repeats} batches)")
    serving, training = installed_mb("ecg-app"), installed_mb("ecg-app", ("train",))
    print(f"installed size: serving {serving:.0f} MB; with the train extra {training:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
