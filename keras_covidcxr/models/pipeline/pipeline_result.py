"""What `Pipeline.predict` returns for one image."""

import dataclasses

import numpy as np


@dataclasses.dataclass
class PipelineResult:
    """The pipeline's findings for one image.

    Attributes:
        source: the path, or "array[i]" for an array input.
        label: the ensemble's class name, or "refer" when the preset's refer rule
            abstains (None when `error` is set).
        would_be_label: for a "refer", the class the decision rule would have given.
        refer_reasons: for a "refer", {code: words} of each part of the refer rule the film met
            (`ReferRule.reasons`: "refer_band", "member_spread", "out_of_distribution", "input_checks").
        decision: the rule the label was decided by (`DecisionRule.to_dict()`:
            rule, positive class, threshold, origin), e.g. {"rule": "threshold",
            "positive_class": "covid", "threshold": 0.714, "origin": "preset"}.
        probabilities: {class name: probability}, summing to 1; calibrated when the
            preset has a calibration.
        raw_probabilities: the ensemble's probabilities before calibration.
        uncertainty: {"member_spread": standard deviation of the members' p(positive)
            (two classes; else of the labelled class), "members_disagree": whether
            their votes differ, "tta": the number of test-time views, "tta_spread":
            standard deviation of p over those views (None without TTA)}.
        out_of_distribution: {"distance", "threshold", "flagged"} of the preset's
            feature-distance check, when it has one.
        members: {member name: {"probabilities": {...}, "label": str}}.
        image: the decoded gray image in [0, 1] (for overlays).
        mask: boolean lung mask at the original image size.
        crop_box: (x0, y0, x1, y1) in original pixels ("bbox" masking), or None.
        lung_fraction: lung pixels / image pixels.
        lung_components: number of separate lung regions in the mask.
        warnings: list of (code, message) pairs.
        error: None, or why this image got no prediction.
        heatmap: Grad-CAM of the ensemble at the original size, when asked.
        heatmap_class: the class `heatmap` explains (the predicted one unless
            another was asked for).
        metadata: what the loader read (format, view, age, ...).
        vote_thresholds: two classes: {member name: p(positive) at which it votes positive} (for
            captions; not written to results files, whose `decision` says how labels are decided).
    """

    source: str
    label: str = None
    would_be_label: str = None
    refer_reasons: dict = None
    decision: dict = None
    probabilities: dict = None
    raw_probabilities: dict = None
    uncertainty: dict = None
    out_of_distribution: dict = None
    members: dict = None
    image: np.ndarray = None
    mask: np.ndarray = None
    crop_box: tuple = None
    lung_fraction: float = None
    lung_components: int = None
    warnings: list = dataclasses.field(default_factory=list)
    error: str = None
    heatmap: np.ndarray = None
    heatmap_class: str = None
    metadata: dict = dataclasses.field(default_factory=dict)
    vote_thresholds: dict = None

    def __repr__(self):
        # The image, mask and heatmap are shown by dtype and shape: printed whole they bury the findings.
        fields = ", ".join(
            f"{field.name}=" + (f"<{value.dtype} {value.shape}>" if isinstance(value, np.ndarray) else repr(value))
            for field in dataclasses.fields(self)
            for value in [getattr(self, field.name)]
        )
        return f"PipelineResult({fields})"

    def to_dict(self):
        """A JSON-ready dict of the findings: without the arrays (image, mask, heatmap), the loader's `metadata`
        (its view and age warnings are in "warnings") and the overlay's `heatmap_class` and `vote_thresholds`."""
        return {
            "source": self.source,
            "label": self.label,
            "would_be_label": self.would_be_label,
            "refer_reasons": self.refer_reasons,
            "probabilities": self.probabilities,
            "raw_probabilities": self.raw_probabilities,
            "decision": self.decision,
            "uncertainty": self.uncertainty,
            "out_of_distribution": self.out_of_distribution,
            "members": self.members,
            "crop_box": list(self.crop_box) if self.crop_box else None,
            "lung_fraction": self.lung_fraction,
            "lung_components": self.lung_components,
            "warnings": [{"code": c, "message": m} for c, m in self.warnings],
            "error": self.error,
        }
