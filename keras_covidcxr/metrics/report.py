"""Evaluation reports: several models' probabilities on one test set -> JSON, Markdown and PNG plots.

The report is generic: it takes named score sets (members and ensembles alike), the truth and
each image's patient, and knows nothing about models. Every metric comes with a patient-level
bootstrap confidence interval; calibration, operating thresholds (two-class or
`positive_class`) and breakdowns by source and by view are added when given.

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.choice(["covid", "normal", "pneumonia"], 60)
    >>> scores = {"weighted_average": rng.dirichlet([1, 1, 1], 60)}
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "report"
    >>> written = write_report(out, scores, truth, ["covid", "normal", "pneumonia"],
    ...                        groups=np.arange(60) // 2, n_resamples=50)
    >>> sorted(p.name for p in written.files)[:3]
    ['confusion_weighted_average.png', 'reliability.png', 'report.json']
"""

import dataclasses
import fnmatch
import json
import re
import textwrap
from pathlib import Path

import numpy as np

from keras_covidcxr.errors import ConfigError, OutputExistsError
from keras_covidcxr.io.atomic import atomic_directory, atomic_write
from keras_covidcxr.metrics.bootstrap import bootstrap_metrics, wilson_interval
from keras_covidcxr.metrics.breakdown import metrics_by_group
from keras_covidcxr.metrics.calibration import brier_score, reliability_curve
from keras_covidcxr.metrics.classification import (
    METRIC_TITLES,
    OVERALL_METRICS,
    PER_CLASS_METRICS,
    metrics_from_indices,
    positive_index,
    predict_labels,
)
from keras_covidcxr.metrics.inputs import check_class_names, check_groups, check_inputs
from keras_covidcxr.metrics.thresholds import threshold_for_sensitivity, youden_threshold

SCREENING_SENSITIVITY = 0.95  # the operating point reported beside Youden's


def _number(value):
    return None if value is None or not np.isfinite(value) else float(value)


def _with_interval(values, intervals, counts, confidence):
    """metric -> {"value", "ci"}; a rate of exactly 0 or 1, where every bootstrap resample agrees, gets a
    Wilson score interval on its patients (the resampling unit) instead (a percentile interval would claim
    [100%, 100%])."""
    cells = {}
    for metric in values:
        value, ci = _number(values[metric]), [_number(v) for v in intervals[metric]]
        if metric in counts and value in (0.0, 1.0) and ci[0] == ci[1] == value:
            ci = wilson_interval(round(value * counts[metric]), counts[metric], confidence)
        cells[metric] = {"value": value, "ci": ci}
    return cells


def _rate_counts(labels, predictions, groups, n_classes):
    """The patients behind each rate's denominator: {"accuracy": n, class index: {metric: n}}."""
    def patients(images):
        return len(np.unique(groups[images]))

    counts = {"accuracy": patients(np.ones(len(labels), bool))}
    for c in range(n_classes):
        counts[c] = {"sensitivity": patients(labels == c), "specificity": patients(labels != c),
                     "ppv": patients(predictions == c), "npv": patients(predictions != c)}
    return counts


def _operating_points(is_positive, scores):
    if is_positive.all() or not is_positive.any():
        return None
    points = {
        "youden": youden_threshold(is_positive, scores).to_dict(),
        f"sensitivity_{SCREENING_SENSITIVITY:g}": threshold_for_sensitivity(
            is_positive, scores, SCREENING_SENSITIVITY
        ).to_dict(),
    }
    for point in points.values():
        point["threshold_text"] = threshold_text(point["threshold"], scores)
    return points


def threshold_text(threshold, scores, places=3):
    """The threshold written with the fewest decimals (at least `places`) that calls the same scores positive.

    A threshold is one of the scores; rounded to 3 decimals it can pass that score (0.95664 as "0.957"), and
    the figures beside it would not hold for the printed number.

    Example:
        >>> threshold_text(0.95664, np.array([0.2, 0.95664, 0.99])), threshold_text(0.95664, np.array([0.9566, 0.95664]))
        ('0.956', '0.95664')
    """
    threshold, scores = float(threshold), np.asarray(scores, "float64")  # as a threshold given as text is compared
    below = scores[scores < threshold]
    lower = float(below.max()) if below.size else -np.inf
    for decimals in range(places, 12):
        text = f"{np.floor(threshold * 10**decimals) / 10**decimals:.{decimals}f}"
        if lower < float(text) <= threshold:
            return text
    return repr(float(threshold))


