"""`ecg-app` command line: parse arguments and call the modules; no logic of its own."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _cmd_predict(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ecg_app.analysis import image_warnings, measurements_of
    from ecg_app.serving.classifier import get_classifier
    from ecg_app.serving.intake import IntakeError, load_image
    from ecg_app.serving.preprocess import page_as_read

    classifier = get_classifier(args.model)
    if args.batch:
        from ecg_app.batch import score_folder

        summary = score_folder(Path(args.batch), Path(args.csv), classifier)
        print(f"{summary.scored} scored, {summary.failed} failed, {summary.skipped} already in {args.csv}")
        return 1 if summary.failed else 0
    failures = 0
    for name in args.files:
        try:
            rgb = load_image(name)
            prediction = classifier.predict(rgb)
        except IntakeError as exc:
            failures += 1
            _print_intake_error(name, exc, args.json)
            continue
        measurements = measurements_of(page_as_read(rgb), prediction.label)
        if args.json:
            warnings = [asdict(warning) for warning in image_warnings(prediction, rgb)]
            record = {"file": name, **prediction.to_dict(), "quality_warnings": warnings}
            print(json.dumps({**record, "measurements": measurements.to_dict()}))
        else:
            print(_prediction_line(name, prediction))
            print(f"  {_measurements_line(measurements)}")
    return 1 if failures else 0


def _print_intake_error(name: str, exc, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"file": name, "error": exc.message, "error_code": exc.code}))
    else:
        print(f"{name}: ERROR {exc.message}")


def _prediction_line(name: str, prediction) -> str:
    review = ""
    if prediction.status != "ok":
        reason = ": infarction not ruled out" if prediction.infarction_not_ruled_out else ""
        review = f"  [needs review{reason}]"
    return (
        f"{name}: {prediction.display_name} ({prediction.confidence:.1%}), "
        f"risk {prediction.risk_level}{review}"
    )


def _measurements_line(measurements) -> str:
    """Rate, QRS and QTc, what a reader looks for first (all fields: --json), or why there are none."""
    shown = (
        ("Heart rate", measurements.heart_rate_bpm, "bpm"),
        ("QRS", measurements.qrs_ms, "ms"),
        ("QTc", measurements.qtc_bazett_ms, "ms (Bazett)"),
    )
    parts = [f"{name} {value:.0f} {unit}" for name, value, unit in shown if value is not None]
    if parts:
        return ", ".join(parts)
    reason = measurements.not_measured_reason
    return f"Measurements: not measured ({reason})" if reason else "Measurements: not measured"


def _cmd_train(args: argparse.Namespace) -> int:
    from ecg_app.training.distribute import DistributeConfigError
    from ecg_app.training.training import TrainConfig, train

    config = TrainConfig(
        data_dir=Path(args.data),
        non_ecg_dir=Path(args.non_ecg) if args.non_ecg else None,
        other_ecg_dir=Path(args.other_ecg) if args.other_ecg else None,
        arch=args.arch,
        epochs=args.epochs,
        out_dir=Path(args.out),
        seed=args.seed,
        batch_size=args.batch_size,
        samples_per_class=args.samples_per_class,
        ensemble=args.ensemble,
        limit_per_class=args.limit_per_class,
        distribute=args.distribute,
    )
    try:
        train(config)
    except DistributeConfigError as exc:
        print(f"ecg-app model train: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _data_root_overrides(args: argparse.Namespace) -> dict[str, Path]:
    roots = {"mendeley": args.data, "non_ecg": args.non_ecg, "other_ecg": args.other_ecg}
    return {k: Path(v) for k, v in roots.items() if v}


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ecg_app.training.evaluation import evaluate_model_dir

    metrics = evaluate_model_dir(
        Path(args.model),
        split=args.split,
        roots=_data_root_overrides(args),
        cross_validation=args.cross_validation,
    )
    summary = metrics["test"]
    print(
        f"{args.split}: n={summary['n']} accuracy={summary['accuracy']['value']:.3f} "
        f"macro-F1={summary['macro_f1']['value']:.3f} "
        f"[{summary['macro_f1']['ci95'][0]:.3f}, {summary['macro_f1']['ci95'][1]:.3f}] "
        f"ECE={summary['ece']:.3f}"
    )
    if "cross_validation" in metrics:
        pooled = metrics["cross_validation"]
        f1 = pooled["macro_f1"]
        print(
            f"out of fold ({pooled['run']}): n={pooled['n']} macro-F1={f1['value']:.3f} "
            f"[{f1['ci95'][0]:.3f}, {f1['ci95'][1]:.3f}] MI recall={pooled['mi_recall']['value']:.3f}"
        )
    return 0


def _figure(name: str, metric: dict) -> str:
    """`name=value [low, high]`, or `name=n/a` when the collection has no image the figure counts."""
    value, (low, high) = metric["value"], metric["ci95"]
    if value is None:  # e.g. MI recall of a collection without infarctions
        return f"{name}=n/a"
    return f"{name}={value:.3f}" + ("" if low is None else f" [{low:.3f}, {high:.3f}]")


def _cmd_validate(args: argparse.Namespace) -> int:
    from ecg_app.training.dataset import discover
    from ecg_app.training.external_validation import validate
    from ecg_app.training.model_files import write_json_atomic

    try:
        samples = discover(
            Path(args.data), args.non_ecg and Path(args.non_ecg), args.other_ecg and Path(args.other_ecg)
        )
        result = validate(Path(args.model), samples, keep_copies=args.keep_copies)
    except (ValueError, FileNotFoundError) as exc:
        print(f"ecg-app model validate: error: {exc}", file=sys.stderr)
        return 2
    images, metrics = result["images"], result["metrics"]
    copies = ", ".join(f"{split} {n}" for split, n in images["copies_of_model_images"].items() if n) or "none"
    checked = images["checked_against"]
    if images["unreadable"]:
        print(f"{len(images['unreadable'])} files could not be read as images and are not counted")
    print(
        f"{images['found']} images; copies of the model's images: {copies} (bytes against "
        f"{checked['model_images']}, pictures against {checked['compared_by_picture']}); "
        f"{len(images['left_out'])} left out, {images['scored']} scored"
    )
    figures = [
        _figure(name, metrics[key])
        for name, key in (
            ("accuracy", "accuracy"),
            ("macro-F1", "macro_f1"),
            ("ECG accuracy", "ecg_accuracy"),
            ("MI recall", "mi_recall"),
            ("non-ECG recall", "non_ecg_recall"),
        )
    ]
    coverage = metrics["needs_review"]["coverage"]
    print(
        f"n={metrics['n']} "
        + " ".join(figures)
        + f" ECE={metrics['ece']:.3f} not needing review={coverage:.3f}"
    )
    if args.out:
        write_json_atomic(result, Path(args.out))
        print(f"written: {args.out}")
    return 0


def _checked(convert, kind: str, accept, requirement: str):
    """An argparse type: `convert` the text (a `kind`), then refuse values `accept` rejects, saying why."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {kind}: {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"needs {requirement}, got {value}")
        return value

    return parse


