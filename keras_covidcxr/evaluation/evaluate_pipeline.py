"""`evaluate_pipeline`: the paper's tables (each CNN, weighted average, majority vote) and a shortcut probe."""

import collections
import csv
import dataclasses
import os

import numpy as np

from keras_covidcxr.data.class_names import class_name_for
from keras_covidcxr.data.manifest import read_manifest
from keras_covidcxr.data.source_shortcut import source_shortcut
from keras_covidcxr.errors import InputError
from keras_covidcxr.evaluation.split_rows import rows_to_score
from keras_covidcxr.io.atomic import atomic_write
from keras_covidcxr.metrics.bootstrap import percentile_interval, resample_patients
from keras_covidcxr.metrics.classification import binary_auc
from keras_covidcxr.metrics.report import (
    ReportSection,
    add_figure_note,
    figure_note,
    format_metric,
    write_report,
)
from keras_covidcxr.models.ensemble.majority_vote_ensemble import MajorityVoteEnsemble
from keras_covidcxr.models.pipeline.pipeline import Pipeline
from keras_covidcxr.models.pipeline.refer_rule import answered_metrics
from keras_covidcxr.training.provenance import fitted_overlap

# The shortcut probe's verdict: with the lungs blacked out a model should be near chance.
SHORTCUT_AUC = 0.70
REFERRED_COUNTED = "a referred image is counted by the label it would have had without the refer rule"
PREDICTED = "predicted"  # the entry of `_score`'s scores that holds the pipeline's own labels (refer included)


MIN_PROBE_IMAGES = 20  # fewer: the probe's verdicts are hedged whatever their intervals say


@dataclasses.dataclass
class Evaluation:
    """What `evaluate_pipeline` measured and wrote."""

    out_dir: object
    n_images: int
    failed: list  # (path, error) of images that got no prediction
    auc: dict  # score set -> one-vs-rest AUC of the positive class
    shortcut_suspected: bool  # the pipeline's own ensemble still scores well without lungs
    paths: list = dataclasses.field(default_factory=list)  # the scored images, in manifest order
    scores: dict = dataclasses.field(default_factory=dict)  # score set -> positive-class score per image
    shortcut_probe: dict = dataclasses.field(default_factory=dict)  # the probe's data (see `evaluate_pipeline`)
    training_overlap: dict | None = None  # images and patients shared with the classifiers' training data
    refer: dict | None = None  # the refer rule's coverage and metrics (see `evaluate_pipeline`)
    ensemble_key: str = "weighted_average"  # the pipeline's own score set among `auc` and the probe's
    source_shortcut: object = None  # `SourceShortcut` of the scored images (None: fewer than two sources)

    @property
    def shortcut_possible(self):
        """The pipeline's own ensemble, below the verdict's AUC without lungs, still ranks above chance there
        (its 95% interval excludes 0.5)."""
        entry = self.shortcut_probe.get("score_sets", {}).get(self.ensemble_key, {})
        return not self.shortcut_suspected and bool(entry.get("above_chance_without_lungs"))

    @property
    def too_few_to_probe(self):
        """The probe scored fewer than `MIN_PROBE_IMAGES` images: its verdicts are hedged."""
        return bool(self.shortcut_probe) and self.shortcut_probe.get("n_images", 0) < MIN_PROBE_IMAGES


def training_overlap(pipeline, rows):
    """{"images", "patients"} of `rows` whose patient the preset's classifiers were fitted on.

    None when the preset does not record its training patients (metadata training.data:
    classifier_fit_patients_sha256, or the plain classifier_fit_patient_ids of public collections).
    Such images make every metric optimistic.
    """
    return fitted_overlap(pipeline.metadata, rows)