def _positive_for_thresholds(class_names, positive_class, operating_class):
    for choice in (operating_class, positive_class):
        if choice is not None:
            return choice
    return class_names[1] if len(class_names) == 2 else None


def evaluate_models(
    scores,
    y_true,
    class_names,
    groups=None,
    sources=None,
    views=None,
    positive_class=None,
    n_resamples=1000,
    confidence=0.95,
    seed=0,
    n_bins=10,
    operating_class=None,
    decision_thresholds=None,
    vote_sets=(),
):
    """The report's content as a JSON-ready dict (see `write_report` for the arguments)."""
    names = check_class_names(class_names)
    if not scores:
        raise ConfigError("no score sets to evaluate")
    labels = None
    checked = {}
    for model, y_prob in scores.items():
        model_labels, probs = check_inputs(y_true, y_prob, names)
        labels = model_labels
        checked[str(model)] = probs
    group_ids = check_groups(groups, len(labels))
    decision_thresholds = dict(decision_thresholds or {})
    if decision_thresholds and len(names) != 2:
        raise ConfigError("decision thresholds apply to two-class reports only")
    threshold_class = _positive_for_thresholds(names, positive_class, operating_class)
    if threshold_class is not None and threshold_class not in names:
        raise ConfigError(f"positive_class {threshold_class!r} is not one of {', '.join(names)}")
    results = {
        "class_names": list(names),
        "n_images": len(labels),
        "n_patients": len(np.unique(group_ids)) if groups is not None else None,
        "support": {name: int(np.sum(labels == i)) for i, name in enumerate(names)},
        "positive_class": threshold_class,
        "confidence": confidence,
        "n_resamples": int(n_resamples),
        "seed": seed,
        "resampling_unit": "patient" if groups is not None else "image (no patient ids given)",
        "models": {},
    }
    positive = positive_index(names, positive_class)  # whose rates `overall` holds (None: macro averages)
    for model, probs in checked.items():
        threshold = decision_thresholds.get(model)
        point = metrics_from_indices(labels, probs, names, positive_class, threshold)
        intervals = bootstrap_metrics(
            labels, probs, names, groups, n_resamples, confidence, seed, positive_class, threshold
        )
        results["averaging"] = point.averaging
        curve = reliability_curve(probs.argmax(axis=1) == labels, probs.max(axis=1), n_bins)
        counts = _rate_counts(labels, predict_labels(probs, threshold), group_ids, len(names))
        overall_counts = {"accuracy": counts["accuracy"], **(counts[positive] if positive is not None else {})}
        entry = {
            "overall": _with_interval(point.overall, intervals["overall"], overall_counts, confidence),
            "per_class": {
                name: _with_interval(point.per_class[name], intervals["per_class"][name], counts[c], confidence)
                for c, name in enumerate(names)
            },
            "decision_rule": (
                {"rule": "threshold", "positive_class": names[1], "threshold": float(threshold)}
                if threshold is not None else {"rule": "argmax"}
            ),
            "confusion_matrix": point.confusion_matrix.tolist(),
            "calibration": {**curve.to_dict(), "brier_score": brier_score(labels, probs, names)},
        }
        if model in vote_sets:  # shares of votes: no calibration to speak of, no thresholds between vote counts
            entry["scores_are_votes"] = True
            top_two = np.sort(probs, axis=1)[:, -2:]
            entry["vote_ties"] = int(np.sum(top_two[:, 1] - top_two[:, 0] < 1e-4))  # only the tie's nudge apart
        elif threshold_class is not None:
            column = names.index(threshold_class)
            entry["operating_points"] = _operating_points(labels == column, probs[:, column])
        for key, values in (("by_source", sources), ("by_view", views)):
            if values is not None:
                entry[key] = {
                    group: {
                        "n": result.n,
                        "support": result.support,
                        "overall": {m: _number(v) for m, v in result.overall.items()},
                    }
                    for group, result in metrics_by_group(
                        labels, probs, names, values, positive_class, threshold
                    ).items()
                }
        results["models"][model] = entry
    return results


# ---- Markdown ---------------------------------------------------------------------------------


NO_INTERVAL = "[no interval: the same on every resample, as for a perfect score or a class from one patient]"