def _architecture(text: str) -> str:
    """An argparse type: a network that `make_model` knows (networks imported only if the flag is given)."""
    from ecg_app.training.networks import ARCHITECTURES

    if text not in ARCHITECTURES:
        known = ", ".join(ARCHITECTURES)
        raise argparse.ArgumentTypeError(f"unknown network {text!r}; choose one of {known}")
    return text


# One fold would leave nothing to train on.
_FOLDS = _checked(int, "whole number", lambda v: v >= 2, "at least 2 folds")
# A probability, or a share of one thing mixed into another.
_FRACTION = _checked(float, "number", lambda v: 0 <= v <= 1, "a number in [0, 1]")
_POSITIVE = _checked(int, "whole number", lambda v: v >= 1, "at least 1")
# cross-validate's flags that change the recipe recorded in model.json: TrainConfig field -> (type, help).
_RECIPE_OVERRIDES = {
    "arch": (_architecture, "override the recipe's network architecture (ecg_app.training.networks)"),
    "epochs": (int, "override the recipe recorded in model.json"),
    "samples_per_class": (int, "override the recipe recorded in model.json"),
    "batch_size": (int, "override the recipe recorded in model.json"),
}


PAGE_SHARE_HELP = (
    "share of the page network's own ECG-class proportions mixed into the diagnosis network's "
    "(lead_diagnosis.combine; default 0: the diagnosis network's alone)"
)
# cross-validate's options for --diagnosis-with: DiagnosisConfig field -> (type, help).
_DIAGNOSIS_OPTIONS = {
    "seed": (int, "the diagnosis networks' first seed (default 42; the folds stay the model's)"),
    "members": (_POSITIVE, "diagnosis networks per fold, seeds SEED, SEED+1, ..., averaged (default 1)"),
    "page_share": (_FRACTION, PAGE_SHARE_HELP),
    # Smaller than the recipe's for a quick check of a whole run; each fold's member.json records them.
    "epochs": (_POSITIVE, "epochs per diagnosis network (default 60)"),
    "draws_per_class": (_POSITIVE, "printouts drawn per ECG class and epoch (default 120)"),
    "batch_size": (_POSITIVE, "diagnosis training batch size (default 16)"),
}


def _print_alone(what: str, alone: dict) -> None:
    recalled = ", ".join(f"{c} {hit}/{n}" for c, (hit, n) in alone["recalled"].items())
    print(f"{what} alone, ECG printouts: accuracy {alone['accuracy']:.3f} ({recalled})")


