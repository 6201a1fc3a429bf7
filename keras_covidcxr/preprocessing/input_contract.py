"""What the models were made for, stated in the preset and enforced per image."""

import dataclasses

from keras_covidcxr.settings import settings_from_dict


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

    By default modality and size problems are refused and view and age
    problems are only flagged; `strict=True` refuses them all.

    Example:
        >>> contract = InputContract(min_size=256)
        >>> [p.code for p in contract.check({"modality": "CT", "age": 9}, (300, 300))]
        ['modality', 'age']
    """

    min_size: int = 256
    channels: int = 1
    value_range: tuple = (0.0, 1.0)
    views: tuple = ("PA", "AP", "AP Supine")
    modalities: tuple = ("CR", "DX")
    min_age: float = 18.0

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
        view = metadata.get("view")
        if view is not None and view not in self.views:
            problems.append(
                ContractProblem("view", f"view {view} is not one of {', '.join(self.views)}", strict)
            )
        age = metadata.get("age")
        if age is not None and age < self.min_age:
            problems.append(
                ContractProblem("age", f"patient age {age:g} is under {self.min_age:g}", strict)
            )
        return problems

    @classmethod
    def from_dict(cls, config):
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
        return settings_from_dict(cls, values, "input contract fields")

    def to_dict(self):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
