import io

import keras
import numpy as np
import pytest
from PIL import Image

from keras_covidcxr import ConfigError, CovidCXRError, InputContractError, Pipeline, PreprocessingConfig


def test_result_fields_and_types(pipeline, chest_images):
    results = pipeline.predict(chest_images)
    assert len(results) == 3
    for image, result in zip(chest_images, results):
        assert result.error is None
        assert result.label in ("non_covid", "covid")
        assert set(result.probabilities) == {"non_covid", "covid"}
        assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert set(result.members) == {"alpha", "beta"}
        for member in result.members.values():
            assert member["label"] in ("non_covid", "covid")
            assert sum(member["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        assert result.mask.dtype == bool and result.mask.shape == image.shape
        assert result.lung_fraction == pytest.approx(result.mask.mean())
        assert result.crop_box is None  # "hard" masking
        assert isinstance(result.warnings, list)
        assert result.to_dict()["label"] == result.label


def test_weighted_average_is_recomputable_from_members(pipeline, chest_images):
    result = pipeline.predict(chest_images[:1])[0]
    weights = dict(zip(pipeline.ensemble.member_names, pipeline.ensemble.weights_normalised))
    expected = sum(w * result.members[name]["probabilities"]["covid"] for name, w in weights.items())
    assert result.probabilities["covid"] == pytest.approx(expected, abs=1e-6)


def test_an_image_result_does_not_depend_on_its_batch(pipeline, chest_images):
    together = pipeline.predict(chest_images, batch_size=3)
    reordered = pipeline.predict(chest_images[::-1], batch_size=2)[::-1]
    alone = [pipeline.predict([image], batch_size=1)[0] for image in chest_images]
    for a, b, c in zip(together, reordered, alone):
        for other in (b, c):
            assert a.label == other.label
            np.testing.assert_allclose(a.probabilities["covid"], other.probabilities["covid"], atol=1e-5)
            np.testing.assert_array_equal(a.mask, other.mask)


def test_paths_and_arrays_give_the_same_result(pipeline, chest_images, tmp_path):
    path = tmp_path / "chest.png"
    image8 = (chest_images[0] * 255).round().astype(np.uint8)
    Image.fromarray(image8).save(path)
    from_path, from_array = pipeline.predict([path, image8])
    assert from_path.source == str(path) and from_array.source == "array[1]"
    assert from_path.probabilities == pytest.approx(from_array.probabilities, abs=1e-6)


def test_colour_arrays_pil_images_and_byte_paths_read_as_their_files(pipeline, chest_images, tmp_path):
    rng = np.random.default_rng(0)
    colour = (rng.random((*chest_images[0].shape, 3)) * 255).astype(np.uint8)  # uneven channels
    colour[..., 1] = (chest_images[0] * 255).round().astype(np.uint8)
    path = tmp_path / "colour.png"
    Image.fromarray(colour).save(path)
    with Image.open(path) as opened:
        results = pipeline.predict([path, colour, np.dstack([colour, np.full(colour.shape[:2], 9, np.uint8)]),
                                    opened, bytes(path)])
    assert [r.source for r in results] == [str(path), "array[1]", "array[2]", str(path), str(path)]
    for result in results[1:]:  # as Pillow rounds the luma, to the same level
        np.testing.assert_array_equal(result.mask, results[0].mask)
        assert result.probabilities == results[0].probabilities
    gray_alpha = np.dstack([colour[..., 1], np.full(colour.shape[:2], 255, np.uint8)])
    assert pipeline.predict(gray_alpha)[0].probabilities == pipeline.predict(colour[..., 1])[0].probabilities


def test_a_loaded_image_made_by_hand_must_hold_what_load_image_gives(pipeline, chest_images):
    from keras_covidcxr import InputError, LoadedImage

    film = chest_images[0]
    assert pipeline.predict(LoadedImage(film, {}))[0].probabilities == pipeline.predict(film)[0].probabilities
    for pixels, reason in (((film * 255).astype("uint8"), r"float \(height, width\) pixels in \[0, 1\].*got uint8"),
                           (np.dstack([film] * 3), r"got float32 \(300, 260, 3\)"),
                           (film * 255, r"found 16.93 to 185.4 \(0-255 values\? divide by 255")):
        with pytest.raises(InputError, match=reason):
            pipeline.predict(LoadedImage(pixels, {}))
    with pytest.raises(InputError, match="1 are NaN or infinite"):
        pipeline.predict(np.where(np.arange(film.size).reshape(film.shape) == 5, np.nan, film))
    overshoot = film.copy()
    overshoot[0, 0] = np.nextafter(np.float32(1), np.float32(2))  # as a resize's rounding may leave it
    for pixels, reason in ((overshoot, r"to 1.0000001 \(a resize or filter may overshoot \[0, 1\]: clip"),
                           (film * 2 - 1, r"\(values in \[-1, 1\]\? map them to \[0, 1\] with \(x \+ 1\) / 2\)"),
                           (film * 2, r"found 0.\d+ to 1.\d+ \(rescale them to \[0, 1\]")):  # clipping would ruin it
        with pytest.raises(InputError, match=reason):
            pipeline.predict(pixels)
    with pytest.raises(InputError, match=r"^image\[0\]: an empty file name"):
        pipeline.predict("")


def test_backend_tensors_are_read_as_arrays(pipeline, chest_images):
    expected = [r.probabilities for r in pipeline.predict(chest_images[:2])]
    one = pipeline.predict(keras.ops.convert_to_tensor(chest_images[0]))
    several = pipeline.predict([keras.ops.convert_to_tensor(image) for image in chest_images[:2]])
    batch = pipeline.predict(keras.ops.convert_to_tensor(np.stack([chest_images[1]] * 2)[..., None]))
    assert [r.probabilities for r in one] == expected[:1] and one[0].source == "array[0]"
    assert [r.probabilities for r in several] == expected
    assert [r.probabilities for r in batch] == [expected[1]] * 2  # a 4-D tensor: a batch of images
    half = pipeline.predict(keras.ops.cast(keras.ops.convert_to_tensor(chest_images[0]), "bfloat16"))[0]
    assert half.error is None and half.probabilities == pytest.approx(expected[0], abs=0.05)  # 8 bits of mantissa


def test_an_array_or_column_of_file_names_is_a_list_of_files(pipeline, chest_images, tmp_path):
    from PIL import Image

    paths = []
    for i, image in enumerate(chest_images[:2]):
        paths.append(str(tmp_path / f"film{i}.png"))
        Image.fromarray((image * 255).astype(np.uint8)).save(paths[-1])
    expected = [(r.source, r.probabilities) for r in pipeline.predict(paths)]
    for names in (np.array(paths), np.array(paths, dtype=object)):  # what a pandas column gives
        assert [(r.source, r.probabilities) for r in pipeline.predict(names)] == expected
    assert [(r.source, r.probabilities) for r in pipeline.predict(np.array(paths[0]))] == expected[:1]
    with pytest.raises(ConfigError, match=r"file names as a 1-D list or array, got an array of shape \(2, 1\)"):
        pipeline.predict(np.array(paths)[:, None])  # df[["file"]].values


def test_inputs_that_are_not_images_are_named_errors(pipeline, chest_images):
    with pytest.raises(ConfigError, match="got None"):
        pipeline.predict(None)
    for not_a_list, named in ((42, "got a int$"), ({"image": "chest.png"}, "got a dict$"),
                              (io.BytesIO(b"\x89PNG\r\n"), r"got a BytesIO \(for an open file, give its path or PIL")):
        with pytest.raises(ConfigError, match=named):  # not iterated as if it were a list of file names
            pipeline.predict(not_a_list)
    results = pipeline.predict([chest_images[0], np.zeros((0, 5), "float32"), 42, chest_images[1]], on_error="record")
    assert [r.error is None for r in results] == [True, False, False, True]
    assert results[1].error == "array[1]: empty image (shape (0, 5))"
    assert results[2].error.startswith("image[2]: not an image: a int")
    in_a_list = pipeline.predict([io.BytesIO(b"\x89PNG")], on_error="record")[0].error
    assert in_a_list.endswith("(for an open file, give its path or PIL.Image.open(file))")
    contents = chest_images[0].read_bytes() if hasattr(chest_images[0], "read_bytes") else b"\x89PNG\r\n\x00"
    recorded = pipeline.predict([contents, "film\0.png"], on_error="record")  # a file's contents, a NUL in a name
    assert recorded[0].source == "bytes[0]" and "bytes holding a NUL byte are not a file name" in recorded[0].error
    assert "'film\\x00.png': not a file name: it holds a NUL byte" in recorded[1].error
    huge = np.zeros((8000, 7000), np.uint8)
    with pytest.raises(CovidCXRError, match=r"array\[0\]: image of 7000x8000 pixels exceeds the limit"):
        pipeline.predict(huge)


def test_errors_are_raised_or_recorded(pipeline, chest_images, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    with pytest.raises(CovidCXRError, match="broken.png"):
        pipeline.predict([chest_images[0], broken])
    results = pipeline.predict([chest_images[0], broken, chest_images[1]], on_error="record")
    assert [r.error is None for r in results] == [True, False, True]
    assert "broken.png" in results[1].error and results[1].label is None


def test_bad_arguments_are_config_errors(pipeline, chest_images):
    for batch_size in (0, -1, 2.5):
        with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
            pipeline.predict(chest_images[:1], batch_size=batch_size)
    with pytest.raises(ConfigError, match="on_error"):
        pipeline.predict(chest_images[:1], on_error="ignore")
    with pytest.raises(ConfigError, match="batch_size must be a positive integer, got True"):
        pipeline.predict(chest_images[:1], batch_size=True)
    assert len(pipeline.predict(chest_images[:2], batch_size=np.int64(1))) == 2
    with pytest.raises(ConfigError, match="strict must be True or False, got 'no'"):
        pipeline.predict(chest_images[:1], strict="no")
    for explain in ("nope", 2, -1, 0.5):  # checked before any image is read
        with pytest.raises(ConfigError, match=f"explain={explain!r}: .* classes are \\['non_covid', 'covid'\\]"):
            pipeline.predict(["missing.png"], explain=explain)


@pytest.mark.parametrize("ensemble", ["weighted_average", "majority_vote"])
def test_three_class_results_name_covid_normal_pneumonia(make_pipeline, chest_images, ensemble):
    three_class = make_pipeline(ensemble=ensemble, num_classes=3)
    for result in three_class.predict(chest_images[:2]):
        assert set(result.probabilities) == {"covid", "normal", "pneumonia"}
        assert sum(result.probabilities.values()) == pytest.approx(1.0)
        assert result.label in ("covid", "normal", "pneumonia")
        for member in result.members.values():
            assert set(member["probabilities"]) == {"covid", "normal", "pneumonia"}
            assert member["label"] == max(member["probabilities"], key=member["probabilities"].get)


def test_input_contract_refuses_small_images(pipeline):
    tiny = np.zeros((20, 20), "float32")
    with pytest.raises(InputContractError, match="smaller than 64 px"):
        pipeline.predict([tiny])
    assert "input contract" in pipeline.predict([tiny], on_error="record")[0].error


def test_explain_gives_a_heatmap_at_the_original_size(pipeline, chest_images):
    result = pipeline.predict(chest_images[:1], explain=True)[0]
    assert result.heatmap.shape == chest_images[0].shape
    assert 0.0 <= result.heatmap.min() and result.heatmap.max() <= 1.0
    assert result.heatmap_class == result.label  # what the overlay's caption names
    heatmap = pipeline.explain(chest_images[0], class_name="non_covid")
    assert heatmap.shape == chest_images[0].shape
    assert pipeline.predict(chest_images[:1], explain="non_covid")[0].heatmap_class == "non_covid"
    by_index = pipeline.explain(chest_images[0], class_name=0)  # an index names the class, 0 included
    np.testing.assert_array_equal(by_index, heatmap)
    assert pipeline.predict(chest_images[:1], explain=1)[0].heatmap_class == "covid"


def test_printed_pipelines_and_results_are_readable(pipeline, chest_images):
    text = repr(pipeline)
    assert text.startswith("Pipeline(segmenter=ResUnet ") and "['alpha', 'beta']" in text
    assert pipeline.decision_rule.describe() in text
    result = pipeline.predict(chest_images[:1], explain=True)[0]
    shape = chest_images[0].shape
    text = repr(result)
    assert f"image=<float32 {shape}>" in text and f"mask=<bool {shape}>" in text
    assert f"heatmap=<float32 {shape}>" in text and f"label={result.label!r}" in text
    assert len(text) < 3000  # the arrays are not printed


class RectangleSegmenter(keras.Model):
    """A stand-in segmenter that always finds the same rectangular 'lungs' (rows, cols at 64 px)."""

    input_size, input_channels = 64, 1

    def __init__(self, rows=slice(16, 48), cols=slice(8, 40)):
        super().__init__()
        self.mask = np.zeros((1, 64, 64, 1), "float32")
        self.mask[:, rows, cols] = 1.0

    def call(self, x):
        return keras.ops.zeros_like(x) + self.mask


def test_bbox_masking_crops_to_the_lungs_and_maps_back(chest_images, make_pipeline):
    pipeline = Pipeline(
        RectangleSegmenter(),
        make_pipeline().ensemble,
        preprocessing=PreprocessingConfig(masking="bbox", bbox_margin=0.0),
    )
    image = chest_images[1]  # 256 x 256: the 64 px mask scales by 4
    result = pipeline.predict([image], explain=True)[0]
    assert result.crop_box == (32, 64, 160, 192)
    assert result.lung_fraction == pytest.approx(128 * 128 / 256**2, abs=0.01)
    assert result.lung_components == 1 and not result.warnings
    x0, y0, x1, y1 = result.crop_box
    outside = result.heatmap.copy()
    outside[y0:y1, x0:x1] = 0
    assert outside.max() == 0.0


@pytest.mark.parametrize("fall_back", [True, False])
def test_an_implausible_mask_is_flagged(chest_images, make_pipeline, fall_back):
    speck = RectangleSegmenter(rows=slice(30, 32), cols=slice(30, 32))  # 0.1% of the image
    ensemble = make_pipeline().ensemble
    config = PreprocessingConfig(masking="bbox", fall_back_to_unmasked=fall_back)
    result = Pipeline(speck, ensemble, preprocessing=config).predict([chest_images[1]])[0]
    assert [code for code, _ in result.warnings] == ["implausible_mask"]
    message = result.warnings[0][1]
    if fall_back:
        assert result.crop_box is None and "classified the unmasked image" in message
    else:
        assert result.crop_box is not None and "used anyway" in message


class ThresholdSegmenter(keras.Model):
    """A stand-in segmenter whose 'lungs' are the brighter-than-average pixels of its input (at 64 px)."""

    input_size, input_channels = 64, 1

    def call(self, x):
        return keras.ops.cast(keras.ops.greater(x, 0.0), "float32")


def boxes_image(*boxes, size=256):
    """A (size, size) image, 1 inside these (rows, cols) slices and 0 elsewhere."""
    image = np.zeros((size, size), "float32")
    for rows, cols in boxes:
        image[rows, cols] = 1.0
    return image


FRONTAL = boxes_image((slice(40, 200), slice(24, 112)), (slice(40, 200), slice(144, 232)))  # two lungs
LATERAL = boxes_image((slice(40, 220), slice(60, 200)))  # one lung field


@pytest.fixture(scope="module")
def view_checking(pipeline):
    """(pipeline without the mask view check, the same with it); shares the session pipeline's ensemble."""
    plain = Pipeline(ThresholdSegmenter(), pipeline.ensemble)
    return plain, plain.with_input_contract(check_view_from_mask=True)


def test_with_settings_refuse_unknown_names_and_bad_values(pipeline):
    with pytest.raises(ConfigError, match=r"unknown preprocessing settings: \['foo'\]"):
        pipeline.with_preprocessing(foo=1)
    with pytest.raises(ConfigError, match=r"unknown input contract fields: \['bar'\]"):
        pipeline.with_input_contract(bar=1)
    with pytest.raises(ConfigError, match="bbox_margin must lie in"):
        pipeline.with_preprocessing(bbox_margin=-1)
    with pytest.raises(ConfigError, match="min_size must be a whole number, got 'x'"):
        pipeline.with_input_contract(min_size="x")
    for threshold in ("x", "0.5", True, float("nan"), 1.0):
        with pytest.raises(ConfigError, match="the decision threshold must be a number strictly between 0 and 1"):
            pipeline.with_decision_threshold(threshold)
    assert pipeline.with_decision_threshold(np.float32(0.25)).decision_rule.threshold == pytest.approx(0.25)


def test_with_input_contract_changes_only_the_contract(view_checking):
    plain, checking = view_checking
    assert checking.input_contract.check_view_from_mask and not plain.input_contract.check_view_from_mask
    assert checking.input_contract.min_size == plain.input_contract.min_size == 64
    assert checking.segmenter is plain.segmenter and checking.ensemble is plain.ensemble
    assert checking.get_config()["input_contract"]["check_view_from_mask"] is True


def test_a_lateral_looking_mask_is_flagged_only_when_the_check_is_on(view_checking):
    plain, checking = view_checking
    assert all(not r.warnings for r in plain.predict([FRONTAL, LATERAL]))
    frontal, lateral = checking.predict([FRONTAL, LATERAL])
    assert frontal.warnings == [] and frontal.error is None
    assert [code for code, _ in lateral.warnings] == ["view"]
    assert lateral.warnings[0][1].startswith("lung mask looks like a lateral view (second lung component 0% ")
    assert lateral.error is None and lateral.label is not None  # flagged, still predicted
    assert checking.predict([FRONTAL], strict=True)[0].warnings == []


def test_lungs_plus_gas_under_the_diaphragm_are_flagged(view_checking):
    plain, _ = view_checking
    with_gas = FRONTAL + boxes_image((slice(216, 240), slice(150, 220)))  # 46% of the film in 3 pieces
    result = plain.predict([with_gas])[0]
    assert result.lung_components == 3 and 0.44 < result.lung_fraction < 0.47
    assert [code for code, _ in result.warnings] == ["mask_below_diaphragm"]
    assert result.error is None and result.label is not None  # flagged, still predicted


def test_strict_refuses_a_lateral_looking_mask_with_raise(view_checking):
    _, checking = view_checking
    message = r"^array\[1\]: lung mask looks like a lateral view .*\(input contract\)$"
    with pytest.raises(InputContractError, match=message):
        checking.predict([FRONTAL, LATERAL], strict=True)


def test_strict_refuses_a_lateral_looking_mask_with_record(view_checking):
    _, checking = view_checking
    results = checking.predict([FRONTAL, LATERAL, FRONTAL], strict=True, on_error="record")
    assert [r.error is None for r in results] == [True, False, True]
    refused = results[1]
    assert refused.error.startswith("array[1]: lung mask looks like a lateral view")
    assert refused.label is None and refused.probabilities is None and refused.members is None
    assert refused.mask is None and refused.lung_fraction is None and refused.warnings == []
    assert refused.to_dict()["error"] == refused.error
    alone = checking.predict([FRONTAL])[0]  # the refused image does not change its neighbours' results
    for result in (results[0], results[2]):
        assert result.probabilities == pytest.approx(alone.probabilities, abs=1e-5)
    only_refused = checking.predict([LATERAL], strict=True, on_error="record")[0]  # nothing left to classify
    assert only_refused.error is not None and only_refused.label is None


def test_a_stated_view_is_left_to_the_metadata_check(view_checking):
    from keras_covidcxr.io.image_loader import LoadedImage

    _, checking = view_checking
    stated_pa = LoadedImage(LATERAL, {"path": "pa.dcm", "view": "PA"})
    result = checking.predict([stated_pa], strict=True)[0]
    assert result.error is None and result.warnings == []
    stated_lateral = LoadedImage(LATERAL, {"path": "ll.dcm", "view": "L"})
    assert [message for _, message in checking.predict([stated_lateral])[0].warnings] == [
        "view L is not one of PA, AP, AP Supine"
    ]


def test_a_two_class_pipeline_with_covid_first_is_refused(pipeline):
    # its decision rule, threshold and sensitivity are the second class's: covid first would read them backwards
    with pytest.raises(ConfigError, match=r"name covid second: retrain or fine-tune them with the classes "
                                          r"\['non_covid', 'covid'\]"):
        Pipeline(ThresholdSegmenter(), pipeline.ensemble, class_names=("covid", "non_covid"))
    with pytest.raises(ConfigError, match="need 2 distinct class names"):
        Pipeline(ThresholdSegmenter(), pipeline.ensemble, class_names=("covid", "covid"))


def test_misused_arguments_are_named_before_anything_runs(pipeline):
    members = list(pipeline.ensemble.members)
    with pytest.raises(ConfigError, match=r"ensemble must be a WeightedAverageEnsemble or MajorityVoteEnsemble, got a "
                                          r"list \(members go inside one"):
        Pipeline(ThresholdSegmenter(), members)
    with pytest.raises(ConfigError, match=r"preprocessing: give PreprocessingConfig\(\.\.\.\) with these settings, not a dict"):
        Pipeline(ThresholdSegmenter(), pipeline.ensemble, preprocessing={"masking": "bbox"})
    with pytest.raises(ConfigError, match=r"input_contract: give InputContract\(\.\.\.\) with these settings, not a dict"):
        Pipeline(ThresholdSegmenter(), pipeline.ensemble, input_contract={"min_size": 64})
