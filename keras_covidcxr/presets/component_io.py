"""One component on disk: its Keras config as JSON and its weights as safetensors.

Weights are keyed by each variable's path (e.g. "encoder1_conv1/kernel"), which
is stable because every layer is named explicitly. Loading builds the component
from its config (only keras_covidcxr classes are accepted, nothing is
unpickled) and requires the exact same keys and shapes.
"""

import json

import keras
import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from keras_covidcxr.errors import PresetError
from keras_covidcxr.models.classifier.cxr_classifier import CXRClassifier
from keras_covidcxr.models.resunet.resunet import ResUnet

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

# The only classes a preset may name: nothing else is ever instantiated from one.
COMPONENT_CLASSES = {f"keras_covidcxr>{cls.__name__}": cls for cls in (ResUnet, CXRClassifier)}


def weights_by_path(model):
    """{variable path: numpy array} of every weight (trainable or not) of `model`."""
    weights = {v.path: keras.ops.convert_to_numpy(v) for v in model.weights}
    if len(weights) != len(model.weights):
        raise PresetError(f"{model.name}: two weights share a path; name every layer uniquely")
    return weights


def write_component(model, folder):
    """Write `model`'s config and weights into `folder` (which must exist)."""
    config = model.get_config()
    if "backbone_weights" in config:
        # The saved weights include the backbone's; never re-download ImageNet on load.
        config["backbone_weights"] = None
    registered_name = keras.saving.get_registered_name(type(model))
    if registered_name not in COMPONENT_CLASSES:
        raise PresetError(f"{type(model).__name__} is not a preset component class")
    document = {"class_name": type(model).__name__, "registered_name": registered_name, "config": config}
    (folder / CONFIG_FILE).write_text(json.dumps(document, indent=2) + "\n")
    save_file(weights_by_path(model), str(folder / WEIGHTS_FILE))


def read_component(folder):
    """Build the component saved in `folder` and load its weights, checking both."""
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    try:
        document = json.loads(config_path.read_text())
        cls = COMPONENT_CLASSES.get(document["registered_name"])
        config = document["config"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise PresetError(f"{config_path}: unreadable component config ({error})") from error
    if cls is None:
        raise PresetError(
            f"{config_path}: unknown class {document['registered_name']!r}; "
            f"a preset may only name {sorted(COMPONENT_CLASSES)}"
        )
    _refuse_outside_weights(config, config_path)
    try:
        model = cls.from_config(config)
    except (TypeError, ValueError) as error:
        raise PresetError(f"{config_path}: invalid {cls.__name__} config ({error})") from error
    try:
        saved = load_file(str(weights_path))
    except (OSError, SafetensorError) as error:
        raise PresetError(f"{weights_path}: unreadable weights ({error})") from error
    _assign_weights(model, saved, weights_path)
    return model


def _refuse_outside_weights(config, config_path):
    """A preset's weights are its safetensors files: a config may not load others (a path, a download)."""
    if isinstance(config, dict):
        if config.get("backbone_weights") is not None:
            raise PresetError(
                f"{config_path}: backbone_weights must be null in a preset (got {config['backbone_weights']!r}); "
                "a preset's weights live in its model.safetensors"
            )
        for value in config.values():
            _refuse_outside_weights(value, config_path)
    elif isinstance(config, list):
        for value in config:
            _refuse_outside_weights(value, config_path)


def _assign_weights(model, saved, weights_path):
    expected = {v.path: v for v in model.weights}
    missing, unexpected = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
    if missing or unexpected:
        raise PresetError(
            f"{weights_path}: weights do not match the {type(model).__name__} config "
            f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''})"
        )
    for path, variable in expected.items():
        value = saved[path]
        if tuple(value.shape) != tuple(variable.shape):
            raise PresetError(
                f"{weights_path}: weight {path} has shape {tuple(value.shape)}, "
                f"the config needs {tuple(variable.shape)}"
            )
        if not np.all(np.isfinite(value)):
            raise PresetError(f"{weights_path}: weight {path} holds NaN or infinite values")
        variable.assign(value)