def evaluate_pipeline(
    pipeline, manifest, out_dir, split="test", batch_size=8, shortcut_probe=True, n_resamples=1000, overwrite=False,
    manifest_path=None,
):
    """Score every member and both ensembles on a split; write report.json, report.md, scores.csv, plots.

    `pipeline` is a `Pipeline` or a preset handle (folder, registered name, hf://...); `manifest` is a
    `Manifest` or the path of a manifest CSV; for a `Manifest` read from a CSV, give that
    CSV as `manifest_path` so the report names it and its sha256 ("What was evaluated").

    The pipeline's own ensemble is scored as it decides; the other ensemble is
    computed from the members (equal weights for a weighted average built from
    a majority-vote preset). A majority vote is scored by its vote shares (the
    fraction of members voting for each class), so its AUC is that of a voter.
    Operating thresholds are reported for covid (vs rest).

    Hard labels (confusion matrices, sensitivity, specificity) follow the
    pipeline's own decision rule (`pipeline.decision_rule`: the preset's
    operating threshold, or the one given with `with_decision_threshold`):
    the pipeline's ensemble at its threshold, each member at the threshold it
    votes at, the majority vote by its votes. The other ensemble, computed
    from the members, has no fitted threshold and uses 0.5 (the most probable
    class). Report.md says which rule each row used; report.json has it under
    "decision_rule" (the pipeline's) and in each model's entry. Youden's and
    a 95%-sensitivity threshold are reported beside them, labelled as such.

    With a calibrated preset, the score set "calibrated" holds the pipeline's
    own (calibrated) probabilities beside "weighted_average" (the raw ones):
    the report's calibration table gives ECE and Brier score of both. With a
    refer rule, the "Refer rule" section gives the coverage and the
    sensitivity and specificity on the answered images and on all images at
    the stored rule, and risk_coverage.png the risk-coverage curve.

    When the preset records the patients its classifiers were fitted on, the
    report's "Overlap with the training data" section (and `Evaluation.training_overlap`)
    says how many of the scored images and patients are among them.

    With `shortcut_probe`, every score set is scored again on the same images
    with the lungs only (hard lung mask) and with the lungs blacked out. A score
    set whose AUC without lungs still reaches `SHORTCUT_AUC` reads something
    outside the lungs (markers, devices, the view, the hospital): report.json
    ("shortcut_probe") and report.md ("Shortcut probe") say so for each.

    Example:
        >>> evaluation = evaluate_pipeline(pipeline, "manifest.csv", "report/")  # doctest: +SKIP
    """
    if not isinstance(pipeline, Pipeline):  # a preset handle, as `finetune` takes
        pipeline = Pipeline.from_preset(pipeline)
    evaluated = _what_is_evaluated(pipeline, manifest_path or manifest, split)
    if isinstance(manifest, (str, os.PathLike)):
        manifest = read_manifest(manifest)
    rows = rows_to_score(manifest, split)
    names = pipeline.class_names
    truth = [class_name_for(row.label, names) for row in rows]
    paths = [manifest.resolve(row) for row in rows]
    positive = names.index("covid") if "covid" in names else len(names) - 1
    is_positive = np.array([label == names[positive] for label in truth])

    kept, scores, failed = _score(pipeline, paths, batch_size)
    if not kept:  # nothing to report on: the reasons, not "no samples to score"
        shown = "; ".join(_named(path, error) for path, error in failed[:3]) + ("; ..." if len(failed) > 3 else "")
        raise InputError(f"none of the {len(rows)} images of the {split} split could be scored: {shown}")
    predicted = scores.pop(PREDICTED)
    referred = predicted == "refer"
    pick = np.array(kept, dtype=int)
    auc = {name: float(binary_auc(is_positive[pick], s[:, positive])) for name, s in scores.items()}
    ensemble_key = "majority_vote" if isinstance(pipeline.ensemble, MajorityVoteEnsemble) else "weighted_average"
    parent = evaluated.get("fine_tuned_from")
    sections, probe = {"evaluated": ReportSection("What was evaluated", evaluated, [
        f"Preset {evaluated['preset']} (fingerprint {evaluated['preset_sha256'][:12]}"
        + (f"; fine-tuned from {parent['handle']}, {parent['recipe']} recipe" if parent else "")
        + f"), the {split} split of {evaluated['manifest']}"
        + (f" (sha256 {evaluated['manifest_sha256'][:12]})" if evaluated["manifest_sha256"] else "")
        + f"; keras-covidcxr {evaluated['package_version']}."])}, {}
    if failed:  # the split the manifest defines is not the one scored: say so where the report is read
        sections["not_scored"] = ReportSection("Images not scored", {
            "images": len(failed), "of_images": len(rows),
            "files": [{"path": str(path), "error": error} for path, error in failed],
        }, [f"**{len(failed)} of the split's {len(rows)} images could not be scored** and are left out of every "
            "figure in this report:", "",
            *[f"- {_named(path, error)}" for path, error in failed]])
    rule = pipeline.decision_rule
    sections["decision_rule"] = ReportSection("The pipeline's decision rule", rule.to_dict(), [
        f"The preset's labels: {rule.describe()}. The tables above score each model's hard labels as the "
        "'Decision rules' table says"  # always there: the majority vote is scored by its votes
        + (f"; {REFERRED_COUNTED}, and 'Refer rule' gives the figures on the answered images alone."
           if rule.refer else ".")
    ])
    overlap = training_overlap(pipeline, [rows[i] for i in pick])
    if overlap is not None:
        sections["training_overlap"] = ReportSection("Overlap with the training data", overlap, [
            f"{overlap['images']} of the {overlap['of_images']} scored images ({overlap['patients']} patients) "
            "belong to patients whose films the preset was fitted on (its classifiers, or its ensemble weights "
            "and thresholds" + (", or its parent's before fine-tuning" if parent else "") + ")"
            + (": **these metrics are optimistic**." if overlap["images"] else
               " (matched by patient id: the same films under other ids, as after another anonymisation, are not "
               "found; `covidcxr data audit` finds identical pictures across manifests' splits).")
        ])
    sections["by_label"] = _labels_given(predicted, [rows[i].label for i in pick], names)
    confounding = source_shortcut([rows[i] for i in pick])
    if confounding is not None:
        sections["sources"] = ReportSection("Sources and labels", confounding.to_dict(), _sources_markdown(confounding))
    refer = None
    if rule.refer and rule.rule == "threshold":
        own = scores.get("calibrated", scores["weighted_average"])[:, positive]
        refer = _refer_summary(rule, own, is_positive[pick], referred)
        sections["refer"] = ReportSection("Refer rule", refer, _refer_markdown(refer, rule, names[positive]))
    elif rule.refer:  # film checks only (no threshold to score around): how many, and the answered films' accuracy
        answered = ~referred
        right = predicted[answered] == np.array([truth[i] for i in pick])[answered]
        accuracy = float(np.mean(right)) if right.size else float("nan")
        refer = {"rule": rule.refer, "referred": int(np.sum(referred)),
                 "answered": {"answered": int(right.size), "coverage": float(np.mean(answered)), "accuracy": accuracy}}
        sections["refer"] = ReportSection("Refer rule", refer, [
            f"Stored rule: {rule.describe()}. {refer['referred']} of the {len(pick)} images referred; "
            + (f"accuracy of the pipeline's labels on the {right.size} answered: {accuracy:.1%}." if right.size else
               "none answered.")
            + f" The tables above score every image: {REFERRED_COUNTED}."])
    if shortcut_probe:
        probe = _shortcut_probe(pipeline, paths, is_positive, positive, batch_size, (kept, scores),
                                [row.patient_id for row in rows], n_resamples)
        sections["shortcut_probe"] = ReportSection("Shortcut probe", probe, _probe_markdown(probe, ensemble_key))
    thresholds = _decision_thresholds(pipeline, ensemble_key)
    title = _title(split, len(rows), failed, overlap, confounding)
    positive_scores = {name: s[:, positive] for name, s in scores.items()}
    kept_paths = [paths[i] for i in pick]

    def write_scores_and_risk_coverage(folder, results):
        _write_scores_csv(folder / "scores.csv", kept_paths, [rows[i] for i in pick], predicted, scores, names,
                          positive)
        if refer is not None and rule.rule == "threshold":
            _plot_risk_coverage(folder / "risk_coverage.png", positive_scores, is_positive[pick], thresholds, refer,
                                figure_note(results, title))

    written = write_report(
        out_dir, scores, [truth[i] for i in pick], list(names), n_resamples=n_resamples,
        operating_class=names[positive], sections=sections, title=title,
        overwrite=overwrite, groups=[rows[i].patient_id for i in pick],
        sources=[rows[i].source or "unknown" for i in pick], views=[rows[i].view for i in pick],
        decision_thresholds=thresholds, vote_sets=("majority_vote",), also_write=write_scores_and_risk_coverage,
    )
    suspected = bool(probe and probe["score_sets"][ensemble_key]["shortcut_suspected"])
    return Evaluation(written.directory, len(kept), failed, auc, suspected, kept_paths, positive_scores, probe,
                      overlap, refer, ensemble_key, confounding)


