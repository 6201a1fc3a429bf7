import numpy as np
import pytest
from scipy import ndimage

from keras_covidcxr import ConfigError, PreprocessingConfig
from keras_covidcxr.preprocessing.lung_masking import (
    MaskPieces,
    apply_lung_mask,
    keep_largest_pieces,
    lung_bounding_box,
    lung_outline_solidity,
    mask_quality,
    pieces_below_lungs,
)
from keras_covidcxr.preprocessing.model_inputs import (
    classifier_input,
    cleaned_lung_mask,
    lung_mask_at,
    segmenter_input,
)
from keras_covidcxr.preprocessing.resize import resize_image
from keras_covidcxr.preprocessing.standardize import standardize, to_rgb


def two_lungs(shape=(100, 80)):
    mask = np.zeros(shape, bool)
    mask[20:70, 10:30] = True
    mask[20:70, 50:70] = True
    return mask


def test_bounding_box_with_margin_is_clipped_to_the_image():
    mask = two_lungs()
    assert lung_bounding_box(mask, margin=0.0) == (10, 20, 70, 70)
    assert lung_bounding_box(mask, margin=0.1) == (2, 10, 78, 80)
    assert lung_bounding_box(mask, margin=0.5) == (0, 0, 80, 100)
    assert lung_bounding_box(np.zeros((5, 5), bool)) is None


def test_hard_mask_zeroes_outside_and_bbox_crops():
    image = np.full((100, 80), 0.7, "float32")
    masked, box = apply_lung_mask(image, two_lungs(), "hard")
    assert box is None and masked[0, 0] == 0 and masked[30, 15] == pytest.approx(0.7)
    cropped, box = apply_lung_mask(image, two_lungs(), "bbox", margin=0.0)
    assert box == (10, 20, 70, 70) and cropped.shape == (50, 60)
    with pytest.raises(ConfigError):
        apply_lung_mask(image, two_lungs(), "blur")


def test_mask_quality_counts_pieces_and_ignores_specks():
    mask = two_lungs()
    mask[95, 2] = True  # a one-pixel speck
    quality = mask_quality(mask)
    assert quality.components == 2
    assert quality.lung_fraction == pytest.approx((2 * 50 * 20 + 1) / 8000)


def test_standardize_and_rgb():
    out = standardize(np.arange(12, dtype="float32").reshape(3, 4))
    assert out.mean() == pytest.approx(0, abs=1e-6) and out.std() == pytest.approx(1, abs=1e-5)
    assert np.all(standardize(np.ones((4, 4), "float32")) == 0)
    assert to_rgb(np.zeros((2, 3))).shape == (2, 3, 3)


def test_resize_keeps_a_constant_image_constant():
    out = resize_image(np.full((30, 50), 0.25, "float32"), (16, 16))
    assert out.shape == (16, 16) and np.allclose(out, 0.25)


def test_model_inputs():
    image = np.random.default_rng(0).random((100, 80)).astype("float32")
    seg = segmenter_input(image, 64)
    assert seg.shape == (64, 64, 1) and seg.mean() == pytest.approx(0, abs=1e-5)
    probabilities = np.zeros((64, 64), "float32")
    probabilities[16:48, 8:24] = 0.9
    mask = lung_mask_at(probabilities, (100, 80), threshold=0.5)
    assert mask.shape == (100, 80) and 0.1 < mask.mean() < 0.2
    x, box, quality, warnings = classifier_input(image, two_lungs(), PreprocessingConfig(masking="bbox"), 32)
    assert x.shape == (32, 32, 3) and box is not None and quality.components == 2 and warnings == []


def test_preprocessing_config_validation_and_round_trip():
    config = PreprocessingConfig(masking="bbox", bbox_margin=0.05)
    assert PreprocessingConfig.from_dict(config.to_dict()) == config
    for bad in ({"masking": "soft"}, {"mask_threshold": 1.5}):
        with pytest.raises(ConfigError):
            PreprocessingConfig(**bad)
    with pytest.raises(ConfigError):
        PreprocessingConfig.from_dict({"unknown": 1})


def test_a_mask_split_with_a_large_part_trimmed_away_fails_the_input_checks():
    from keras_covidcxr.models.pipeline.refer_rule import failed_input_checks

    mask = two_lungs()
    mask[40:43, 10:30] = False  # one lung split in two by a band of dense opacity: 400 px above, 540 below
    _, removed = keep_largest_pieces(mask)
    assert removed >= 0.15
    _, warnings = cleaned_lung_mask(mask, PreprocessingConfig(keep_largest_pieces=2))
    assert [code for code, _ in warnings][:2] == ["mask_pieces_removed", "mask_split"]
    assert failed_input_checks(warnings) == ["mask_split"]  # referred, not answered
    _, small = cleaned_lung_mask(mask, PreprocessingConfig(keep_largest_pieces=3))
    assert "mask_split" not in [code for code, _ in small]  # nothing trimmed away


def test_only_the_two_largest_pieces_are_kept_and_the_removal_is_reported():
    mask = two_lungs()
    mask[85:95, 60:75] = True  # a third piece below the lungs (bowel gas under the diaphragm)
    kept, removed = keep_largest_pieces(mask)
    assert np.array_equal(kept, two_lungs()) and removed == pytest.approx(150 / 2150)
    assert keep_largest_pieces(two_lungs())[1] == 0.0
    cleaned, warnings = cleaned_lung_mask(mask, PreprocessingConfig(keep_largest_pieces=2))
    assert np.array_equal(cleaned, two_lungs())
    assert [code for code, _ in warnings] == ["mask_pieces_removed", "mask_below_diaphragm"]
    assert "lung mask trimmed: 7% in pieces" in warnings[0][1] and warnings[1][1].endswith("; removed")
    untouched, warnings = cleaned_lung_mask(mask, PreprocessingConfig())  # trimming is off by default
    assert untouched is mask and [code for code, _ in warnings] == ["mask_below_diaphragm"]
    assert warnings[0][1].endswith("; kept")
    # the crop follows the cleaned mask: the box no longer reaches the bottom of the film
    _, box, _, _ = classifier_input(np.ones((100, 80), "float32"), cleaned, PreprocessingConfig(masking="bbox"), 32)
    assert box[3] < 80