def _cmd_cross_validate(args: argparse.Namespace) -> int:
    from ecg_app.training.cross_validation import cross_validate, cross_validate_diagnosis
    from ecg_app.training.diagnosis_fit import DiagnosisConfig

    overrides = {key: getattr(args, key) for key in _RECIPE_OVERRIDES if getattr(args, key) is not None}
    baseline = Path(args.baseline) if args.baseline else None
    partner = Path(args.average_with) if args.average_with else None
    roots = _data_root_overrides(args)
    model, out = Path(args.model), Path(args.out)
    if args.diagnosis_with:
        chosen = {k: getattr(args, f"diagnosis_{k}") for k in _DIAGNOSIS_OPTIONS}
        config = DiagnosisConfig(**{"members": 1, **{k: v for k, v in chosen.items() if v is not None}})
        result = cross_validate_diagnosis(
            model, out, Path(args.diagnosis_with), args.folds, roots, baseline, config
        )
        _print_alone("diagnosis network", result["diagnosis_alone"])
    else:
        result = cross_validate(model, out, args.folds, roots, baseline, partner, **overrides)
    pooled = result["out_of_fold"]
    hmi = pooled["per_class"]["HMI"]
    print(
        f"out of fold ({result['folds']} folds): n={pooled['n']} "
        f"macro-F1={pooled['macro_f1']['value']:.3f} "
        f"[{pooled['macro_f1']['ci95'][0]:.3f}, {pooled['macro_f1']['ci95'][1]:.3f}] "
        f"ECG accuracy={pooled['ecg_accuracy']['value']:.3f} MI recall={pooled['mi_recall']['value']:.3f} "
        f"HMI recall={hmi['recall']:.3f} ({hmi['support']} images); {args.out}/cv.json"
    )
    if baseline is not None:
        verdict = result["against_baseline"]
        f1, mi = verdict["macro_f1"], verdict["mi_recalled"]
        print(
            f"against {baseline}: macro-F1 {f1['baseline']:.3f} -> {f1['candidate']:.3f} "
            f"(gain {f1['gain']:+.3f} [{f1['gain_ci95'][0]:+.3f}, {f1['gain_ci95'][1]:+.3f}]), "
            f"MI {mi['baseline']} -> {mi['candidate']} of {mi['of']}, {len(verdict['fixed'])} images "
            f"fixed, {len(verdict['broken'])} broken: "
            + ("replaces the recipe" if verdict["replaces_baseline"] else "does not replace the recipe")
        )
    return 0


def _cmd_fit_gate(args: argparse.Namespace) -> int:
    from ecg_app.serving.classifier import Classifier
    from ecg_app.training.dataset import model_roots
    from ecg_app.training.gate_fit import fit_gate

    info = Classifier(args.model).info
    record = fit_gate(Path(args.model), model_roots(info, _data_root_overrides(args)), k=args.k)
    val = record["validation"]
    print(
        f"ECG gate: threshold {record['threshold']:.3f} on {record['references']} training ECGs; validation: "
        f"{val['ecgs_beyond_threshold']}/{val['ecgs']} ECGs beyond, "
        f"{val['non_ecgs_within_threshold']}/{val['non_ecgs']} non-ECGs within"
    )
    return 0


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from ecg_app.training.onnx_export import export_model_dir

    record = export_model_dir(Path(args.model))
    print(f"Exported {', '.join(entry['file'] for entry in record.values())} to {args.model}")
    return 0


def _cmd_fit_detector(args: argparse.Namespace) -> int:
    from ecg_app.serving.classifier import Classifier
    from ecg_app.training.dataset import model_roots
    from ecg_app.training.detector_fit import DetectorConfig, fit_detector, rechoose_threshold

    classifier = Classifier(args.model)
    roots = model_roots(classifier.info, _data_root_overrides(args))
    if args.threshold_only:
        record = rechoose_threshold(classifier, roots)
    else:
        config = DetectorConfig(
            members=args.members,
            epochs=args.epochs,
            renders=args.renders,
            charts=args.charts,
            seed=args.seed,
        )
        record = fit_detector(Path(args.model), roots, config)
    val = record["validation"]
    print(
        f"ECG detector: threshold P(ECG) >= {record['threshold']:.3f}; validation: "
        f"{val['ecgs_below_threshold']}/{val['ecgs']} ECGs below, "
        f"{val['non_ecgs_at_or_above_threshold']}/{val['non_ecgs']} non-ECGs at or above "
        f"(highest non-ECG {val['max_non_ecg_p']:.3f})"
    )
    return 0


