"""Golden outputs: what a pipeline preset predicts on the bundled samples, recorded at save time and re-checked.

Example:
    >>> from keras_covidcxr import verify_preset
    >>> verify_preset("covidcxr_lite").passed  # doctest: +SKIP
    True
"""

import dataclasses

from keras_covidcxr.presets.preset_format import unlisted_files
from keras_covidcxr.samples import sample_images

GOLDEN_TOLERANCE = 1e-3  # backends and CPUs differ in the last float32 digits, never by this much


def golden_outputs(pipeline):
    """{sample file name: {"label", "probabilities", "lung_fraction"}} on the bundled samples."""
    results = pipeline.predict(sample_images(), on_error="record")
    return {
        path.name: {"label": r.label, "probabilities": r.probabilities, "lung_fraction": r.lung_fraction}
        for path, r in zip(sample_images(), results)
        if r.error is None
    }


@dataclasses.dataclass
class Verification:
    """The outcome of `verify_preset`: `problems` is empty when everything matched."""

    handle: str
    checked_samples: int
    problems: list

    @property
    def passed(self):
        return not self.problems


def verify_preset(handle, tolerance=GOLDEN_TOLERANCE):
    """Load a preset (which checks every checksum) and compare its outputs with the recorded golden ones.

    Example:
        >>> verify_preset("./my_preset").passed  # doctest: +SKIP
        True
    """
    # imported here: pipeline.py imports golden_outputs from this module
    from keras_covidcxr.models.pipeline.pipeline import Pipeline

    pipeline = Pipeline.from_preset(handle)
    problems = [f"{pipeline.preset_folder / name}: not listed in metadata.json (not part of the preset: never "
                "read, never uploaded); remove it" for name in unlisted_files(pipeline.preset_folder, pipeline.metadata)]
    expected = pipeline.metadata.get("golden_outputs")
    if not expected:
        return Verification(str(handle), 0, [*problems, "metadata.json records no golden outputs to compare with"])
    actual = golden_outputs(pipeline)
    for name, want in expected.items():
        got = actual.get(name)
        if got is None:
            problems.append(f"{name}: sample not bundled with this version of keras-covidcxr")
            continue
        if got["label"] != want["label"]:
            problems.append(f"{name}: label {got['label']!r}, recorded {want['label']!r}")
        for class_name, p in want["probabilities"].items():
            if abs(got["probabilities"][class_name] - p) > tolerance:
                problems.append(
                    f"{name}: p({class_name}) = {got['probabilities'][class_name]:.6f}, recorded {p:.6f}"
                )
        if abs(got["lung_fraction"] - want["lung_fraction"]) > tolerance:
            problems.append(f"{name}: lung fraction {got['lung_fraction']:.6f}, recorded {want['lung_fraction']:.6f}")
    return Verification(str(handle), len(expected), problems)
