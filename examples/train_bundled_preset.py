"""Rebuild `covidcxr_lite`, the preset bundled in the package, from ../shared/data/cxr on a CPU.

    python examples/train_bundled_preset.py ../shared/data/cxr --work runs/lite

Any Keras backend trains it (TensorFlow was about twice as fast as JAX on our 2-core CPU);
the backend used is recorded in metadata.json.

Stages (each resumable; a finished stage is skipped when the script runs again):
1. data: convert the shared manifest, drop what the audit refuses (a child's film, images under
   256 px), keep patients who share a picture together, split by patient 80/10/10, audit.
2. segmenter: ResUnet 128 px, filters 32/64/128/256, on the seg pairs (train split; val split
   chooses the best epoch).
3. cv: patient-grouped 5-fold cross-validation of the classifier recipe on the cls images
   (COVID-19 vs non-COVID), with bootstrap confidence intervals, a shortcut baseline and
   leave-one-source-out.
4. final: the classifiers trained on all cls images, the ensemble and threshold fitted on
   out-of-fold scores, written as the preset (default keras_covidcxr/presets/bundled/covidcxr_lite).
"""

import argparse
import hashlib
import json
import subprocess
import time
from pathlib import Path

import keras
import numpy as np

from keras_covidcxr import CXRClassifier, Pipeline, PreprocessingConfig, TrainingConfig, run_segmenter_recipe
from keras_covidcxr.data import (
    audit_manifest,
    find_near_duplicates,
    from_shared_cxr_manifest,
    read_manifest,
    split_by_patient,
    write_manifest,
)
from keras_covidcxr.io.image_loader import load_image
from keras_covidcxr.metrics import bootstrap_metrics, classification_metrics
from keras_covidcxr.metrics.bootstrap import percentile_interval, resample_patients
from keras_covidcxr.metrics.cross_validation import patient_kfold_indices
from keras_covidcxr.metrics.thresholds import youden_threshold
from keras_covidcxr.models.classifier.encoder_transfer import copy_segmenter_encoder
from keras_covidcxr.preprocessing.lung_masking import mask_quality
from keras_covidcxr.preprocessing.model_inputs import lung_mask_at, segmenter_input
from keras_covidcxr.training.assembly import assemble_pipeline, member_probabilities
from keras_covidcxr.training.augmentation import CLASSIFIER_AUGMENTATION, Augmenter
from keras_covidcxr.training.checkpoints import TrainingCheckpoint, load_checkpoint
from keras_covidcxr.training.class_weights import balanced_class_weights
from keras_covidcxr.training.classifier_training import train_classifier
from keras_covidcxr.training.datasets import (
    ClassificationDataset,
    SegmentationDataset,
    masked_classifier_inputs,
)
from keras_covidcxr.training.ensemble_fitting import fit_ensemble_weights

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "keras_covidcxr" / "presets" / "bundled" / "covidcxr_lite"
CLASS_NAMES = ("non_covid", "covid")
SEED = 0
FOLDS = 5
N_RESAMPLES = 1000
SEGMENTER = {"input_size": 128, "filters": (32, 64, 128, 256)}
SEGMENTER_CONFIG = TrainingConfig(batch_size=16, epochs=45, learning_rate=1e-3, patience=0, workers=2, verbose=2,
                                  seed=SEED)
CLASSIFIER_SIZE = 96
PREPROCESSING = PreprocessingConfig()  # the paper's hard lung mask
CLASSIFIER_CONFIG = TrainingConfig(classifier_recipe="end_to_end", batch_size=32, epochs=30, learning_rate=1e-3,
                                   patience=6, workers=2, verbose=0, seed=SEED)
# Ensemble members: both are ResUnet encoders + a CAM head, trained end to end on the masked images.
MEMBERS = {
    "lung_encoder": {"encoder_filters": SEGMENTER["filters"], "seeded_from_segmenter": True},
    "small_encoder": {"encoder_filters": (16, 32, 64, 128), "seeded_from_segmenter": False},
}