def format_metric(metric, cell):
    """A report cell: `cell`'s value ("auc" as 0.xxx, others as a percentage) and its interval, "n/a" without a
    value, NO_INTERVAL when every resample gave the same value."""
    value, (low, high) = cell["value"], cell["ci"]
    if value is None:
        return "n/a"
    text = f"{value:.3f}" if metric == "auc" else f"{100 * value:.2f}%"
    if low is not None and low == high:
        # resampling cannot move it: a perfect score, or the films of a class all from one patient
        return text + f" {NO_INTERVAL}"
    if metric == "auc":
        return text + (f" [{low:.3f}, {high:.3f}]" if low is not None else "")
    return text + (f" [{100 * low:.1f}, {100 * high:.1f}]" if low is not None else "")


def _decision_lines(results):
    """How each model's hard labels (confusion matrices, sensitivity, specificity) were decided."""
    models = results["models"]
    rules = {model: entry.get("decision_rule", {"rule": "argmax"}) for model, entry in models.items()}
    if all(rule["rule"] == "argmax" and not models[model].get("scores_are_votes") for model, rule in rules.items()):
        return ["Hard labels: the most probable class.", ""]
    thresholds = any(rule["rule"] == "threshold" for rule in rules.values())
    lines = ["## Decision rules", "", f"| Model | label {'the positive' if thresholds else 'a'} class when |", "|---|---|"]
    lines += [f"| {model} | {_labelled_when(rule, models[model])} |" for model, rule in rules.items()]
    return [*lines, ""]


def _labelled_when(rule, entry):
    """When a model's hard label is its positive class, e.g. "p(covid) >= 0.761"."""
    if entry.get("scores_are_votes"):
        n = sum(map(sum, entry["confusion_matrix"]))
        ties = entry["vote_ties"]
        return (f"most of the members' votes go to it (each member votes at its own threshold); {ties} of the {n} "
                f"films {'was a tie' if ties == 1 else 'were ties'}, decided by the ensemble's tie rule (by default "
                "the class with the higher mean member probability)")
    if rule["rule"] == "threshold":
        return f"p({rule['positive_class']}) >= {rule['threshold']:.3f}"
    return "it is the most probable class"