def _cmd_fit_diagnosis(args: argparse.Namespace) -> int:
    from ecg_app.serving.classifier import Classifier
    from ecg_app.training.dataset import model_roots
    from ecg_app.training.diagnosis_fit import DiagnosisConfig, fit_diagnosis

    info = Classifier(args.model).info
    config = DiagnosisConfig(
        members=args.members, epochs=args.epochs, seed=args.seed, page_share=args.page_share
    )
    record = fit_diagnosis(Path(args.model), model_roots(info, _data_root_overrides(args)), config)
    print(
        f"diagnosis network: {record['members']} member(s) on {sum(record['train_printouts'].values())} "
        f"training printouts; recalibrated on validation: T={record['temperature']:.2f}, "
        f"review threshold {record['review_threshold']:.2f}"
    )
    return 0


def _cmd_fit_mi_flag(args: argparse.Namespace) -> int:
    from ecg_app.training.mi_flag_fit import record_mi_flag

    record = record_mi_flag(Path(args.model), Path(args.cv_run), args.false_alarm_rate)
    for name, figures in (("out of fold", record["out_of_fold"]), ("nested", record["nested"])):
        print(
            f"{name}: infarctions called MI {figures['mi_called']}/{figures['mi']}, called MI or flagged "
            f"{figures['mi_called_or_flagged']}/{figures['mi']}; ECGs without one flagged "
            f"{figures['flagged_without_mi']}/{figures['without_mi']}"
        )
    print(
        f"infarction flag: P(MI) >= {record['threshold']:.4f} (T={record['temperature']:.2f}, at most "
        f"{record['false_alarm_rate']:.0%} of out-of-fold ECGs without one) recorded in {args.model}"
    )
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from ecg_app.analysis import analyze_and_store
    from ecg_app.config import Settings
    from ecg_app.serving.classifier import get_classifier
    from ecg_app.serving.intake import IntakeError, read_bytes
    from ecg_app.store import PatientInfo, open_store

    settings = Settings.from_env()
    try:
        patient = PatientInfo(args.patient_name, args.age, args.sex, args.notes)
        classifier = get_classifier(args.model or settings.model_dir)
    except (ValueError, FileNotFoundError) as exc:
        print(f"ecg-app analyze: error: {exc}", file=sys.stderr)
        return 2
    limits = settings.intake_limits
    with open_store(settings) as store:
        try:
            data = read_bytes(args.file, limits)
            stored = analyze_and_store(data, Path(args.file).name, patient, store, classifier, limits)
        except IntakeError as exc:
            _print_intake_error(args.file, exc, args.json)
            return 1
    if args.json:
        record = {"file": args.file, **stored.prediction.to_dict(), "id": str(stored.id)}
        kept = stored.to_dict()
        print(json.dumps({**record, **{key: kept[key] for key in ("quality_warnings", "measurements")}}))
    else:
        print(_prediction_line(args.file, stored.prediction))
        print(f"  stored as {stored.id}")
        print(f"  {_measurements_line(stored.measurements)}")
        for warning in stored.quality_warnings or ():
            print(f"  warning: {warning.message}")
    return 0


def _history_filters(args: argparse.Namespace):
    from ecg_app.store import AnalysisFilter

    return AnalysisFilter(
        label=args.label,
        risk_level=args.risk,
        status=args.status,
        since=args.since,
        until=args.until,
        search=args.search,
        patient=args.patient,
    )


def _cmd_history_list(args: argparse.Namespace) -> int:
    from ecg_app.clinical.measurements import shown
    from ecg_app.store import open_store
    from ecg_app.store.repository import patient_key

    filters = _history_filters(args)
    with open_store() as store:
        page = store.list(filters, limit=args.limit, offset=args.offset)  # a patient's: oldest first
    if args.json:
        items = [item.to_dict() for item in page.items]
        print(json.dumps({"total": page.total, "limit": page.limit, "offset": page.offset, "items": items}))
        return 0
    showing = f", showing {page.offset + 1}-{page.offset + len(page.items)}" if page.items else ""
    whose = f" of patient {args.patient}, oldest first" if patient_key(filters.patient) else ""
    print(f"{page.total} analyses{whose}{showing}")
    for item in page.items:
        rate = shown("heart_rate_bpm", item.measurements.heart_rate_bpm if item.measurements else None)
        print(
            f"{item.created_at:%Y-%m-%d %H:%M}  {item.id}  {item.label:<6}  {item.confidence:6.1%}  "
            f"{item.risk_level:<6}  {item.status:<12}  {rate:>7}  {item.patient.name or '-'}"
        )
    return 0


def _cmd_history_export(args: argparse.Namespace) -> int:
    from ecg_app.store import open_store

    with open_store() as store, open(args.out, "w", newline="", encoding="utf-8") as handle:
        count = store.export_csv(handle, _history_filters(args))
    print(f"Exported {count} analyses to {args.out}")
    return 0