def _what_is_evaluated(pipeline, manifest, split):
    """The preset, the manifest and the split a report is about, with their fingerprints."""
    from keras_covidcxr.inference.batch_prediction import model_sha256
    from keras_covidcxr.presets.checksums import sha256_of_file
    from keras_covidcxr.version import __version__

    path = os.fspath(manifest) if isinstance(manifest, (str, os.PathLike)) else None
    training = pipeline.metadata.get("training") or {}
    parent, recipe = training.get("parent"), training.get("recipe") or {}
    fine_tuned_from = {"handle": str(parent.get("handle") or "a pipeline built in Python"),
                       "recipe": str(recipe.get("members_recipe") or "fine-tuning")
                       } if isinstance(parent, dict) and recipe.get("name") == "finetune" else None
    return {"preset": str(pipeline.metadata.get("loaded_from") or "a pipeline built in Python"),
            "preset_sha256": model_sha256(pipeline),
            "manifest": os.path.abspath(path) if path else "a Manifest built in Python",
            "manifest_sha256": sha256_of_file(path) if path and os.path.isfile(path) else None,
            "split": split, "package_version": __version__,
            **({"fine_tuned_from": fine_tuned_from} if fine_tuned_from else {})}


def _named(path, error):
    """An image's error naming its file once (most errors name it already)."""
    return str(error) if str(error).startswith(str(path)) else f"{path}: {error}"


