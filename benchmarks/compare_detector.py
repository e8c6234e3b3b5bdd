"""What the ECG detector changes: Non-ECG calls with the gate alone and with the gate and the detector.

On a split of the model's own `split.csv` (non-ECG recall, other-layout ECGs called Non-ECG, the
detector's closest calls), on rendered ECGs that no network was trained on (`synth_ecg.render_ecg`
with seeds from `--render-seed`; training renders use 1,000,000 + n) and, with `--charts`, on line
charts that are not ECGs (`synth_charts.render_chart`, seeds from `--chart-seed`).

    python benchmarks/compare_detector.py --model model --split val --renders 200 --render-seed 6000000
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from ecg_app.config import DEFAULT_MODEL_DIR
from ecg_app.labels import NON_ECG
from ecg_app.serving.classifier import Classifier
from ecg_app.training import dataset
from ecg_app.training.dataset import model_roots
from ecg_app.training.synth_charts import render_chart
from ecg_app.training.synth_ecg import pick_family, render_ecg

# Printed ECGs and strips, as opposed to monitor screens and bare line plots.
PRINTOUT_FAMILIES = {"12lead_3x4", "12lead_6x2", "12lead_column", "rhythm_strip", "closeup"}


def non_ecg_calls(
    classifier: Classifier, images: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(called Non-ECG by softmax + gate, called Non-ECG by softmax + gate + detector, P(ECG))."""
    features, probs = classifier.embed_proba(images)
    p_ecg = classifier.detect(images)
    if p_ecg is None:
        raise SystemExit(f"{classifier.model_dir} has no ECG detector (ecg-app model fit-detector)")
    gate = np.array([p.label == NON_ECG for p in classifier.decide_batch(features, probs)])
    both = np.array([p.label == NON_ECG for p in classifier.decide_batch(features, probs, p_ecg)])
    return gate, both, p_ecg


def report_split(classifier: Classifier, split: str) -> None:
    samples = dataset.read_manifest(classifier.model_dir / "split.csv", model_roots(classifier.info))
    samples, images = dataset.load_images([s for s in samples if s.split == split])
    gate, both, p_ecg = non_ecg_calls(classifier, images)
    non_ecg = np.array([s.label == NON_ECG for s in samples])
    other = np.array([s.label == dataset.OTHER_ECG for s in samples])
    for name, called in (("gate alone", gate), ("gate + detector", both)):
        print(
            f"{split} split, {name}: non-ECG recall {int(called[non_ecg].sum())}/{int(non_ecg.sum())}; "
            f"other-layout ECGs called Non-ECG {int(called[other].sum())}/{int(other.sum())}"
        )
    names = [Path(s.path).name for s in samples]
    highest = sorted(zip(p_ecg[non_ecg], np.array(names)[non_ecg], strict=True), reverse=True)[:3]
    lowest = sorted(zip(p_ecg[~non_ecg], np.array(names)[~non_ecg], strict=True))[:3]
    print(f"  highest non-ECG P(ECG): {', '.join(f'{n} {p:.3f}' for p, n in highest)}")
    print(f"  lowest ECG P(ECG):      {', '.join(f'{n} {p:.3f}' for p, n in lowest)}")


def report_renders(classifier: Classifier, n: int, first_seed: int) -> None:
    seeds = range(first_seed, first_seed + n)
    families = np.array([pick_family(seed) for seed in seeds])
    gate, both, _ = non_ecg_calls(classifier, [render_ecg(seed) for seed in seeds])
    printouts = np.isin(families, list(PRINTOUT_FAMILIES))
    for name, called in (("gate alone", gate), ("gate + detector", both)):
        by_family = dict(sorted(Counter(str(f) for f in families[called]).items()))
        print(
            f"{n} renders (seeds {first_seed}+), {name}: called Non-ECG {int(called.sum())}; "
            f"printouts and strips {int(called[printouts].sum())}/{int(printouts.sum())}; {by_family}"
        )


def report_charts(classifier: Classifier, n: int, first_seed: int) -> None:
    """Line charts that are not ECGs (`synth_charts`; training charts use 5,000,000 + n): how many come
    out as an ECG class."""
    seeds = range(first_seed, first_seed + n)
    gate, both, p_ecg = non_ecg_calls(classifier, [render_chart(seed) for seed in seeds])
    for name, called in (("gate alone", gate), ("gate + detector", both)):
        print(f"{n} charts (seeds {first_seed}+), {name}: called an ECG class {int((~called).sum())}")
    print(f"  highest chart P(ECG): {', '.join(f'{p:.3f}' for p in sorted(p_ecg, reverse=True)[:3])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--split", nargs="*", default=["val"], choices=["val", "test"])
    parser.add_argument("--renders", type=int, default=200)
    parser.add_argument("--render-seed", type=int, default=6_000_000)
    parser.add_argument("--charts", type=int, default=0, help="line charts that are not ECGs (synth_charts)")
    parser.add_argument("--chart-seed", type=int, default=8_000_000)
    args = parser.parse_args()
    classifier = Classifier(args.model)
    print(f"model {classifier.version}, detector threshold P(ECG) >= {classifier.detector_threshold:.3f}")
    for split in args.split:
        report_split(classifier, split)
    if args.renders:
        report_renders(classifier, args.renders, args.render_seed)
    if args.charts:
        report_charts(classifier, args.charts, args.chart_seed)


if __name__ == "__main__":
    main()