def _cmd_history_delete(args: argparse.Namespace) -> int:
    from ecg_app.store import AnalysisFilter, open_store

    if (args.id is None) == (args.patient is None) or (args.patient is not None and not args.patient.strip()):
        print("ecg-app history delete: error: give an analysis ID or --patient P", file=sys.stderr)
        return 2
    with open_store() as store:
        if args.id is not None:
            deleted = store.delete(args.id)
            print(f"Deleted {args.id}" if deleted else f"No analysis with id {args.id}")
            return 0 if deleted else 1
        count = store.list(AnalysisFilter(patient=args.patient), limit=1).total
        if count == 0:
            print(f"No analyses of patient {args.patient}")
            return 1
        if not args.yes:
            if not sys.stdin.isatty():
                print(
                    "ecg-app history delete: error: --patient needs --yes when not asked at a terminal",
                    file=sys.stderr,
                )
                return 2
            answer = input(f"Delete all {count} analyses of patient {args.patient} and their files? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("Nothing deleted")
                return 1
        deleted = len(store.delete_patient(args.patient))
    print(f"Deleted {deleted} analyses of patient {args.patient} and their files")
    return 0


def _cmd_history_image(args: argparse.Namespace) -> int:
    from PIL import Image

    from ecg_app.store import open_store

    with open_store() as store:
        analysis = store.get(args.id)
    if analysis is None:
        print(f"ecg-app history image: error: no analysis with id {args.id}", file=sys.stderr)
        return 1
    out = Path(args.output)
    if out.suffix.lower() == analysis.image_path.suffix.lower():
        out.write_bytes(analysis.image_path.read_bytes())
    else:  # another format asked for by the name: converted, still without metadata
        try:
            with Image.open(analysis.image_path) as picture:
                picture.convert("RGB").save(out)
        except (ValueError, KeyError) as exc:  # Pillow knows no format by that name
            print(
                f"ecg-app history image: error: cannot write {out.name} ({exc}); use .jpg or .png",
                file=sys.stderr,
            )
            return 2
    kind = (
        "not de-identified: stored before de-identification; run ecg-app db deidentify"
        if analysis.deidentification is None
        else f"de-identified: {analysis.deidentification}"
    )
    print(f"Wrote {out} ({kind})")
    return 0


def _cmd_history_compare(args: argparse.Namespace) -> int:
    from ecg_app.clinical.comparison import compare
    from ecg_app.clinical.measurements import LABELS, shown
    from ecg_app.store import open_store

    with open_store() as store:
        found = [store.get(key) for key in (args.first, args.second)]
    missing = [key for key, item in zip((args.first, args.second), found, strict=True) if item is None]
    if missing:
        print(f"ecg-app history compare: error: no analysis with id {', '.join(missing)}", file=sys.stderr)
        return 1
    result = compare(*found)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    a, b = result.earlier, result.later
    print(result.summary())
    if not result.same_patient:
        print("  note: not stored under the same patient")
    rows = [
        ("", f"{a.created_at:%Y-%m-%d %H:%M}", f"{b.created_at:%Y-%m-%d %H:%M}", "change"),
        ("class", a.label, b.label, ""),
        ("risk", a.risk_level, b.risk_level, ""),
    ]
    for label, change in result.probability_changes().items():
        then, now = a.probabilities[label], b.probabilities[label]
        rows.append((f"P({label})", f"{then:.1%}", f"{now:.1%}", f"{change:+.1%}"))
    for name, (then, now, change) in result.measurement_changes().items():
        rows.append((LABELS[name], shown(name, then), shown(name, now), shown(name, change, signed=True)))
    for row in rows:
        print(f"{row[0]:22s}{row[1]:18s}{row[2]:18s}{row[3]}".rstrip())
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from ecg_app.clinical.report import render_report_pdf
    from ecg_app.config import Settings
    from ecg_app.store import open_store

    settings = Settings.from_env()
    with open_store(settings) as store:
        analysis = store.get(args.id)
    if analysis is None:
        print(f"ecg-app report: error: no analysis with id {args.id}", file=sys.stderr)
        return 1
    Path(args.output).write_bytes(render_report_pdf(analysis, model_dir=args.model or settings.model_dir))
    print(f"Wrote {args.output}")
    return 0


def _cmd_db_deidentify(settings) -> int:
    from ecg_app.store import open_store
    from ecg_app.store.history_privacy import deidentify_history

    with open_store(settings) as store:
        outcome = deidentify_history(store, settings.intake_limits, progress=sys.stderr.isatty())
    done = sum(outcome.done.values())
    methods = ", ".join(f"{n} by {m}" for m, n in sorted(outcome.done.items()))
    print(f"De-identified {done} stored pictures{f' ({methods})' if methods else ''}", end="")
    print(f"; {outcome.skipped} done meanwhile elsewhere" if outcome.skipped else "")
    for line in outcome.failed:
        print(f"  could not read {line}; left as it is", file=sys.stderr)
    return 1 if outcome.failed else 0


def _cmd_db(args: argparse.Namespace) -> int:
    from alembic.util import CommandError

    from ecg_app.config import Settings
    from ecg_app.store import migrate

    if args.db_command == "deidentify":
        return _cmd_db_deidentify(Settings.from_env())
    url = Settings.from_env().database_url
    try:
        if args.db_command == "upgrade":
            migrate.upgrade(url, args.revision)
        elif args.db_command == "downgrade":
            migrate.downgrade(url, args.revision)
    except CommandError as exc:
        print(f"ecg-app db {args.db_command}: error: {exc}", file=sys.stderr)
        return 1
    current, head = migrate.current_revision(url), migrate.head_revision()
    print(f"{current or 'base (empty)'}{' (head)' if current == head else ''}")
    return 0


def _add_store_commands(sub) -> None:
    from datetime import datetime

    from ecg_app.labels import CLASSES

    p = sub.add_parser("analyze", help="classify one ECG image and store it in the history")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--patient-name", help="patient name or ID")
    p.add_argument("--age", type=int)
    p.add_argument("--sex", help="female, male or other")
    p.add_argument("--notes", help="clinician notes")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--model", help="model directory (default: ECG_APP_MODEL_DIR or model/)")
    p.set_defaults(func=_cmd_analyze)

    history = sub.add_parser("history", help="list, compare, export or delete stored analyses")
    history_sub = history.add_subparsers(dest="history_command", required=True)
    p_list = history_sub.add_parser("list", help="newest first")
    p_list.add_argument("--limit", type=int, default=20)
    p_list.add_argument("--offset", type=int, default=0)
    p_list.add_argument("--json", action="store_true", help="print one JSON object with total and items")
    p_list.set_defaults(func=_cmd_history_list)
    p_export = history_sub.add_parser("export", help="write the history as CSV")
    p_export.add_argument("out", metavar="OUT.csv")
    p_export.set_defaults(func=_cmd_history_export)
    for p in (p_list, p_export):
        p.add_argument("--label", choices=CLASSES)
        p.add_argument("--risk", choices=["NONE", "LOW", "MEDIUM", "HIGH"])
        p.add_argument("--status", choices=["ok", "needs_review"])
        p.add_argument("--since", type=datetime.fromisoformat, help="ISO date/time, inclusive (default UTC)")
        p.add_argument("--until", type=datetime.fromisoformat, help="ISO date/time, exclusive (default UTC)")
        p.add_argument("--search", help="text in patient name/ID, sex, age or notes")
        p.add_argument("--patient", help="one patient's analyses (name or ID as typed); list: oldest first")
    p = history_sub.add_parser(
        "delete", help="delete one analysis (and its image if unused), or every analysis of a patient"
    )
    p.add_argument("id", metavar="ID", nargs="?")
    p.add_argument("--patient", help="erase this patient: every analysis and every file")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation (--patient)")
    p.set_defaults(func=_cmd_history_delete)
    p = history_sub.add_parser("image", help="write the stored (de-identified) picture of an analysis")
    p.add_argument("id", metavar="ID")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help=".jpg or .png (converted if needed)")
    p.set_defaults(func=_cmd_history_image)
    p = history_sub.add_parser(
        "compare", help="two analyses side by side (e.g. a patient's ECG then and now)"
    )
    p.add_argument("first", metavar="ID")
    p.add_argument("second", metavar="ID")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_history_compare)

    p = sub.add_parser("report", help="write the PDF report of a stored analysis")
    p.add_argument("id", metavar="ID")
    p.add_argument("-o", "--output", required=True, metavar="FILE.pdf")
    p.add_argument("--model", help="model directory whose metrics.json to quote (default: as analyze)")
    p.set_defaults(func=_cmd_report)

    db = sub.add_parser("db", help="database schema migrations (Alembic)")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    p = db_sub.add_parser("upgrade", help="upgrade the schema (default: to head)")
    p.add_argument("revision", nargs="?", default="head")
    p = db_sub.add_parser("downgrade", help="downgrade the schema (default: one step; 'base' empties it)")
    p.add_argument("revision", nargs="?", default="-1")
    db_sub.add_parser("current", help="print the schema revision")
    db_sub.add_parser(
        "deidentify", help="de-identify pictures stored before de-identification (resumable, idempotent)"
    )
    db.set_defaults(func=_cmd_db)