def prepare_data(shared_folder, work):
    """The audited, patient-split manifest (work/manifest.csv); what was dropped goes to work/data_report.json."""
    path = work / "manifest.csv"
    if path.is_file():
        return read_manifest(path)
    built = from_shared_cxr_manifest(Path(shared_folder) / "manifest.csv")
    manifest = built.manifest
    first_audit = audit_manifest(manifest.with_rows(r.replace(split="train") for r in manifest))
    refused = {Path(path).name for finding in first_audit.errors for path in finding.paths}
    kept = manifest.with_rows(row for row in manifest if Path(row.path).name not in refused)
    linked = [group.patient_ids for group in find_near_duplicates(kept)]
    split = split_by_patient(kept, fractions=(0.8, 0.1, 0.1), seed=0, linked_patients=linked)
    audit = audit_manifest(split)
    print(audit.summary())
    if not audit.passed:
        raise SystemExit("the data audit failed; see above")
    work.mkdir(parents=True, exist_ok=True)
    dropped = [{"check": f.check, "message": f.message, "paths": list(f.paths)} for f in first_audit.errors]
    (work / "data_report.json").write_text(json.dumps({"dropped": dropped, "audit": audit.to_dict()}, indent=2))
    write_manifest(split, path)
    return read_manifest(path)


def train_segmenter_stage(manifest, work):
    """Train the segmenter (resuming a killed run); returns its summary (a finished run is not repeated)."""
    checkpoint = TrainingCheckpoint(work / "segmenter")
    summary = checkpoint.read_summary() if (work / "segmenter" / "summary.json").is_file() else None
    if summary is None:
        run_segmenter_recipe(manifest, work / "segmenter", config=SEGMENTER_CONFIG, **SEGMENTER)
        summary = checkpoint.read_summary()
    print(f"segmenter: best validation Dice {summary['best_value']:.4f} at epoch {summary['best_epoch']} "
          f"({summary['seconds']:.0f} s)")
    return summary


def patient_interval(values, groups, statistic=np.mean):
    """{"value", "ci95", "n"}: `statistic` of per-image values with a patient-level bootstrap 95% interval."""
    values = np.asarray(values, "float64")
    samples = [statistic(values[index]) for index in resample_patients(groups, N_RESAMPLES, seed=SEED)]
    low, high = percentile_interval(np.asarray(samples))
    return {"value": float(statistic(values)), "ci95": [float(low), float(high)], "n": len(values)}


def evaluate_segmenter(manifest, segmenter):
    """Dice on the held-out seg test split, and mask QC on every cls image by label."""
    test = manifest.filter(task="seg", split="test")
    data = SegmentationDataset(test, segmenter.input_size, batch_size=8)
    dice = []
    for index in range(len(data)):
        images, masks = data[index]
        predicted = np.asarray(segmenter.predict_on_batch(images)) >= PREPROCESSING.mask_threshold
        for p, t in zip(predicted, masks.astype(bool)):
            dice.append(2 * np.sum(p & t) / max(np.sum(p) + np.sum(t), 1))
    quality = {}
    for row in manifest.filter(task="cls"):
        pixels = load_image(manifest.resolve(row)).pixels
        probs = np.asarray(segmenter.predict_on_batch(segmenter_input(pixels, segmenter.input_size)[None]))[0, ..., 0]
        q = mask_quality(lung_mask_at(probs, pixels.shape, PREPROCESSING.mask_threshold))
        plausible = (PREPROCESSING.min_lung_fraction <= q.lung_fraction <= PREPROCESSING.max_lung_fraction
                     and 1 <= q.components <= PREPROCESSING.max_lung_components)
        quality.setdefault(row.label, []).append((q.lung_fraction, q.components, plausible))
    qc = {
        label: {
            "n": len(items),
            "lung_fraction_median": float(np.median([f for f, _, _ in items])),
            "lung_fraction_p5_p95": [float(np.percentile([f for f, _, _ in items], q)) for q in (5, 95)],
            "two_components": float(np.mean([c == 2 for _, c, _ in items])),
            "implausible": float(np.mean([not ok for _, _, ok in items])),
        }
        for label, items in sorted(quality.items())
    }
    return {"test_dice": patient_interval(dice, [row.patient_id for row in test]), "mask_qc_on_cls_images": qc}