def _title(split, n_rows, failed, overlap, confounding):
    """The report's title, with what a reader must know before any figure: images left out, training films,
    labels that the source alone tells apart."""
    notes = [f"{len(failed)} of its {n_rows} images not scored: see 'Images not scored'"] if failed else []
    if overlap and overlap["images"]:
        notes.append(f"{overlap['images']} of {overlap['of_images']} scored images from patients the preset was "
                     "trained on: optimistic, see 'Overlap with the training data'")
    if confounding is not None and confounding.risky_labels:
        notes.append(f"the source alone tells apart {confounding.describe_risky()}: see 'Sources and labels'")
    return f"Evaluation on the {split} split" + (f" ({'; '.join(notes)})" if notes else "")


def _labels_given(predicted, manifest_labels, class_names):
    """The pipeline's own labels of the images of each manifest label (normal and pneumonia apart, though both
    may be one class here)."""
    answers = [*class_names, "refer"] if "refer" in set(predicted) else list(class_names)
    given = collections.Counter(zip(manifest_labels, predicted))
    counts = {label: {answer: given[label, answer] for answer in answers} for label in sorted(set(manifest_labels))}
    lines = ["The pipeline's own labels of the images of each manifest label (its decision rule, as above):", "",
             "| manifest label | images | " + " | ".join(f"labelled {answer}" for answer in answers) + " |",
             "|---|---|" + "---|" * len(answers)]
    for label, by_answer in counts.items():
        total = sum(by_answer.values())
        lines.append(f"| {label} | {total} | "
                     + " | ".join(f"{n} ({n / total:.0%})" for n in by_answer.values()) + " |")
    return ReportSection("Labels given, by manifest label", counts, lines)


def _sources_markdown(confounding):
    """The scored images' labels by source, and whether the source alone tells a label apart."""
    labels = confounding.labels
    lines = ["| source | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    lines += [f"| {source} | " + " | ".join(str(by_label.get(label, 0)) for label in labels) + " |"
              for source, by_label in confounding.counts.items()]
    aucs = ", ".join(f"{label} {value:.2f}" for label, value in confounding.auc.items())
    lines += ["", f"Source-only AUC of each label vs the rest (every image scored by its label's share of its source; "
              f"0.5: the source says nothing): {aucs}."]
    if confounding.risky_labels:
        lines.append(f"**The source alone tells apart {confounding.describe_risky()}**: on these images a model that "
                     "recognises the hospital (its scanner, processing, markers) scores as well as one that reads the "
                     "lungs, so these figures cannot tell which this one does. Read the by-source tables, and "
                     "evaluate on sources that hold every label.")
    return lines