def _cmd_serve(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ecg_app.config import Settings
    from ecg_app.ui import build_app, launch

    try:
        settings = Settings.from_env()
    except ValueError as exc:  # e.g. a malformed ECG_APP_USERS: refuse rather than serve without a login
        print(f"ecg-app serve: error: {exc}", file=sys.stderr)
        return 2
    if args.model:
        settings = replace(settings, model_dir=Path(args.model))
    if not (settings.model_dir / "model.json").is_file():
        print(f"ecg-app serve: warning: no trained model in {settings.model_dir}", file=sys.stderr)
    launch(build_app(settings), host=args.host, port=args.port)
    return 0


def _add_serve_command(sub) -> None:
    p = sub.add_parser("serve", help="start the web dashboard (Gradio); login via ECG_APP_USERS")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: localhost only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--model", help="model directory (default: ECG_APP_MODEL_DIR or model/)")
    p.set_defaults(func=_cmd_serve)


def build_parser() -> argparse.ArgumentParser:
    from ecg_app import __version__
    from ecg_app.config import DEFAULT_MODEL_DIR
    from ecg_app.serving.mi_flag import FALSE_ALARM_RATE

    parser = argparse.ArgumentParser(prog="ecg-app", description=__doc__)
    parser.add_argument("--version", action="version", version=f"ecg-app {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    # What users run, first: the app, one picture, the history. Then the research commands, in one group.
    _add_serve_command(sub)
    p = sub.add_parser("predict", help="classify ECG images (a line per file, its measurements below)")
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="model directory")
    p.add_argument("--batch", metavar="DIR", help="score every image below DIR (batched, resumable)")
    p.add_argument("--csv", metavar="OUT", help="with --batch: CSV to append to (files in it are skipped)")
    p.set_defaults(func=_cmd_predict)

    _add_store_commands(sub)
    model = sub.add_parser(
        "model",
        help="research: train, evaluate, validate, cross-validate, fit and export the networks (train extra)",
    )
    research = model.add_subparsers(dest="model_command", required=True, metavar="COMMAND")

    p = research.add_parser("train", help="train a model on the Mendeley layout (+ non-ECG images)")
    p.add_argument("--data", required=True, help="folder with the four class folders")
    p.add_argument("--non-ecg", help="folder tree of images that are not ECGs")
    p.add_argument("--other-ecg", help="unlabelled ECGs of other layouts (trained as 'some ECG class')")
    p.add_argument("--arch", type=_architecture, default="default", help="network: default or seed")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=16, help="global (split across --distribute replicas)")
    p.add_argument("--samples-per-class", type=int, default=96, help="images drawn per class each epoch")
    p.add_argument("--ensemble", type=int, default=1, help="average N networks (seeds SEED..SEED+N-1)")
    p.add_argument("--out", default=str(DEFAULT_MODEL_DIR), help="where the model and split go")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--limit-per-class", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--distribute",
        action="store_true",
        help="tf.distribute: all local GPUs (MirroredStrategy), or the workers in TF_CONFIG "
        "(MultiWorkerMirroredStrategy; only the chief writes --out)",
    )
    p.set_defaults(func=_cmd_train)

    p = research.add_parser("evaluate", help="metrics on the held-out test split; writes metrics.json")
    _add_model_data_arguments(p)
    p.add_argument("--split", default="test", choices=["test", "val"])
    p.add_argument(
        "--cross-validation",
        type=Path,
        metavar="RUN",
        help="a kept cross-validation run of the model's recipe (e.g. model/cross-validation/diagnosis-mix): "
        "its out-of-fold figures are shown beside the split's",
    )
    p.set_defaults(func=_cmd_evaluate)

    p = research.add_parser(
        "validate",
        help="score the model on your own labelled images (class folders); copies of the images it was "
        "built from are found and left out",
    )
    p.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    p.add_argument(
        "--data", required=True, help="class folders: MI, HMI, AHB, Normal (or the published names)"
    )
    p.add_argument("--non-ecg", help="a folder of pictures that are not ECGs")
    p.add_argument(
        "--other-ecg", help="a folder of ECGs of other layouts (scored: how many are called Non-ECG)"
    )
    p.add_argument(
        "--keep-copies", action="store_true", help="score copies of training and validation images too"
    )
    p.add_argument("--out", help="write the figures and one row per image as JSON")
    p.set_defaults(func=_cmd_validate)

    p = research.add_parser(
        "cross-validate",
        help="grouped k-fold cross-validation of the model's recipe on train+val (never reads test)",
    )
    _add_model_data_arguments(p)
    p.add_argument("--folds", type=_FOLDS, default=5)
    p.add_argument("--out", default="runs/cv", help="fold networks, oof.csv and cv.json go here")
    for key, (kind, help_text) in _RECIPE_OVERRIDES.items():
        p.add_argument(f"--{key.replace('_', '-')}", type=kind, help=help_text)
    p.add_argument(
        "--baseline",
        metavar="RUN",
        help="an earlier cross-validation output on the same folds: apply the model card's rule for "
        "changing the recipe to this run against it",
    )
    p.add_argument(
        "--average-with",
        metavar="RUN",
        help="an earlier cross-validation output on the same folds: judge the pair (each image's "
        "probabilities averaged over this run's network and RUN's), as an ensemble of both would predict",
    )
    p.add_argument(
        "--diagnosis-with",
        metavar="RUN",
        help="instead of the recipe: cross-validate the lead-reading diagnosis network (fit-diagnosis's "
        "recipe) combined with RUN's page networks' Non-ECG probability, RUN an earlier output on the "
        "same folds",
    )
    for key, (kind, help_text) in _DIAGNOSIS_OPTIONS.items():
        p.add_argument(
            f"--diagnosis-{key.replace('_', '-')}", type=kind, help=f"with --diagnosis-with: {help_text}"
        )
    p.set_defaults(func=_cmd_cross_validate)

    p = research.add_parser(
        "fit-gate", help="fit the embedding-space ECG gate (train split; threshold on val)"
    )
    _add_model_data_arguments(p)
    p.add_argument("--k", type=int, default=5, help="nearest training ECGs averaged (default 5)")
    p.set_defaults(func=_cmd_fit_gate)

    p = research.add_parser(
        "fit-diagnosis",
        help="train the lead-reading diagnosis network (train split's ECGs); recalibrate on val",
    )
    _add_model_data_arguments(p)
    p.add_argument("--members", type=int, default=3, help="networks averaged (seeds seed, seed+1, ...)")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--page-share", type=_FRACTION, default=0.0, help=PAGE_SHARE_HELP)
    p.set_defaults(func=_cmd_fit_diagnosis)

    p = research.add_parser(
        "fit-mi-flag",
        help="fit the 'infarction not ruled out' flag on a cross-validation run's out-of-fold predictions "
        "(never test), with the model's temperature; record it in model.json",
    )
    p.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    p.add_argument("--cv-run", required=True, help="a cross-validate --out folder of the model's recipe")
    p.add_argument(
        "--false-alarm-rate",
        type=_FRACTION,
        default=FALSE_ALARM_RATE,
        help="largest share of out-of-fold ECGs without an infarction that may be flagged (default "
        f"{FALSE_ALARM_RATE})",
    )
    p.set_defaults(func=_cmd_fit_mi_flag)

    p = research.add_parser(
        "fit-detector", help="train the whole-picture ECG detector (train split + renders; threshold on val)"
    )
    _add_model_data_arguments(p)
    p.add_argument("--members", type=int, default=3, help="networks averaged (seeds seed, seed+1, ...)")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--renders", type=int, default=600, help="rendered ECGs added to training")
    p.add_argument("--charts", type=int, default=600, help="rendered line charts added as non-ECGs")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--threshold-only",
        action="store_true",
        help="no training: choose the shipped detector's threshold again on validation",
    )
    p.set_defaults(func=_cmd_fit_detector)

    p = research.add_parser(
        "export-onnx",
        help="write the networks as the ONNX graphs serving runs (after any fit; needs the train extra)",
    )
    p.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    p.set_defaults(func=_cmd_export_onnx)

    return parser