def classifier_inputs(manifest, segmenter, work):
    """Masked classifier inputs of every cls row (cached in work/cls_inputs.npz)."""
    cache = work / "cls_inputs.npz"
    if cache.is_file():
        return np.load(cache)["inputs"]
    inputs, warnings = masked_classifier_inputs(manifest.filter(task="cls"), segmenter, CLASSIFIER_SIZE,
                                                PREPROCESSING, batch_size=16, workers=2)
    np.savez(cache, inputs=inputs)
    (work / "cls_mask_warnings.json").write_text(json.dumps(warnings))
    return inputs


def build_member(name, segmenter):
    spec = MEMBERS[name]
    model = CXRClassifier("resunet_encoder", num_classes=2, input_shape=(CLASSIFIER_SIZE, CLASSIFIER_SIZE, 3),
                          encoder_filters=spec["encoder_filters"], name=name)
    if spec["seeded_from_segmenter"]:
        copy_segmenter_encoder(segmenter, model)
    return model


def train_member(name, segmenter, inputs, labels, train_index, val_index=None, seed=SEED, config=None):
    """One member trained end to end on `train_index`; `val_index` (patients apart) chooses the epoch."""
    config = (config or CLASSIFIER_CONFIG).replace(seed=seed)
    weights = balanced_class_weights(labels[train_index], 2)
    train = ClassificationDataset(inputs[train_index], labels[train_index], 2, config.batch_size,
                                  augmenter=Augmenter(CLASSIFIER_AUGMENTATION, seed=seed), shuffle=True,
                                  class_weights=weights, seed=seed, workers=config.workers, drop_remainder=True)
    val = None
    if val_index is not None:
        val = ClassificationDataset(inputs[val_index], labels[val_index], 2, config.batch_size)
    keras.utils.set_random_seed(seed)
    return train_classifier(build_member(name, segmenter), train, val, config)


def inner_validation(index, groups, labels, seed):
    """Split training indices by patient into (fit, validation) ~85/15, label-stratified."""
    folds = patient_kfold_indices(labels[index], np.asarray(groups)[index], k=7, seed=seed)
    fit, val = folds[0]
    return index[fit], index[val]


def covid_scores(models, inputs):
    """(n, models) COVID-19 probabilities."""
    return member_probabilities(models, inputs, batch_size=32)[..., 1]


def cross_validate_members(manifest, segmenter, inputs, work):
    """Out-of-fold COVID probabilities of every member (patient-grouped 5-fold), resumable per fold."""
    rows = list(manifest.filter(task="cls"))
    labels = np.array([row.label == "covid" for row in rows], np.int64)
    groups = [row.patient_id for row in rows]
    cache = work / "cv_scores.json"
    state = json.loads(cache.read_text()) if cache.is_file() else {"folds": []}
    folds = patient_kfold_indices(labels, groups, k=FOLDS, seed=SEED)
    for k, (train_index, test_index) in enumerate(folds):
        if k < len(state["folds"]):
            continue
        fit_index, val_index = inner_validation(train_index, groups, labels, seed=SEED + k)
        fold = {"test_index": test_index.tolist(), "members": {}}
        for name in MEMBERS:
            started = time.time()
            result = train_member(name, segmenter, inputs, labels, fit_index, val_index, seed=SEED + k)
            fold["members"][name] = {
                "scores": covid_scores([result.model], inputs[test_index])[:, 0].tolist(),
                "best_epoch": result.best_epoch,
                "seconds": round(time.time() - started, 1),
            }
            print(f"fold {k + 1}/{FOLDS} {name}: best epoch {result.best_epoch}, "
                  f"{time.time() - started:.0f} s", flush=True)
        state["folds"].append(fold)
        cache.write_text(json.dumps(state))
    out_of_fold = {name: np.zeros(len(rows)) for name in MEMBERS}
    fold_of = np.zeros(len(rows), np.int64)
    for k, fold in enumerate(state["folds"]):
        for name in MEMBERS:
            out_of_fold[name][fold["test_index"]] = fold["members"][name]["scores"]
        fold_of[fold["test_index"]] = k
    best_epochs = {name: [f["members"][name]["best_epoch"] for f in state["folds"]] for name in MEMBERS}
    return out_of_fold, fold_of, best_epochs