def _refer_summary(rule, calibrated_positive, is_positive, referred):
    """Coverage and metrics on the answered and on all images at the stored rule and threshold."""
    answered = answered_metrics(calibrated_positive, is_positive, rule.threshold, referred)
    everything = answered_metrics(calibrated_positive, is_positive, rule.threshold, np.zeros_like(referred))
    referred = np.asarray(referred, bool)
    return {"rule": rule.refer, "threshold": rule.threshold, "referred": int(np.sum(referred)),
            "referred_positive": int(np.sum(referred & is_positive)),
            "referred_negative": int(np.sum(referred & ~is_positive)),
            "answered": answered, "all": everything}


def _refer_markdown(refer, rule, positive_class):
    answered, everything = refer["answered"], refer["all"]

    def rate(value):
        return "n/a" if value is None or not np.isfinite(value) else f"{value:.1%}"

    return [
        f"{'Rule' if rule.origin == 'user' else 'Stored rule'}: {rule.describe()}. {refer['referred']} "
        f"{'image' if refer['referred'] == 1 else 'images'} referred ({refer['referred_positive']} {positive_class}, "
        f"{refer['referred_negative']} other); coverage {rate(answered['coverage'])}. The tables "
        f"above score every image: {REFERRED_COUNTED} (the 'all' row below); the 'answered' row leaves the referred "
        "out.",
        "",
        "| Images | n | sensitivity | specificity |",
        "|---|---|---|---|",
        f"| answered | {answered['answered']} | {rate(answered['sensitivity'])} | {rate(answered['specificity'])} |",
        f"| all (no refer) | {everything['answered']} | {rate(everything['sensitivity'])} | "
        f"{rate(everything['specificity'])} |",
        "",
        "![risk-coverage](risk_coverage.png)",
    ]


def _plot_risk_coverage(path, positive_scores, is_positive, thresholds, refer, note):
    from keras_covidcxr.metrics.plots import plot_risk_coverage, save_figure
    from keras_covidcxr.metrics.risk_coverage import risk_coverage_curve

    curves = {name: risk_coverage_curve(positive_scores[name], is_positive, thresholds[name])
              for name in ("calibrated", "weighted_average") if name in positive_scores and name in thresholds}
    answered = refer["answered"]
    point = (answered["coverage"], 1.0 - answered["accuracy"], "the stored refer rule")
    save_figure(add_figure_note(plot_risk_coverage(curves, point), note), path)


def _decision_thresholds(pipeline, ensemble_key):
    """Score set -> the threshold on p(positive) its hard labels are decided at (two classes only)."""
    if len(pipeline.class_names) != 2:
        return None
    thresholds = dict(zip(pipeline.ensemble.member_names, pipeline.ensemble.vote_thresholds))
    thresholds["majority_vote"] = 0.5  # vote shares: the winner holds at least half (ties nudged to it)
    rule = pipeline.decision_rule
    if rule.rule == "threshold" and (ensemble_key == "weighted_average" or rule.origin == "user"):
        thresholds["weighted_average"] = rule.threshold
        if pipeline.calibration is not None:  # the rule is stated on calibrated probabilities
            thresholds["calibrated"] = rule.threshold
            thresholds["weighted_average"] = float(pipeline.calibration.invert_positive(rule.threshold))
    return thresholds