def test_unit_range_inputs_for_classifiers_that_normalise_themselves():
    image = np.linspace(0, 1, 100 * 80, dtype="float32").reshape(100, 80)
    config = PreprocessingConfig(masking="bbox", bbox_margin=0.0, standardize=False)
    gray, _, _, _ = classifier_input(image, two_lungs(), config, 32, channels=1)
    assert gray.shape == (32, 32, 1) and 0.0 <= gray.min() and gray.max() <= 1.0
    rgb, _, _, _ = classifier_input(image, two_lungs(), PreprocessingConfig(masking="bbox"), 32)
    assert rgb.shape == (32, 32, 3) and abs(float(rgb.mean())) < 1e-4  # the paper's standardisation


def random_masks(count=150, seed=0):
    """Masks with many pieces of many sizes: noise, blurred noise and rectangles."""
    rng = np.random.default_rng(seed)
    for trial in range(count):
        h, w = rng.integers(8, 60, 2)
        if trial % 3 == 0:
            yield rng.random((h, w)) < rng.uniform(0.05, 0.6)
        elif trial % 3 == 1:
            yield ndimage.gaussian_filter(rng.random((h, w)), rng.uniform(0.5, 3)) > 0.5
        else:
            mask = np.zeros((h, w), bool)
            for _ in range(rng.integers(0, 6)):
                y, x, a, b = rng.integers(0, h), rng.integers(0, w), *rng.integers(1, 12, 2)
                mask[y : y + a, x : x + b] = True
            yield mask


def test_the_largest_pieces_keep_the_labelling_and_measure_as_their_own_mask():
    for mask in random_masks():
        pieces = MaskPieces.of(mask)
        assert pieces.quality() == mask_quality(mask) and pieces.quality().lung_fraction == float(mask.mean())
        for count in (1, 2, 3):
            kept, _ = pieces.largest(count)
            relabelled = MaskPieces.of(kept.mask.copy())  # the kept mask labelled afresh
            assert np.array_equal(kept.piece_sizes(), relabelled.piece_sizes())
            assert kept.quality() == mask_quality(kept.mask)
            assert kept.below_lungs() == pieces_below_lungs(kept.mask)
            assert kept.outline_solidity() == lung_outline_solidity(kept.mask)


def test_cleaning_the_labelled_pieces_gives_what_cleaning_the_mask_gives():
    image = np.random.default_rng(1).random((60, 60)).astype("float32")
    for mask in random_masks(60, seed=1):
        for keep in (0, 2, 3):
            config = PreprocessingConfig(masking="bbox", keep_largest_pieces=keep)
            cleaned, warnings = cleaned_lung_mask(mask, config)
            pieces, same_warnings = cleaned_lung_mask(MaskPieces.of(mask), config)
            assert isinstance(pieces, MaskPieces) and np.array_equal(pieces.mask, cleaned)
            assert same_warnings == warnings
            crop = image[: mask.shape[0], : mask.shape[1]]
            from_mask, from_pieces = classifier_input(crop, cleaned, config, 16), classifier_input(crop, pieces, config, 16)
            assert np.array_equal(from_mask[0], from_pieces[0]) and from_mask[1:] == from_pieces[1:]


def test_equal_pieces_at_the_cut_keep_the_first_in_reading_order():
    mask = np.zeros((20, 20), bool)
    mask[2:12, 2:8] = True  # the largest piece
    mask[15:17, 15:17] = mask[2:4, 15:17] = True  # two equal pieces: the upper one comes first
    kept, removed = keep_largest_pieces(mask)
    assert kept[2:4, 15:17].all() and not kept[15:17, 15:17].any() and removed == pytest.approx(4 / 68)


def test_pieces_below_lungs_match_the_plain_centre_of_mass_rule():
    # the check runs on single passes and boxes (a 7000 px film spent seconds in it); same answers as the plain rule
    def plain_rule(mask, min_piece_fraction):
        labels, _ = ndimage.label(mask)
        sizes = np.bincount(labels.ravel())[1:]
        order = np.argsort(-sizes, kind="stable") + 1
        if len(order) <= 2:
            return []
        rows = np.arange(mask.shape[0])[:, None]
        lowest = np.where(np.isin(labels, order[:2]), rows, -1).max(axis=0)
        others = [label for label in order[2:] if sizes[label - 1] >= min_piece_fraction * mask.size]
        return [float(sizes[label - 1] / mask.size)
                for label, (row, col) in zip(others, ndimage.center_of_mass(mask, labels, others))
                if row > (lowest[round(col)] if lowest[round(col)] >= 0 else lowest.max())]

    rng = np.random.default_rng(0)
    for _ in range(100):
        height, width = rng.integers(20, 100, 2)
        mask = ndimage.binary_opening(rng.random((height, width)) < rng.uniform(0.3, 0.6))
        fraction = rng.choice([0.0, 0.005, 0.02])
        assert MaskPieces.of(mask).below_lungs(fraction) == plain_rule(mask, fraction)
