"""What the models were made for, stated in the preset and enforced per image."""

import dataclasses

from keras_covidcxr.errors import ConfigError
from keras_covidcxr.preprocessing.view_check import looks_lateral, mask_view_geometry
from keras_covidcxr.settings import check_field_types, settings_from_dict

# Longest side over shortest side above which an image is flagged: the 3,306 films of the shared data
# reach 1.35 (99th percentile) and at most 2.24 (two films side by side in a journal figure). Every model
# input is square, so a far longer image is squeezed into a picture the models read with full confidence.
MAX_ASPECT_RATIO = 2.5


@dataclasses.dataclass(frozen=True)
class ContractProblem:
    """One way an image falls outside the contract; `refused` ones get no prediction."""

    code: str
    message: str
    refused: bool


@dataclasses.dataclass(frozen=True)
class InputContract:
    """The input contract of a preset (config.json's "input_contract").

    Args:
        min_size: smallest accepted height and width, in pixels.
        channels: channels the segmenter takes (1: gray).
        value_range: range of the decoded pixels the models expect.
        views: accepted view positions (when the file states one).
        modalities: accepted DICOM modalities (when the file states one).
        min_age: youngest accepted patient age in years (when known); the
            paper excludes children, whose films differ from adults'.
        check_view_from_mask: also check the view of images whose metadata
            states none (PNG, JPEG...) from the segmenter's lung mask
            (`check_lung_mask`, after segmentation): one lung field, or lung
            on one side only, looks lateral (`view_check.looks_lateral`; about
            9 in 10 laterals and 1 in 70 frontals flagged in its measurement).
            Off by default; `Pipeline.with_input_contract(check_view_from_mask=True)`
            or `covidcxr predict --check-view` turn it on.
        check_inverted: also flag a film that looks inverted (a negative),
            from one more segmenter pass on its negative (`check_inversion`):
            a segmenter trained on films reads the lungs of the right one more
            surely. Off by default (a preset states it).

    By default modality and size problems are refused and view, age and
    aspect problems (a side over `MAX_ASPECT_RATIO` times the other; the view
    from the metadata or from the mask) are only flagged; `strict=True`
    refuses them all.

    Example:
        >>> contract = InputContract(min_size=256)
        >>> [p.code for p in contract.check({"modality": "CT", "age": 9}, (300, 300))]
        ['modality', 'age']
        >>> import numpy as np
        >>> one_lung_field = np.zeros((128, 128), bool)
        >>> one_lung_field[20:110, 30:90] = True
        >>> contract = InputContract(check_view_from_mask=True)
        >>> [(p.code, p.refused) for p in contract.check_lung_mask({}, one_lung_field, strict=True)]
        [('view', True)]
    """

    min_size: int = 256
    channels: int = 1
    value_range: tuple = (0.0, 1.0)
    views: tuple = ("PA", "AP", "AP Supine")
    modalities: tuple = ("CR", "DX")
    min_age: float = 18.0
    check_view_from_mask: bool = False
    check_inverted: bool = False

    def __post_init__(self):
        check_field_types(self, "input contract")
        if self.min_size < 1 or self.channels not in (1, 3) or self.min_age < 0:
            raise ConfigError(f"input contract: need min_size >= 1, channels 1 or 3 and min_age >= 0, got "
                              f"{self.min_size}, {self.channels} and {self.min_age}")

    def check(self, metadata, shape, strict=False):
        """Return the `ContractProblem`s of an image with this metadata and (height, width)."""
        problems = []
        modality = metadata.get("modality")
        if modality is not None and modality not in self.modalities:
            problems.append(
                ContractProblem("modality", f"modality {modality} is not an X-ray ({', '.join(self.modalities)})", True)
            )
        if min(shape) < self.min_size:
            problems.append(
                ContractProblem("size", f"image is {shape[1]}x{shape[0]} px, smaller than {self.min_size} px", True)
            )
        aspect = max(shape) / max(min(shape), 1)
        if aspect > MAX_ASPECT_RATIO:
            problems.append(ContractProblem(
                "aspect", f"image is {shape[1]}x{shape[0]} px, one side {aspect:.1f} times the other: not one chest "
                f"film's shape (above {MAX_ASPECT_RATIO:g}; a crop, a strip or several films side by side?)", strict
            ))
        view = metadata.get("view")
        if view is not None and str(view).upper() not in {accepted.upper() for accepted in self.views}:  # DICOM: "AP SUPINE"
            problems.append(
                ContractProblem("view", f"view {view} is not one of {', '.join(self.views)}", strict)
            )
        age = metadata.get("age")
        if age is not None and age < self.min_age:
            problems.append(
                ContractProblem("age", f"patient age {age:g} is under {self.min_age:g}", strict)
            )
        return problems

    def check_lung_mask(self, metadata, lung_mask, strict=False):
        """The `ContractProblem`s found from an image's lung mask (at the segmenter's resolution).

        Only with `check_view_from_mask`, and only for images whose metadata
        states no view (a stated view is `check`'s business): a mask that
        `looks_lateral` gives a "view" problem, refused when `strict`.
        """
        if not self.check_view_from_mask or metadata.get("view") is not None or not looks_lateral(lung_mask):
            return []
        second_share, half_share = mask_view_geometry(lung_mask)
        message = (
            "lung mask looks like a lateral view (second lung component "
            f"{second_share:.0%} of the lung area, smaller half {half_share:.0%}), or one lung is mostly missing "
            "from it (a white-out: dense opacity, effusion or collapse?)"
        )
        return [ContractProblem("view", message, strict)]

    def check_inversion(self, probabilities, negative_probabilities, threshold, strict=False):
        """An "inverted" `ContractProblem` (refused when `strict`) when the segmenter reads the lungs of the film's
        negative more surely than the film's own: its mean lung probability inside its mask is higher there
        (`lung_certainty`). Only with `check_inverted`.

        Measured with covidcxr_lite's segmenter on 747 shared films (447 of `cxr`, 300 of `cxr_extra`): every film
        read more surely than its negative (by 0.027 at least, 0.197 typically), so each film's negative, given
        as a film, is flagged and none of the films.
        """
        if not self.check_inverted:
            return []
        own, negative = lung_certainty(probabilities, threshold), lung_certainty(negative_probabilities, threshold)
        if negative <= own + INVERSION_MARGIN:
            return []
        return [ContractProblem(
            "inverted", f"the film looks inverted (a negative: bones dark, lungs light): the lung segmenter reads its "
            f"negative more surely ({negative:.2f} against {own:.2f}); if it is, invert it (or its DICOM's "
            "photometric interpretation) and predict again", strict)]

    @classmethod
    def from_dict(cls, config):
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
        return settings_from_dict(cls, values, "input contract fields")

    def to_dict(self):
        values = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        if not self.check_inverted:  # added in 0.4.16: a contract without it is written as before
            del values["check_inverted"]
        return values


# A margin on the certainty difference: the films' own certainty led their negatives' by 0.027 at least.
INVERSION_MARGIN = 0.01


def lung_certainty(probabilities, threshold):
    """The mean lung probability inside the mask (probabilities >= threshold); 0 without one.

    Example:
        >>> import numpy as np
        >>> round(lung_certainty(np.array([[0.9, 0.7], [0.2, 0.0]]), 0.5), 2)
        0.8
    """
    inside = probabilities[probabilities >= threshold]
    return float(inside.mean()) if inside.size else 0.0