def _add_model_data_arguments(p: argparse.ArgumentParser) -> None:
    from ecg_app.config import DEFAULT_MODEL_DIR

    p.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    p.add_argument("--data", help="Mendeley class folders (default: where the model was trained from)")
    p.add_argument("--non-ecg", help="non-ECG image tree (default: as trained)")
    p.add_argument("--other-ecg", help="other-layout ECG folder (default: as trained)")


def _check_cross_validate_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    given = [k for k in _DIAGNOSIS_OPTIONS if getattr(args, f"diagnosis_{k}") is not None]
    if given and not args.diagnosis_with:
        parser.error(f"--diagnosis-{given[0].replace('_', '-')} needs --diagnosis-with")
    if not args.diagnosis_with:
        return
    clashing = [k for k in (*_RECIPE_OVERRIDES, "average_with") if getattr(args, k) is not None]
    if clashing:
        drop = ", ".join(f"--{k.replace('_', '-')}" for k in clashing)
        parser.error(f"--diagnosis-with judges its own recipe: drop {drop}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "predict" and not args.files and not args.batch:
        parser.error("predict needs FILE... or --batch DIR --csv OUT")
    if args.command == "predict" and args.batch and not args.csv:
        parser.error("--batch needs --csv OUT")
    if getattr(args, "model_command", None) == "cross-validate":
        _check_cross_validate_options(parser, args)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
