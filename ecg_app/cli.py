"""`ecg-app` command line: parse arguments and call the modules; no logic of its own."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _cmd_predict(args: argparse.Namespace) -> int:
    from ecg_app.classifier import get_classifier
    from ecg_app.intake import IntakeError, load_image

    classifier = get_classifier(args.model)
    failures = 0
    for name in args.files:
        try:
            prediction = classifier.predict(load_image(name))
        except IntakeError as exc:
            failures += 1
            if args.json:
                print(json.dumps({"file": name, "error": exc.message, "error_code": exc.code}))
            else:
                print(f"{name}: ERROR {exc.message}")
            continue
        if args.json:
            print(json.dumps({"file": name, **prediction.to_dict()}))
        else:
            review = "  [needs review]" if prediction.status != "ok" else ""
            print(
                f"{name}: {prediction.display_name} ({prediction.confidence:.1%}), "
                f"risk {prediction.risk_level}{review}"
            )
    return 1 if failures else 0


def _cmd_train(args: argparse.Namespace) -> int:
    from ecg_app.training import TrainConfig, train

    config = TrainConfig(
        data_dir=Path(args.data),
        non_ecg_dir=Path(args.non_ecg) if args.non_ecg else None,
        other_ecg_dir=Path(args.other_ecg) if args.other_ecg else None,
        arch=args.arch,
        epochs=args.epochs,
        out_dir=Path(args.out),
        seed=args.seed,
        batch_size=args.batch_size,
        limit_per_class=args.limit_per_class,
    )
    train(config)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ecg_app.evaluation import evaluate_model_dir

    roots = {"mendeley": args.data, "non_ecg": args.non_ecg, "other_ecg": args.other_ecg}
    metrics = evaluate_model_dir(Path(args.model), split=args.split, roots={k: Path(v) for k, v in roots.items() if v})
    summary = metrics["test"]
    print(
        f"{args.split}: n={summary['n']} accuracy={summary['accuracy']['value']:.3f} "
        f"macro-F1={summary['macro_f1']['value']:.3f} "
        f"[{summary['macro_f1']['ci95'][0]:.3f}, {summary['macro_f1']['ci95'][1]:.3f}] "
        f"ECE={summary['ece']:.3f}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ecg_app import __version__
    from ecg_app.config import DEFAULT_MODEL_DIR

    parser = argparse.ArgumentParser(prog="ecg-app", description=__doc__)
    parser.add_argument("--version", action="version", version=f"ecg-app {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="classify ECG images (one line per file)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="model directory")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("train", help="train a model on the Mendeley layout (+ non-ECG images)")
    p.add_argument("--data", required=True, help="folder with the four class folders")
    p.add_argument("--non-ecg", help="folder tree of images that are not ECGs")
    p.add_argument("--other-ecg", help="unlabelled ECGs of other layouts (trained as 'some ECG class')")
    p.add_argument("--arch", default="default", help="network: 'default' or 'seed'")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", default=str(DEFAULT_MODEL_DIR), help="where the model and split go")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--limit-per-class", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="metrics on the held-out test split; writes metrics.json")
    p.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    p.add_argument("--data", help="Mendeley class folders (default: where the model was trained from)")
    p.add_argument("--non-ecg", help="non-ECG image tree (default: as trained)")
    p.add_argument("--other-ecg", help="other-layout ECG folder (default: as trained)")
    p.add_argument("--split", default="test", choices=["test", "val"])
    p.set_defaults(func=_cmd_evaluate)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
