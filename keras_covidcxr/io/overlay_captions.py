"""What the overlay pictures say: the captions written under a `PipelineResult`'s overlays.

Example:
    >>> from keras_covidcxr.models.pipeline.pipeline_result import PipelineResult
    >>> result = PipelineResult("chest.png", lung_fraction=0.31, lung_components=2)
    >>> mask_caption(result)[:2]
    ['Lung mask (tinted, magenta edge): 31.0% of the image in 2 piece(s)', 'Mask QC: ok']
"""

import os
from pathlib import Path

import numpy as np

DISCLAIMER = "Research use only, not for diagnosis."


def printable_text(text):
    """`text` (a path, a file name) with bytes that are not UTF-8 and characters that are not printable written
    as escapes: fonts, terminals and JSON readers cannot take them (a Latin-1 file system's names), and a
    terminal obeys control sequences (a name holding ESC [2J clears the screen).

    Example:
        >>> printable_text(os.fsdecode(b"caf\\xe9.png")), printable_text("a\\nb\\x1b[2J.png")
        ('caf\\\\xe9.png', 'a\\\\nb\\\\x1b[2J.png')
    """
    text = os.fsencode(text).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


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
    if result.label == "refer":  # first, so a picture passed around alone is not read as an answer
        lines.insert(0, f"NOT AN ANSWER ({_refer_reason(result)}): have a person read this film; the map shows "
                        "what drove the score it would have had.")
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
    if calibrated:
        lines.append(f"Calibrated to the share of {target} among the preset's own films: where {target} is rarer, a "
                     "film's chance of it is lower than shown. Where it is commoner, higher.")
    if len(members) > 1:
        votes_at = getattr(result, "vote_thresholds", None) or \
            (getattr(result, "decision", None) or {}).get("member_thresholds") or {}
        positive = (result.decision or {}).get("positive_class")
        lines += [
            f"Member {name}: p({target}) = {member['probabilities'][target]:.3f}"
            + (" uncalibrated" if calibrated else "") + f", votes {member['label']}"
            + (f" (it votes {positive} at p({positive}) >= {votes_at[name]:.3f})" if name in votes_at and positive
               else "")
            for name, member in result.members.items()
        ]
    views = (getattr(result, "uncertainty", None) or {}).get("tta") or 1
    if views > 1:
        lines.append(f"Probabilities averaged over {views} test-time views (spread {result.uncertainty['tta_spread']:.3f}); "
                     "the heatmap is of the film as given.")
    where = relevance_in_lungs(result)
    if where is not None:
        doubts = [*(["it does not single out the lungs"] if where["share"] <= where["covered"] + 0.05 else []),
                  *(["its hottest spot lies outside them"] if where["hottest_inside"] < 0.5 else [])]
        lines.append(f"Relevance inside the lung mask: {where['share']:.0%} of the map's total (the mask covers "
                     f"{where['covered']:.0%} of the {where['region']})"
                     + (f"; {' and '.join(doubts)}: read the map with care" if doubts else "") + ".")
    lines.append("The map is coarse (the model's feature grid, upsampled): it shows what drove this score, not where "
                 "disease is.")
    lines.append("Magenta line: lung mask edge. Colour and opacity: relevance relative to this film's hottest point "
                 "(maps of different films are not comparable)"
                 + ("; nothing is computed outside the lung box the model reads" if result.crop_box else "")
                 + ". " + DISCLAIMER)
    return lines


def relevance_in_lungs(result, hot=0.9):
    """Where a result's heatmap lies against its lung mask, or None without both.

    {"share": the heatmap's total inside the mask, "covered": the share of the region the mask
    covers, "hottest_inside": the share of the hottest pixels (at least `hot` x the maximum) inside
    the mask, "region": "lung box" (the box the model read) or "image"}.

    Example:
        >>> import numpy as np
        >>> from keras_covidcxr.models.pipeline.pipeline_result import PipelineResult
        >>> mask = np.zeros((4, 4), bool); mask[:, :2] = True
        >>> heatmap = np.zeros((4, 4)); heatmap[:, 0] = 0.5; heatmap[:, 3] = 1.0
        >>> where = relevance_in_lungs(PipelineResult("a.png", mask=mask, heatmap=heatmap))
        >>> round(where["share"], 3), where["covered"], where["hottest_inside"], where["region"]
        (0.333, 0.5, 0.0, 'image')
    """
    if result.heatmap is None or result.mask is None:
        return None
    heat, mask = np.asarray(result.heatmap, "float64"), np.asarray(result.mask, bool)
    if heat.shape != mask.shape or heat.sum() <= 0:
        return None
    region = "image"
    if result.crop_box is not None:
        x0, y0, x1, y1 = result.crop_box
        heat, mask, region = heat[y0:y1, x0:x1], mask[y0:y1, x0:x1], "lung box"
    hottest = heat >= hot * heat.max()
    return {"share": float((heat * mask).sum() / heat.sum()), "covered": float(mask.mean()),
            "hottest_inside": float(mask[hottest].mean()), "region": region}


def mask_caption(result):
    """Caption lines of the mask overlay: lung fraction, pieces and the QC verdict."""
    fraction = "unknown" if result.lung_fraction is None else f"{result.lung_fraction:.1%}"
    pieces = "" if result.lung_components is None else f" in {result.lung_components} piece(s)"
    if pieces and result.mask is not None and _pieces(result.mask) > result.lung_components:
        pieces += " (smaller specks are drawn, not counted)"
    lines = [f"Lung mask (tinted, magenta edge): {fraction} of the image{pieces}"]
    # a check that reads the mask (e.g. the view check's "lung mask looks like a lateral view") is about the mask
    about_mask = [("mask" in code or message.startswith("lung mask"), message) for code, message in result.warnings]
    mask_warnings = [message for is_mask, message in about_mask if is_mask]
    other = [message for is_mask, message in about_mask if not is_mask]
    lines.append("Mask QC: " + ("check the mask: " + "; ".join(mask_warnings) if mask_warnings else "ok"))
    if other:
        lines.append("Notes: " + "; ".join(other))
    lines.append(f"Film: {printable_name(result.source)}. {DISCLAIMER}")
    return lines


def _pieces(mask):
    """The connected pieces of a mask, however small."""
    from scipy import ndimage

    return int(ndimage.label(np.asarray(mask, bool))[1])


def colorbar_label(result):
    """The colour bar's label, on two lines to fit beside the film."""
    return f"Grad-CAM relevance for {heatmap_class(result)}\n(this film's maximum = high)"


def _refer_reason(result):
    """Why a film was referred: the parts of the refer rule it met (`PipelineResult.refer_reasons`)."""
    reasons = getattr(result, "refer_reasons", None)
    return "referred: " + "; ".join(reasons.values()) if reasons else "referred"


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