def binary_metrics(is_covid, score, groups, decision_score=None):
    """AUC from `score`; accuracy, sensitivity, specificity from `decision_score >= 0.5`; patient-bootstrap CIs."""
    decision_score = score if decision_score is None else decision_score
    out = {"n": len(score), "n_covid": int(np.sum(is_covid))}
    for metric_names, values in ((("auc",), score), (("accuracy", "sensitivity", "specificity"), decision_score)):
        probs = np.stack([1 - values, values], axis=1)
        point = classification_metrics(is_covid, probs, CLASS_NAMES, threshold=0.5).overall
        ci = bootstrap_metrics(is_covid, probs, CLASS_NAMES, groups=groups, n_resamples=N_RESAMPLES, seed=SEED,
                               threshold=0.5)["overall"]
        for name in metric_names:
            out[name] = {"value": float(point[name]), "ci95": [float(v) for v in ci[name]]}
    return out


def cross_fitted(out_of_fold, labels, fold_of):
    """Ensemble scores and decisions for fold k from weights and threshold fitted on the other folds only.

    Returns (ensemble scores, {model: decision score}) where a decision score is the score shifted
    so that its fold's threshold sits at 0.5 (so sensitivity/specificity are never tuned on the fold
    they are measured on).
    """
    names = list(out_of_fold)
    member_scores = np.stack([out_of_fold[n] for n in names], axis=1)
    ensemble, decisions = np.zeros(len(labels)), {n: np.zeros(len(labels)) for n in [*names, "ensemble"]}
    for k in np.unique(fold_of):
        test, rest = fold_of == k, fold_of != k
        fit = fit_ensemble_weights(member_scores[rest], labels[rest], names)
        ensemble[test] = member_scores[test] @ np.asarray(fit.weights)
        rest_ensemble = member_scores[rest] @ np.asarray(fit.weights)
        for name, values, rest_values in [*((n, out_of_fold[n], out_of_fold[n][rest]) for n in names),
                                          ("ensemble", ensemble, rest_ensemble)]:
            threshold = youden_threshold(labels[rest] == 1, rest_values).threshold
            decisions[name][test] = np.clip(values[test] - threshold + 0.5, 0.0, 1.0)
    return ensemble, decisions


SHORTCUT_VIEWS = ("PA", "AP", "AP Supine", "unknown")


def shortcut_features(manifest):
    """View one-hot + image statistics (size, aspect, intensity percentiles): no lung content at all."""
    features = []
    for row in manifest.filter(task="cls"):
        pixels = load_image(manifest.resolve(row)).pixels
        height, width = pixels.shape
        stats = [np.log(height), np.log(width), width / height, pixels.mean(), pixels.std(),
                 *np.percentile(pixels, (1, 5, 25, 50, 75, 95, 99)), np.mean(pixels < 0.02), np.mean(pixels > 0.98)]
        features.append([*(float(row.view == v) for v in SHORTCUT_VIEWS), *stats])
    return np.asarray(features)