def _shortcut_probe(pipeline, paths, is_positive, positive, batch_size, scored, patients, n_resamples):
    """AUC of every score set with the lungs only and with the lungs removed, on the images both passes kept,
    the latter with a 95% patient-bootstrap interval.

    `scored` is the (kept, scores) of `pipeline` itself, reused when it already masks the lungs only.
    """
    passes = {}
    for tag, masking in (("lungs_only", "hard"), ("lungs_removed", "lungs_removed")):
        probe_pipeline = pipeline.with_preprocessing(masking=masking, fall_back_to_unmasked=False)
        if probe_pipeline.preprocessing == pipeline.preprocessing:
            kept, scores = scored
        else:
            kept, scores, _ = _score(probe_pipeline, paths, batch_size)
            scores.pop(PREDICTED)
        passes[tag] = ({index: row for row, index in enumerate(kept)}, scores)
    common = sorted(set(passes["lungs_only"][0]) & set(passes["lungs_removed"][0]))
    truth = is_positive[common]
    resamples = list(resample_patients([patients[i] for i in common], n_resamples)) if common else []
    score_sets = {}
    for name in passes["lungs_only"][1]:
        aucs, values = {}, {}
        for tag, (row_of, scores) in passes.items():
            values[tag] = scores[name][[row_of[i] for i in common], positive]
            auc = float(binary_auc(truth, values[tag])) if common else float("nan")
            aucs[f"auc_{tag}"] = auc if np.isfinite(auc) else None  # None: one class only, AUC undefined
        removed = aucs["auc_lungs_removed"]
        without_lungs = values["lungs_removed"]
        low, high = percentile_interval([binary_auc(truth[pick], without_lungs[pick]) for pick in resamples])
        aucs["auc_lungs_removed_ci"] = None if removed is None or not np.isfinite(low) else [low, high]
        aucs["shortcut_suspected"] = None if removed is None else bool(removed >= SHORTCUT_AUC)
        # below the threshold, but chance (0.5) outside the interval: the scores still read something there
        aucs["above_chance_without_lungs"] = None if aucs["auc_lungs_removed_ci"] is None else bool(low > 0.5)
        score_sets[name] = aucs
    return {"threshold_auc": SHORTCUT_AUC, "n_images": len(common), "score_sets": score_sets}


def _probe_markdown(probe, ensemble_key):
    lines = [
        f"Every score set rescored on the same {probe['n_images']} images with the lungs only (hard lung mask) "
        f"and with the lungs blacked out. Without lungs a model should be near chance (AUC 0.5); one that still "
        f"reaches AUC {probe['threshold_auc']:.2f} reads something outside the lungs: markers, devices, the view, "
        "the hospital. Below that, an interval (95%, patients resampled) above 0.5 says it still reads something "
        "there.",
        "",
        "| Scores | AUC lungs only | AUC lungs removed [95% CI] | Shortcut suspected |",
        "|---|---|---|---|",
    ]
    for name, entry in probe["score_sets"].items():
        only, removed, interval = entry["auc_lungs_only"], entry["auc_lungs_removed"], entry["auc_lungs_removed_ci"]
        removed_text = format_metric("auc", {"value": removed, "ci": interval or [None, None]})
        lines.append(f"| {name} | {'n/a' if only is None else f'{only:.3f}'} | {removed_text} | {_verdict(entry)} |")
    suspected = [name for name, entry in probe["score_sets"].items() if entry["shortcut_suspected"]]
    above_chance = [name for name, entry in probe["score_sets"].items()
                    if not entry["shortcut_suspected"] and entry["above_chance_without_lungs"]]
    lines.append("")
    few = probe["n_images"] < MIN_PROBE_IMAGES  # a resampled interval of a handful of films says nothing
    uncertain = suspected if few else [
        name for name in suspected if (probe["score_sets"][name]["auc_lungs_removed_ci"] or [0.5])[0] <= 0.5]
    if suspected:
        lines.append(f"**Shortcut suspected for {', '.join(suspected)}.** Their scores do not rest on the lungs alone.")
        if uncertain:
            why = (f"only {probe['n_images']} images were probed" if few
                   else "the interval still reaches chance (0.5)")
            lines.append(f"For {', '.join(uncertain)} {why}: too few images to be sure; rerun on more.")
    elif all(entry["auc_lungs_removed"] is None for entry in probe["score_sets"].values()):
        lines.append("AUC is undefined here (the images hold one class only): the probe cannot tell.")
    else:
        lines.append(f"No score set reaches AUC {probe['threshold_auc']:.2f} without the lungs.")
    if above_chance:
        lines.append(f"**{', '.join(above_chance)} still rank{'s' if len(above_chance) == 1 else ''} the films above "
                     "chance without the lungs** (the interval excludes 0.5): part of their signal lies outside them.")
    if ensemble_key in suspected + above_chance:
        lines.append(f"This includes the preset's own ensemble ({ensemble_key}).")
    return lines


