"""Train `seed` and `default` on the same duplicate-safe split with the same seed, in one run, and print
a side-by-side table (macro-F1, 4-class ECG accuracy, non-ECG recall, train time, size, latency).

    python benchmarks/compare_seed.py --data ../shared/data --epochs 40
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from ecg_app.serving.classifier import Classifier
from ecg_app.training import dataset
from ecg_app.training.evaluation import evaluate_model_dir
from ecg_app.training.keras_networks import PAGE_FILE as MODEL_FILE
from ecg_app.training.training import TrainConfig, train


def single_image_latency_ms(model_dir: Path, image, repeats: int = 30) -> float:
    """Median wall time of one `predict` call (preprocessing + network), after a warm-up."""
    classifier = Classifier(model_dir)
    classifier.predict(image)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        classifier.predict(image)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--archs", nargs="+", default=["seed", "default"])
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs:
            out = Path(tmp) / arch
            info = train(
                TrainConfig(
                    data_dir=args.data / "mendeley-ecg",
                    non_ecg_dir=args.data / "non-ecg",
                    other_ecg_dir=args.data / "other-layout-ecg",
                    arch=arch,
                    epochs=args.epochs,
                    out_dir=out,
                    seed=args.seed,
                )
            )
            test = evaluate_model_dir(out, "test")["test"]
            sample = next(
                s
                for s in dataset.read_manifest(
                    out / "split.csv",
                    {
                        "mendeley": args.data / "mendeley-ecg",
                        "non_ecg": args.data / "non-ecg",
                        "other_ecg": args.data / "other-layout-ecg",
                    },
                )
                if s.split == "test" and s.source == "mendeley"
            )
            rows.append(
                {
                    "arch": arch,
                    "macro_f1": test["macro_f1"],
                    "ecg_acc": test["ecg_accuracy"],
                    "nonecg_recall": test["non_ecg_recall"]["value"],
                    "mi_recall": test["mi_recall"]["value"],
                    "train_min": info["train_seconds"] / 60,
                    "size_mb": (out / MODEL_FILE).stat().st_size / 1e6,
                    "params": info["params"],
                    "latency_ms": single_image_latency_ms(
                        out, dataset.load_rgb(sample.path, max_side=10_000)
                    ),
                }
            )

    print(
        f"\nSame split (seed {args.seed}), {args.epochs} epochs each, test split of the shared data, "
        "2-core CPU:"
    )
    print(
        "| arch | macro-F1 [95% CI] | 4-class ECG accuracy [95% CI] | non-ECG recall | MI recall | "
        "train time | model size | params | 1-image latency |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        f1, acc = r["macro_f1"], r["ecg_acc"]
        print(
            f"| {r['arch']} | {f1['value']:.3f} [{f1['ci95'][0]:.3f}, {f1['ci95'][1]:.3f}] | "
            f"{acc['value']:.3f} [{acc['ci95'][0]:.3f}, {acc['ci95'][1]:.3f}] | {r['nonecg_recall']:.3f} | "
            f"{r['mi_recall']:.3f} | {r['train_min']:.1f} min | {r['size_mb']:.1f} MB | {r['params']:,} | "
            f"{r['latency_ms']:.0f} ms |"
        )


if __name__ == "__main__":
    main()
