import pytest

from keras_covidcxr import ConfigError, InputContract


def codes(problems):
    return [(p.code, p.refused) for p in problems]


def test_a_plain_adult_frontal_film_passes():
    assert InputContract().check({"modality": "DX", "view": "PA", "age": 40.0}, (512, 512)) == []
    assert InputContract().check({}, (256, 300)) == []  # nothing known, nothing to object to


def test_modality_and_size_are_refused_view_and_age_flagged():
    problems = InputContract().check({"modality": "CT", "view": "L", "age": 12.0}, (200, 512))
    assert codes(problems) == [("modality", True), ("size", True), ("view", False), ("age", False)]
    assert problems[1].message == "image is 512x200 px, smaller than 256 px"


def test_strict_refuses_everything():
    problems = InputContract().check({"view": "L", "age": 12.0}, (512, 512), strict=True)
    assert codes(problems) == [("view", True), ("age", True)]


def test_round_trip_and_validation():
    contract = InputContract(min_size=128, views=("PA",))
    assert InputContract.from_dict(contract.to_dict()) == contract
    with pytest.raises(ConfigError):
        InputContract.from_dict({"min_size": 128, "colour": True})