def shortcut_scores(features, labels, fold_of):
    """Out-of-fold COVID probabilities of a logistic regression on `shortcut_features`, same folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out_of_fold = np.zeros(len(labels))
    for k in np.unique(fold_of):
        model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=1000))
        model.fit(features[fold_of != k], labels[fold_of != k])
        out_of_fold[fold_of == k] = model.predict_proba(features[fold_of == k])[:, 1]
    return out_of_fold


def cross_validation_report(manifest, out_of_fold, fold_of, features):
    rows = list(manifest.filter(task="cls"))
    labels = np.array([row.label == "covid" for row in rows], np.int64)
    groups = np.array([row.patient_id for row in rows])
    pa = np.array([row.view == "PA" for row in rows])
    ensemble, decisions = cross_fitted(out_of_fold, labels, fold_of)
    shortcut = shortcut_scores(features, labels, fold_of)
    _, shortcut_decisions = cross_fitted({"shortcut": shortcut}, labels, fold_of)
    models = {**{n: (out_of_fold[n], decisions[n]) for n in out_of_fold},
              "ensemble": (ensemble, decisions["ensemble"]),
              "shortcut_baseline": (shortcut, shortcut_decisions["shortcut"])}
    report = {}
    for name, (score, decision) in models.items():
        report[name] = {
            "all": binary_metrics(labels, score, groups, decision),
            "pa_only": binary_metrics(labels[pa], score[pa], groups[pa], decision[pa]),
        }
    return report, ensemble


def leave_one_source_out(manifest, segmenter, inputs, features):
    """Train on all sources but one, test on that one: members, equal-weight ensemble, shortcut baseline."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rows = list(manifest.filter(task="cls"))
    labels = np.array([row.label == "covid" for row in rows], np.int64)
    groups = [row.patient_id for row in rows]
    sources = np.array([row.source for row in rows])
    report = {}
    for source in sorted(set(sources)):
        test, train = np.flatnonzero(sources == source), np.flatnonzero(sources != source)
        entry = {"n": len(test), "n_covid": int(labels[test].sum()), "n_train": len(train)}
        if len(set(labels[test])) < 2 or len(set(labels[train])) < 2:
            report[source] = {**entry, "auc": None, "why": "one class only"}
            continue
        fit_index, val_index = inner_validation(train, groups, labels, seed=SEED)
        member_scores = [covid_scores([train_member(name, segmenter, inputs, labels, fit_index, val_index).model],
                                inputs[test])[:, 0] for name in MEMBERS]
        shortcut = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=1000))
        shortcut.fit(features[train], labels[train])
        entry["auc"] = {
            **{name: float(roc_auc_score(labels[test], s)) for name, s in zip(MEMBERS, member_scores)},
            "ensemble_equal_weights": float(roc_auc_score(labels[test], np.mean(member_scores, axis=0))),
            "shortcut_baseline": float(roc_auc_score(labels[test], shortcut.predict_proba(features[test])[:, 1])),
        }
        report[source] = entry
        print(f"leave out {source}: {entry['auc']}", flush=True)
    return report


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                               cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def train_final_members(manifest, segmenter, inputs, best_epochs):
    """Every member on all cls images, for the median of its cross-validation best epochs."""
    labels = np.array([row.label == "covid" for row in manifest.filter(task="cls")], np.int64)
    members, record = [], {}
    for name in MEMBERS:
        epochs = int(np.median(best_epochs[name]))
        started = time.time()
        config = CLASSIFIER_CONFIG.replace(epochs=epochs, patience=0)
        result = train_member(name, segmenter, inputs, labels, np.arange(len(labels)), config=config)
        members.append(result.model)
        record[name] = {"epochs": epochs, "seconds": round(time.time() - started, 1)}
        print(f"final {name}: {epochs} epochs, {time.time() - started:.0f} s", flush=True)
    return members, record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shared_data", help="the folder of the shared CXR data (with manifest.csv)")
    parser.add_argument("--work", default="runs/lite", help="working folder (resumable)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="the preset folder to write")
    parser.add_argument("--skip-loso", action="store_true", help="skip leave-one-source-out (saves ~1/3 of the time)")
    args = parser.parse_args(argv)
    work = Path(args.work)
    started = time.time()
    manifest = prepare_data(args.shared_data, work)
    segmenter_summary = train_segmenter_stage(manifest, work)
    segmenter = load_checkpoint(work / "segmenter")
    segmenter_report = evaluate_segmenter(manifest, segmenter)
    print("segmenter:", json.dumps(segmenter_report["test_dice"]))
    inputs = classifier_inputs(manifest, segmenter, work)
    features = shortcut_features(manifest)
    out_of_fold, fold_of, best_epochs = cross_validate_members(manifest, segmenter, inputs, work)
    cv_report, _ = cross_validation_report(manifest, out_of_fold, fold_of, features)
    for name, entry in cv_report.items():
        print(f"cv {name}: AUC {entry['all']['auc']['value']:.3f} {entry['all']['auc']['ci95']}, "
              f"PA-only AUC {entry['pa_only']['auc']['value']:.3f}")
    loso = None if args.skip_loso else leave_one_source_out(manifest, segmenter, inputs, features)
    members, final_record = train_final_members(manifest, segmenter, inputs, best_epochs)

    rows = list(manifest.filter(task="cls"))
    labels = np.array([row.label == "covid" for row in rows], np.int64)
    names = list(MEMBERS)
    fit = fit_ensemble_weights(np.stack([out_of_fold[n] for n in names], axis=1), labels, names)
    pipeline = assemble_pipeline(segmenter, members, CLASS_NAMES, "weighted_average", fit.weights, fit.threshold,
                                 preprocessing=PREPROCESSING)
    manifest_path = work / "manifest.csv"
    counts = {f"{task}/{label or '-'}": n for (task, label), n in sorted(manifest.counts("task", "label").items())}
    training = {
        "summary": ("Trained on the real public chest X-rays of ../shared/data/cxr (ieee8023 covid-chestxray-"
                    "dataset, Actualmed, Figure 1; V7 Labs lung masks). Small data: judge it by the "
                    "cross-validation below, not as a clinical tool."),
        "command": "python examples/train_bundled_preset.py ../shared/data/cxr --work runs/lite",
        "commit": git_commit(),
        "seed": SEED,
        "wall_time_seconds": {"segmenter": segmenter_summary["seconds"],
                              "classifiers_and_evaluation": round(time.time() - started, 1)},
        "data": {
            "manifest_sha256": hashlib.sha256(manifest_path.read_bytes()).hexdigest(),
            "counts": counts,
            "patients": len(manifest.patient_ids()),
            "dropped_before_split": json.loads((work / "data_report.json").read_text())["dropped"],
            "sources": sorted({row.source for row in rows}),
        },
        "recipe": {
            "segmenter": {**{k: list(v) if isinstance(v, tuple) else v for k, v in SEGMENTER.items()},
                          "config": SEGMENTER_CONFIG.to_dict(), "loss": "Dice + BCE",
                          "data": "seg train split; best epoch by validation Dice on the seg val split",
                          "best_validation_dice": segmenter_summary["best_value"],
                          "best_epoch": segmenter_summary["best_epoch"]},
            "classifiers": {
                "input_size": CLASSIFIER_SIZE,
                "members": {n: {**{k: list(v) if isinstance(v, tuple) else v for k, v in spec.items()},
                                **final_record[n]} for n, spec in MEMBERS.items()},
                "config": CLASSIFIER_CONFIG.to_dict(),
                "preprocessing": PREPROCESSING.to_dict(),
                "final_training": "all cls images, for the median cross-validation best epoch of each member",
            },
            "ensemble": {"description": "weighted average, weights minimising out-of-fold log-loss; Youden "
                                        "threshold on the out-of-fold ensemble scores", **fit.to_dict()},
        },
        "validation": {
            "protocol": (f"patient-grouped, label-stratified {FOLDS}-fold cross-validation on all cls images; "
                         "in each fold an inner patient-grouped split (1/7) of the training folds chooses the "
                         "epoch; ensemble weights and thresholds are fitted on the other folds' out-of-fold "
                         "scores only (cross-fitted), so no number below was tuned on the images it scores. "
                         f"95% intervals: patient-level bootstrap, {N_RESAMPLES} resamples."),
            "segmenter": segmenter_report,
            "cross_validation": cv_report,
            "cross_validation_best_epochs": best_epochs,
            "leave_one_source_out": loso,
        },
    }
    preset = pipeline.save_to_preset(args.out, training=training, overwrite=True,
                                     description="covidcxr_lite: lung ResUnet 128 + two ResUnet-encoder "
                                                 "classifiers (96 px), COVID-19 vs non-COVID; research use only")
    Pipeline.from_preset(preset)  # the preset loads back
    (work / "training_record.json").write_text(json.dumps(training, indent=2))
    print(f"preset written to {preset} in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