def _metric_table(rows, metrics, one_class=False):
    """A Markdown table of `metrics` per model; with `one_class` (its class has no images, or all of them) PPV,
    NPV and F1 are n/a: they are 100% or 0% by construction there."""
    lines = [
        "| Model | " + " | ".join(METRIC_TITLES[m] for m in metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    undefined = {"value": None, "ci": [None, None]}
    for model, cells in rows:
        shown = [format_metric(m, undefined if one_class and m in ("ppv", "npv", "f1") else cells[m])
                 for m in metrics]
        lines.append(f"| {model} | " + " | ".join(shown) + " |")
    return lines


def _count(n, noun):
    """ "1 image", "2 images"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _group_table(results, key):
    lines = [
        "| Model | group | n (per class) | " + " | ".join(METRIC_TITLES[m] for m in OVERALL_METRICS) + " |",
        "|---|---|---|" + "---|" * len(OVERALL_METRICS),
    ]
    one_class_groups = False
    for model, entry in results["models"].items():
        for group, result in entry.get(key, {}).items():
            values = dict(result["overall"])
            if len(result["support"]) == 2 and 0 in result["support"].values():
                # With one class only, PPV and NPV are 100% or 0% by construction and F1 is 0 or
                # undefined: they say nothing about this group.
                values.update(ppv=None, npv=None, f1=None)
                one_class_groups = True
            cells = [format_metric(m, {"value": values[m], "ci": [None, None]}) for m in OVERALL_METRICS]
            classes = ", ".join(f"{count} {name}" for name, count in result["support"].items())
            lines.append(f"| {model} | {group} | {result['n']} ({classes}) | " + " | ".join(cells) + " |")
    if one_class_groups:
        lines += ["", "A group with films of one class only has no PPV, NPV, F1 or AUC of its own (n/a); "
                      "its accuracy is its sensitivity or specificity."]
    return lines


def _missing_class_warning(support):
    absent = [name for name, count in support.items() if not count]
    if not absent:
        return []
    return [f"**No {' or '.join(absent)} images here:** AUC and the rates that need them are undefined (n/a), "
            "and a perfect rate on one class says little. Evaluate on a split with every class."]


def render_markdown(results, title="Evaluation report", figures=None):
    """The Markdown page of a report built by `evaluate_models` (`figures`: name -> file name)."""
    figures = figures or {}
    names = results["class_names"]
    pct = f"{results['confidence'] * 100:g}"  # 97.5, not 98
    patients = f" of {_count(results['n_patients'], 'patient')}" if results["n_patients"] is not None else ""
    support = ", ".join(f"{name} {count}" for name, count in results["support"].items())
    # a class without images (or with all of them) has PPV and NPV of 100% or 0% by construction: n/a, as in the
    # group tables; in a two-class report that is the summary too
    support = results["support"]
    degenerate = {name for name, count in support.items() if count in (0, results["n_images"])}
    lines = [
        f"# {title}",
        "",
        f"{_count(results['n_images'], 'image')}{patients}; {support}.",
        *_missing_class_warning(results["support"]),
        (
            f"Values with {pct}% bootstrap confidence intervals ({results['n_resamples']} resamples by "
            f"{results['resampling_unit']}, seed {results['seed']}); a rate of 0% or 100%, where every resample "
            "agrees, gets a Wilson score interval on its patients instead. Rates in %, AUC as a fraction."
        ),
        "",
        *_decision_lines(results),
        f"## Summary ({results.get('averaging', 'macro')})",
        "",
        *_metric_table([(m, e["overall"]) for m, e in results["models"].items()], OVERALL_METRICS,
                       len(names) == 2 and bool(degenerate)),
        "",
    ]
    for name in names:
        lines += [
            f"## {name} vs rest",
            "",
            *_metric_table(
                [(m, e["per_class"][name]) for m, e in results["models"].items()], PER_CLASS_METRICS,
                name in degenerate
            ),
            "",
        ]
        if f"roc_{name}" in figures:
            lines += [f"![ROC {name}]({figures[f'roc_{name}']})", ""]
    lines += ["## Confusion matrices (rows: true, columns: predicted)", ""]
    for model, entry in results["models"].items():
        lines += [
            f"### {model}",
            "",
            "| true \\ predicted | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
        ]
        lines += [
            f"| {name} | " + " | ".join(str(c) for c in row) + " |"
            for name, row in zip(names, entry["confusion_matrix"])
        ]
        lines.append("")
        if f"confusion_{model}" in figures:
            lines += [f"![confusion {model}]({figures[f'confusion_{model}']})", ""]
    lines += ["## Calibration (top-label ECE, equal-width bins; Brier score)", "", "| Model | ECE | Brier |",
              "|---|---|---|"]
    for model, entry in results["models"].items():
        if entry.get("scores_are_votes"):
            lines.append(f"| {model} | n/a (shares of votes, not probabilities) | n/a |")
            continue
        ece, brier = entry["calibration"]["expected_calibration_error"], entry["calibration"].get("brier_score")
        lines.append(f"| {model} | {'n/a' if ece is None else f'{ece:.3f}'} | "
                     f"{'n/a' if brier is None else f'{brier:.3f}'} |")
    lines.append("")
    if "reliability" in figures:
        lines += [f"![reliability]({figures['reliability']})", ""]
    positive = results.get("positive_class")
    if positive is not None:
        key = f"sensitivity_{SCREENING_SENSITIVITY:g}"
        lines += [
            f"## Operating thresholds ({positive} vs rest)",
            "",
            (
                f"| Model | Youden threshold | sensitivity | specificity | threshold for "
                f"{SCREENING_SENSITIVITY:.0%} sensitivity | sensitivity | specificity |"
            ),
            "|---|---|---|---|---|---|---|",
        ]
        calibrated, shown = "calibrated" in results["models"], False
        for model, entry in results["models"].items():
            points = entry.get("operating_points")
            if entry.get("scores_are_votes"):
                lines.append(f"| {model} | n/a (votes) | | | n/a (votes) | | |")
                continue
            if not points:
                lines.append(f"| {model} | n/a | | | n/a | | |")
                continue
            youden, screen, shown = points["youden"], points[key], True
            lines.append(
                f"| {model} | {youden['threshold_text']} | {youden['sensitivity']:.1%} | "
                f"{youden['specificity']:.1%} | {screen['threshold_text']} | "
                f"{screen['sensitivity']:.1%} | {screen['specificity']:.1%} |"
            )
        lines += ["", "Each threshold is chosen on these same images, so its rates are optimistic for new ones; "
                  "each is on its own model's scores" + (
                      ": calibrated's on the pipeline's calibrated probabilities (the scale `--threshold` and "
                      "`with_decision_threshold` take), weighted_average's on the members' raw mean" if calibrated
                      else "") + "."] if shown else []
        lines.append("")
    for key, heading in (("by_source", "By source"), ("by_view", "By view")):
        if any(key in entry for entry in results["models"].values()):
            lines += [f"## {heading}", "", *_group_table(results, key), ""]
    return "\n".join(lines)


# ---- files ------------------------------------------------------------------------------------


def _slug(text):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "model"


@dataclasses.dataclass
class ReportSection:
    """An extra part of a report: `data` for report.json, `heading` and Markdown `lines` for report.md."""

    heading: str
    data: object
    lines: list


@dataclasses.dataclass
class WrittenReport:
    """Where a report went: its folder, every file written, and the results dict."""

    directory: Path
    files: list
    results: dict


def write_report(
    out_dir,
    scores,
    y_true,
    class_names,
    *,
    groups=None,
    sources=None,
    views=None,
    positive_class=None,
    operating_class=None,
    n_resamples=1000,
    confidence=0.95,
    seed=0,
    n_bins=10,
    title="Evaluation report",
    sections=None,
    overwrite=False,
    decision_thresholds=None,
    vote_sets=(),
    also_write=None,
):
    """Evaluate `scores` and write report.json, report.md and PNG plots into `out_dir`, atomically.

    Args:
        out_dir: the report folder. It must not exist, be empty, or (with `overwrite`) hold an
            earlier report; anything else is refused, so nothing of the user's is lost.
        scores: model name -> probabilities (n, n_classes), e.g. `{"densenet201": p1,
            "weighted_average": p2, "majority_vote": p3}` (hard votes as one-hot rows).
        y_true: true labels (class names or indices).
        class_names: the classes, in the order of the probability columns.
        groups: patient id per image, for the patient-level bootstrap (strongly advised).
        sources, views: per-image source and view, for the breakdown tables.
        positive_class: report this class's one-vs-rest values as the summary and pick
            operating thresholds for it (default for two classes: `class_names[1]`).
        operating_class: pick operating thresholds for this class only, keeping the summary
            macro-averaged (e.g. "covid" in a 3-class report).
        n_resamples, confidence, seed: the bootstrap (paper-style 95% intervals by default).
        n_bins: calibration bins.
        sections: extra parts of the report, key -> `ReportSection`: its data goes into
            report.json under the key, its heading and lines at the end of report.md.
        decision_thresholds: two classes: model name -> the threshold on p(class_names[1]) at
            which that model labels the positive class (its operating threshold); hard-label
            metrics of the other models use the most probable class. Each model's rule is in
            report.json ("decision_rule") and in report.md.
        vote_sets: names of score sets that are shares of the members' votes (a majority vote), not
            probabilities: they get no calibration figures and no operating thresholds
            (report.json marks them "scores_are_votes").
        also_write: callable(folder, results) writing more of the report's files (`REPORT_FILES`) into
            the folder before it replaces an earlier report, so the report is replaced whole or not at all.

    Returns:
        `WrittenReport`.
    """
    results = evaluate_models(
        scores,
        y_true,
        class_names,
        groups,
        sources,
        views,
        positive_class,
        n_resamples,
        confidence,
        seed,
        n_bins,
        operating_class,
        decision_thresholds,
        vote_sets,
    )
    sections = sections or {}
    results.update({key: section.data for key, section in sections.items()})
    out_dir = Path(out_dir)
    figures = _figure_names(results)
    check_report_folder(out_dir, overwrite)
    try:
        with atomic_directory(out_dir, replace_if=lambda path: _replaceable(path, overwrite)) as folder:
            _write_figures(folder, figures, results, scores, y_true, class_names, figure_note(results, title))
            with atomic_write(folder / "report.json", "w") as handle:
                json.dump(_json_numbers(results), handle, indent=2, allow_nan=False)
                handle.write("\n")
            with atomic_write(folder / "report.md", "w") as handle:
                handle.write(render_markdown(results, title, figures) + "\n")
                for section in sections.values():
                    handle.write("\n".join(["", f"## {section.heading}", "", *section.lines]) + "\n")
            if also_write is not None:
                also_write(folder, results)
    except OutputExistsError as error:  # appeared meanwhile
        raise ConfigError(f"{out_dir}: exists and is not an empty folder or an earlier report") from error
    files = sorted(path for path in out_dir.iterdir() if path.is_file())  # a new folder: only what was written
    return WrittenReport(out_dir, files, results)


def figure_note(results, title):
    """What a figure copied out of a report must still say: the report's title (its warnings) and the images."""
    support = ", ".join(f"{name} {count}" for name, count in results["support"].items())
    return f"{title}: {results['n_images']} images ({support})."


def add_figure_note(figure, note):
    """`note` under `figure`, wrapped to its width (about 6.5 pixels a character at this size)."""
    width = int(figure.get_size_inches()[0] * figure.dpi / 6.5)
    figure.supxlabel(textwrap.fill(note, width), fontsize=7, color="0.3")
    return figure


def _json_numbers(value):
    """`value` with NaN and infinities (a metric undefined on one class) as None: JSON has no NaN."""
    if isinstance(value, dict):
        return {key: _json_numbers(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_numbers(item) for item in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def check_report_folder(out_dir, overwrite=False):
    """Refuse a report folder that `write_report` would refuse, before any work is done.

    It may be missing, an empty folder, or (with `overwrite`) a folder holding an earlier report.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not _replaceable(out_dir, overwrite):
        others = _not_report_files(out_dir) if out_dir.is_dir() and (out_dir / "report.json").is_file() else []
        if others:
            raise ConfigError(
                f"{out_dir}: holds an earlier report and files that are not part of it "
                f"({', '.join(others[:3])}{', ...' if len(others) > 3 else ''}); replacing the folder would "
                "delete them: move them or choose another folder"
            )
        hint = "" if overwrite else "; replace an earlier report with overwrite=True (covidcxr evaluate --overwrite)"
        raise ConfigError(f"{out_dir}: exists and is not an empty folder or an earlier report{hint}")


# What a report folder holds (write_report's files, evaluate_pipeline's scores and risk-coverage plot):
# a folder holding anything else is not replaced.
REPORT_FILES = ("report.json", "report.md", "scores.csv", "roc_*.png", "confusion_*.png", "reliability.png",
                "risk_coverage.png")


def _not_report_files(path):
    return sorted(entry.name for entry in path.iterdir()
                  if not (entry.is_file() and any(fnmatch.fnmatchcase(entry.name, name) for name in REPORT_FILES)))


def _replaceable(path, overwrite):
    if not path.is_dir():
        return False
    if not any(path.iterdir()):
        return True
    return overwrite and (path / "report.json").is_file() and not _not_report_files(path)


def _figure_names(results):
    names = results["class_names"]
    roc_classes = [results["positive_class"]] if len(names) == 2 and results["positive_class"] else names
    figures = {f"roc_{name}": f"roc_{_slug(name)}.png" for name in roc_classes}
    figures.update({f"confusion_{model}": f"confusion_{_slug(model)}.png" for model in results["models"]})
    figures["reliability"] = "reliability.png"
    if len(set(figures.values())) != len(figures):
        raise ConfigError(f"model or class names {list(results['models'])} give clashing plot file names")
    return figures


def _write_figures(folder, figures, results, scores, y_true, class_names, note=None):
    from keras_covidcxr.metrics.plots import (
        plot_confusion_matrix,
        plot_reliability,
        plot_roc_curves,
        save_figure,
    )

    names = check_class_names(class_names)
    checked = {str(model): check_inputs(y_true, probs, names) for model, probs in scores.items()}
    for key, file_name in figures.items():
        if key.startswith("roc_"):
            name = key[len("roc_") :]
            column = names.index(name)
            curves = {
                model: (labels == column, probs[:, column]) for model, (labels, probs) in checked.items()
            }
            figure = plot_roc_curves(curves, f"ROC: {name} vs rest")
        elif key.startswith("confusion_"):
            model = key[len("confusion_") :]
            entry = results["models"][model]
            rule = entry.get("decision_rule", {"rule": "argmax"})
            caption = ("labels: the members' majority vote" if entry.get("scores_are_votes") else
                       f"{rule['positive_class']} when {_labelled_when(rule, entry)}" if rule["rule"] == "threshold"
                       else "labels: the most probable class")
            figure = plot_confusion_matrix(entry["confusion_matrix"], names, f"{model}\n{caption}")
        else:
            n_bins = len(next(iter(results["models"].values()))["calibration"]["counts"])
            curves = {
                model: reliability_curve(probs.argmax(axis=1) == labels, probs.max(axis=1), n_bins)
                for model, (labels, probs) in checked.items() if not results["models"][model].get("scores_are_votes")
            }
            figure = plot_reliability(curves)
        save_figure(add_figure_note(figure, note) if note else figure, folder / file_name)