def _verdict(entry):
    if entry["shortcut_suspected"] is None:
        return "n/a"
    if entry["shortcut_suspected"]:
        return "**yes**"
    return "possible: above chance" if entry["above_chance_without_lungs"] else "no"


def _write_scores_csv(path, image_paths, rows, predicted, scores, class_names, positive):
    """One row per scored image: its path, patient, true label, the pipeline's label and every score set's
    positive-class score (column: the score set's name); with more than two classes every class's score
    (column "<score set>:<class>"), so each class's figures can be recomputed from the file."""
    columns = [(name, positive, name) for name in scores] if len(class_names) == 2 else [
        (name, c, f"{name}:{class_names[c]}") for name in scores for c in range(len(class_names))]
    with atomic_write(path, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", "patient_id", "label", "predicted_label", *(title for _, _, title in columns)])
        for i, (image_path, row) in enumerate(zip(image_paths, rows)):
            # every digit: a score on a threshold must read back on the same side of it
            values = [repr(float(scores[name][i, c])) for name, c, _ in columns]
            writer.writerow([str(image_path), row.patient_id, row.label, predicted[i], *values])


def _score(pipeline, paths, batch_size):
    """(indices that got a result, {score set name: (n, classes) array}, [(path, error)]).

    With a calibration, the score set "calibrated" holds the pipeline's own probabilities. One entry
    is not a score set: `PREDICTED`, (n,) the pipeline's own label of each image ("refer" included).
    """
    names = pipeline.class_names
    kept, failed, member_probs, member_votes, labels, calibrated, predicted = [], [], [], [], [], [], []
    chunk = max(batch_size, 32)  # bounded memory: results (with masks) are dropped per chunk
    for start in range(0, len(paths), chunk):
        results = pipeline.predict(paths[start : start + chunk], batch_size=batch_size, on_error="record")
        for offset, result in enumerate(results):
            if result.error:
                failed.append((paths[start + offset], result.error))
                continue
            kept.append(start + offset)
            members = list(result.members.values())
            member_probs.append([[m["probabilities"][c] for c in names] for m in members])
            member_votes.append([names.index(m["label"]) for m in members])
            labels.append(names.index(result.would_be_label or result.label))
            calibrated.append([result.probabilities[c] for c in names])
            predicted.append(result.label)
    member_names = pipeline.ensemble.member_names
    stacked = np.array(member_probs, "float64").reshape(len(kept), len(member_names), len(names))
    scores = {name: stacked[:, m] for m, name in enumerate(member_names)}
    weights = getattr(pipeline.ensemble, "weights_normalised", None) or [1 / len(member_names)] * len(member_names)
    scores["weighted_average"] = np.einsum("nmc,m->nc", stacked, np.asarray(weights))
    votes = np.array(member_votes, int).reshape(len(kept), len(member_names))
    own_votes = labels if pipeline.decision_rule.rule == "majority_vote" else None
    scores["majority_vote"] = _vote_shares(votes, stacked, own_votes)
    if pipeline.calibration is not None:
        scores["calibrated"] = np.array(calibrated, "float64").reshape(len(kept), len(names))
    scores[PREDICTED] = np.array(predicted, dtype=object)
    return kept, scores, failed


def _vote_shares(votes, member_probabilities, winners=None):
    """Vote fractions per class, nudged towards the winner of each tie.

    `winners` are the ensemble's own labels (any tie rule); without them a tie
    goes to the class with the higher mean probability (the default rule).
    """
    n, members, classes = member_probabilities.shape
    shares = np.zeros((n, classes))
    for m in range(members):
        shares[np.arange(n), votes[:, m]] += 1.0 / members
    if winners is None:
        winners = np.argmax(shares + 1e-6 * member_probabilities.mean(axis=1), axis=1)
    # Only the winner is nudged, by the same amount in every row: films with the same votes keep the
    # same score, so the AUC and operating thresholds are a voter's, not the members' mean's.
    shares[np.arange(n), winners] += 1e-6
    return shares / shares.sum(axis=1, keepdims=True)
