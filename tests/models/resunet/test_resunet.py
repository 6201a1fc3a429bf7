import numpy as np
import pytest

from keras_covidcxr import ConfigError, ResUnet


def test_paper_configuration_parameter_count():
    # 7 levels, 64/128/256 filters + 512 bridge, 1x1-conv + BN shortcut in every unit.
    # The paper says "about 7.8 M": the count without the shortcuts (see the ResUnet docstring).
    model = ResUnet()
    assert model.count_params() == 8_231_745
    shortcuts = sum(int(np.prod(w.shape)) for w in model.weights if "_shortcut_" in w.path)
    assert shortcuts == 437_184 and model.count_params() - shortcuts == 7_794_561
    assert model.output_shape == (None, 256, 256, 1)


def test_level_shapes_follow_the_paper_table():
    model = ResUnet()
    shapes = {
        name: model.get_layer(f"{name}_add").output.shape[1:]
        for name in ["encoder1", "encoder2", "encoder3", "bridge", "decoder1", "decoder2", "decoder3"]
    }
    assert shapes == {
        "encoder1": (256, 256, 64),
        "encoder2": (128, 128, 128),
        "encoder3": (64, 64, 256),
        "bridge": (32, 32, 512),
        "decoder1": (64, 64, 256),
        "decoder2": (128, 128, 128),
        "decoder3": (256, 256, 64),
    }


def test_small_configuration_for_cpu():
    model = ResUnet(input_size=64, filters=(8, 16, 32), input_channels=1)
    assert model.count_params() == 32_329
    out = np.asarray(model.predict_on_batch(np.zeros((2, 64, 64, 1), "float32")))
    assert out.shape == (2, 64, 64, 1)
    assert np.all((out >= 0) & (out <= 1))


def test_config_round_trip_rebuilds_identical_model():
    model = ResUnet(input_size=32, filters=(4, 8), name="lungs")
    clone = ResUnet.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert [v.path for v in clone.weights] == [v.path for v in model.weights]
    clone.set_weights(model.get_weights())
    x = np.random.default_rng(0).normal(size=(1, 32, 32, 1)).astype("float32")
    np.testing.assert_allclose(clone.predict_on_batch(x), model.predict_on_batch(x), atol=1e-6)


def test_keras_serialization_round_trip():
    import keras

    model = ResUnet(input_size=32, filters=(4, 8))
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert isinstance(restored, ResUnet) and restored.get_config() == model.get_config()


@pytest.mark.parametrize("kwargs", [{"input_size": 90, "filters": (4, 8, 16)}, {"filters": (8,)},
                                    {"input_size": 0, "filters": (4, 8)}, {"input_size": 64, "filters": (0, 8)}])
def test_invalid_configurations_are_refused(kwargs):
    with pytest.raises(ConfigError):
        ResUnet(**kwargs)
