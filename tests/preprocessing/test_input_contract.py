import numpy as np
import pytest

from keras_covidcxr import ConfigError, InputContract


def codes(problems):
    return [(p.code, p.refused) for p in problems]


def test_a_plain_adult_frontal_film_passes():
    assert InputContract().check({"modality": "DX", "view": "PA", "age": 40.0}, (512, 512)) == []
    assert InputContract().check({}, (256, 300)) == []  # nothing known, nothing to object to
    assert InputContract().check({"view": "AP SUPINE"}, (512, 512)) == []  # DICOM's spelling of "AP Supine"


def test_modality_and_size_are_refused_view_and_age_flagged():
    problems = InputContract().check({"modality": "CT", "view": "L", "age": 12.0}, (200, 480))
    assert codes(problems) == [("modality", True), ("size", True), ("view", False), ("age", False)]
    assert problems[1].message == "image is 480x200 px, smaller than 256 px"


def test_an_image_far_from_a_films_shape_is_flagged():
    assert InputContract().check({}, (1024, 2 * 1024)) == []  # two films side by side in a figure: 2.24 seen
    problems = InputContract().check({}, (256, 5000))
    assert codes(problems) == [("aspect", False)]
    assert problems[0].message.startswith("image is 5000x256 px, one side 19.5 times the other")
    assert codes(InputContract().check({}, (5000, 256), strict=True)) == [("aspect", True)]


def test_strict_refuses_everything():
    problems = InputContract().check({"view": "L", "age": 12.0}, (512, 512), strict=True)
    assert codes(problems) == [("view", True), ("age", True)]


def test_round_trip_and_validation():
    contract = InputContract(min_size=128, views=("PA",))
    assert InputContract.from_dict(contract.to_dict()) == contract
    with pytest.raises(ConfigError):
        InputContract.from_dict({"min_size": 128, "colour": True})
    for bad in ({"min_size": "big"}, {"min_size": 0}, {"channels": 2}, {"min_age": -1}, {"min_age": "adult"}):
        with pytest.raises(ConfigError, match="input contract: "):
            InputContract(**bad)
    for names in ({"views": "PA"}, {"modalities": "DX"}, {"value_range": 1.0}):  # a string would be read letter by letter
        with pytest.raises(ConfigError, match=f"input contract: {next(iter(names))} must be a list"):
            InputContract(**names)


def lateral_looking_mask():
    mask = np.zeros((64, 64), bool)
    mask[10:55, 15:50] = True  # one lung field
    return mask


def frontal_looking_mask():
    mask = np.zeros((64, 64), bool)
    mask[10:50, 6:28] = mask[10:50, 36:58] = True
    return mask


def test_the_view_from_the_mask_is_checked_only_when_asked():
    assert InputContract().check_lung_mask({}, lateral_looking_mask()) == []
    contract = InputContract(check_view_from_mask=True)
    problems = contract.check_lung_mask({"view": None}, lateral_looking_mask())
    assert codes(problems) == [("view", False)]
    assert problems[0].message == (
        "lung mask looks like a lateral view (second lung component 0% of the lung area, smaller half 49%), or one "
        "lung is mostly missing from it (a white-out: dense opacity, effusion or collapse?)"
    )
    assert codes(contract.check_lung_mask({}, lateral_looking_mask(), strict=True)) == [("view", True)]
    assert contract.check_lung_mask({}, frontal_looking_mask(), strict=True) == []
    assert contract.check_lung_mask({}, np.zeros((64, 64), bool), strict=True) == []  # empty: not lateral


@pytest.mark.parametrize("view", ["PA", "L"])
def test_a_stated_view_is_left_to_the_metadata_check(view):
    contract = InputContract(check_view_from_mask=True)
    assert contract.check_lung_mask({"view": view}, lateral_looking_mask(), strict=True) == []


def test_check_view_from_mask_round_trips_and_old_contracts_load():
    contract = InputContract(min_size=128, check_view_from_mask=True)
    assert contract.to_dict()["check_view_from_mask"] is True
    assert InputContract.from_dict(contract.to_dict()) == contract
    old = InputContract().to_dict()
    del old["check_view_from_mask"]  # a preset written before the field existed
    assert InputContract.from_dict(old) == InputContract()
    with pytest.raises(ConfigError, match="check_view_from_mask"):
        InputContract.from_dict({"check_view_from_mask": "yes"})


def test_a_film_whose_negative_the_segmenter_reads_more_surely_is_flagged_inverted():
    lungs = np.zeros((8, 8))
    lungs[2:6, 1:3] = lungs[2:6, 5:7] = 0.95  # two sure lung fields
    unsure = np.where(lungs > 0, 0.6, 0.1)  # the negative: a mask, but an unsure one
    contract = InputContract(check_inverted=True)
    assert contract.check_inversion(lungs, unsure, 0.5) == []
    [problem] = contract.check_inversion(unsure, lungs, 0.5, strict=True)  # the film is the negative
    assert (problem.code, problem.refused) == ("inverted", True)
    assert "film looks inverted (a negative: bones dark, lungs light)" in problem.message
    assert "(0.95 against 0.60)" in problem.message
    assert InputContract().check_inversion(unsure, lungs, 0.5) == []  # off unless the preset states it
    assert contract.check_inversion(np.zeros((8, 8)), np.zeros((8, 8)), 0.5) == []  # no mask either way


def test_check_inverted_round_trips_and_contracts_without_it_are_written_as_before():
    contract = InputContract(check_inverted=True)
    assert contract.to_dict()["check_inverted"] is True
    assert InputContract.from_dict(contract.to_dict()) == contract
    assert "check_inverted" not in InputContract().to_dict()  # a preset without it keeps its config and fingerprint
    assert InputContract.from_dict(InputContract().to_dict()) == InputContract()
