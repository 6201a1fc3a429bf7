"""What the overlay pictures say: the captions written under a `PipelineResult`'s overlays.

Example:
    >>> from keras_covidcxr.models.pipeline.pipeline_result import PipelineResult
    >>> result = PipelineResult("chest.png", lung_fraction=0.31, lung_components=2)
    >>> mask_caption(result)[:2]
    ['Lung mask (tinted, magenta edge): 31.0% of the image in 2 piece(s)', 'Mask QC: ok']
"""

import os
from pathlib import Path

DISCLAIMER = "Research use only, not for diagnosis."


def printable_text(text):
    """`text` (a path, a file name) with bytes that are not UTF-8 written as escapes: fonts, terminals and
    JSON readers cannot take them (a Latin-1 file system's names).

    Example:
        >>> printable_text(os.fsdecode(b"caf\\xe9.png"))
        'caf\\\\xe9.png'
    """
    return os.fsencode(text).decode("utf-8", "backslashreplace")


def printable_name(source):
    """The file name of `source`, printable (see `printable_text`)."""
    return printable_text(Path(source).name)


def heatmap_class(result):
    """The class the result's Grad-CAM explains (the label when the result does not say)."""
    return getattr(result, "heatmap_class", None) or result.label


def gradcam_caption(result):
    """Caption lines of the Grad-CAM overlay: class, model, probability, decision, members."""
    target = heatmap_class(result)
    members = list(result.members or {})
    if len(members) > 1:
        model = f"the ensemble of {', '.join(members)}"
    else:
        model = members[0] if members else "the model"
    lines = [f"Grad-CAM of {model} for class {target}, on {printable_name(result.source)}"]
    probability = (result.probabilities or {}).get(target)
    raw = (result.raw_probabilities or {}).get(target)
    calibrated = None not in (raw, probability) and abs(raw - probability) > 1e-6  # raw is set either way
    summary = [f"p({target}) = {probability:.3f}"] if probability is not None else []
    if calibrated:  # the members' probabilities are raw: say so, or they seem to contradict the ensemble's
        summary[0] += f" (calibrated; {raw:.3f} before)"
    if result.label is not None:
        rule = decision_text(getattr(result, "decision", None))
        if rule and result.label == "refer":
            rule += "; " + _refer_reason(result)
        would_be = getattr(result, "would_be_label", None)
        label = f"{result.label} (would be {would_be})" if would_be else result.label
        summary.append(f"label {label}" + (f" (rule: {rule})" if rule else ""))
    if summary:
        lines.append("; ".join(summary))
    if len(members) > 1:
        lines += [
            f"Member {name}: p({target}) = {member['probabilities'][target]:.3f}"
            + (" uncalibrated" if calibrated else "") + f", votes {member['label']}"
            for name, member in result.members.items()
        ]
    lines.append("Magenta line: lung mask edge. Colour opacity grows with relevance. " + DISCLAIMER)
    return lines


def mask_caption(result):
    """Caption lines of the mask overlay: lung fraction, pieces and the QC verdict."""
    fraction = "unknown" if result.lung_fraction is None else f"{result.lung_fraction:.1%}"
    pieces = "" if result.lung_components is None else f" in {result.lung_components} piece(s)"
    lines = [f"Lung mask (tinted, magenta edge): {fraction} of the image{pieces}"]
    mask_warnings = [message for code, message in result.warnings if "mask" in code]
    other = [message for code, message in result.warnings if "mask" not in code]
    lines.append("Mask QC: " + ("check the mask: " + "; ".join(mask_warnings) if mask_warnings else "ok"))
    if other:
        lines.append("Notes: " + "; ".join(other))
    lines.append(f"{printable_name(result.source)}. {DISCLAIMER}")
    return lines


def colorbar_label(result):
    """The colour bar's label, on two lines to fit beside the film."""
    return f"Grad-CAM relevance\nfor {heatmap_class(result)}"


def _refer_reason(result):
    """Why a film was referred: out of distribution, its probability inside the refer band, or a failed
    input check (the mask or view notes under the film say which)."""
    if (getattr(result, "out_of_distribution", None) or {}).get("flagged"):
        return "referred: out of distribution"
    band, positive = result.decision.get("refer") or {}, result.decision.get("positive_class")
    p = (result.probabilities or {}).get(positive)
    if "low" in band and "high" in band and p is not None and band["low"] <= p < band["high"]:
        return f"referred: {band['low']:.3f} <= p({positive}) < {band['high']:.3f}"
    return "referred: an input check fails" if band.get("input_checks") else "referred"


def decision_text(decision):
    """A result's decision rule (`PipelineResult.decision`) in a few words, or None."""
    if not decision:
        return None
    rule, positive = decision.get("rule"), decision.get("positive_class")
    if rule == "threshold" and decision.get("threshold") is not None:
        return f"{positive} if p({positive}) >= {decision['threshold']:.3f}"
    if rule == "majority_vote":
        return "majority vote of the members"
    if rule == "argmax":
        return "the most probable class"
    return None
