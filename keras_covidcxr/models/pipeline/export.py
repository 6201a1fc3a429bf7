"""Export a `Pipeline`'s models (ONNX, LiteRT or TensorFlow SavedModel) with what it needs to run them.

The folder holds one graph per model call of `Pipeline.predict`: the segmenter (gray (n, S, S, 1)
-> lung probabilities) and the ensemble (gray classifier inputs (n, C, C, 1) -> probabilities, label,
member_probabilities, member_labels and, when the preset has an out-of-distribution check, features:
that member's pooled features, from the same pass), and `out_of_distribution.npz` when there is such a
check. `export.json` beside them records the class names, the pipeline config (decision rule,
thresholds, calibration, refer rule, preprocessing, input contract), the preset's fingerprint, the
package version and the sha256 of every other file. Between the graphs, the numpy steps (decode,
resize, mask QC, crop) are the package's own, so `keras_covidcxr.runtime.ExportedPipeline` gives
`Pipeline.predict`'s results with ONNX Runtime or LiteRT and no Keras.

Example:
    >>> pipeline = Pipeline.from_preset("covidcxr_lite")  # doctest: +SKIP
    >>> export_pipeline(pipeline, "covidcxr_lite_onnx", format="onnx")  # doctest: +SKIP
"""

import json
import warnings

import keras
import numpy as np

from keras_covidcxr.errors import ConfigError, MissingDependencyError, OutputExistsError, PresetError
from keras_covidcxr.io.atomic import atomic_directory
from keras_covidcxr.presets.checksums import checksum_tree
from keras_covidcxr.runtime.export_folder import (
    BACKENDS,  # noqa: F401  (read from here by callers)
    EXPORT_FILE,
    EXPORT_VERSION,
    FORMATS,
    check_export_destination,
    check_export_writer,
    replaceable_export_folder,
    settings_sha256,
)
from keras_covidcxr.version import __version__


def check_export_backend(format, backend=None):
    """Refuse, before any model loads, a format the Keras backend in use (or `backend`) cannot export as needed."""
    check_export_writer(format, backend or keras.backend.backend())


def export_pipeline(pipeline, folder, format="onnx", overwrite=False):
    """Write `pipeline`'s graphs in `format` ("onnx", "litert" or "tf_saved_model") and export.json into `folder`.

    The folder is written atomically; an existing one is replaced only if it is empty, or an
    earlier export and `overwrite=True`.

    Raises:
        ConfigError: an unsupported format, or a folder that is not ours to replace.
        MissingDependencyError: the exporter's packages are missing (says what to install).
    """
    from keras_covidcxr.inference.batch_prediction import model_sha256

    check_export_destination(folder, format, overwrite)
    pipeline.check_storable()
    check_export_backend(format)
    graphs = _graphs(pipeline)
    suffix = FORMATS[format]
    manifest = {
        "covidcxr_export": EXPORT_VERSION,
        "format": format,
        "graphs": {name: f"{name}{suffix}" for name in graphs},
        "feature_member": pipeline.out_of_distribution.member if pipeline.out_of_distribution else None,
        "config": pipeline.get_config(),
        "class_names": list(pipeline.class_names),
        "decision_rule": pipeline.decision_rule.to_dict(),
        "graph_inputs": GRAPH_INPUTS,
        "segmenter_size": int(pipeline.segmenter.input_size),
        "classifier_size": int(pipeline.classifier_size),
        "classifier_channels": int(pipeline.classifier_channels),
        "preset_sha256": model_sha256(pipeline),
        "preset": pipeline.metadata.get("loaded_from"),
        "trained": pipeline.is_trained,
        "package_version": __version__,
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
    }

    try:
        with atomic_directory(folder, replace_if=lambda path: replaceable_export_folder(path, overwrite)) as tmp:
            for name, (model, shape) in graphs.items():
                _export_graph(model, shape, tmp / manifest["graphs"][name], format)
                _check_graph_runs(tmp / manifest["graphs"][name], shape, format, name)
            if pipeline.out_of_distribution is not None:
                pipeline.out_of_distribution.save_features(tmp)
            manifest["files"] = checksum_tree(tmp, exclude=(EXPORT_FILE,))  # the runtime checks them
            manifest["settings_sha256"] = settings_sha256(manifest)
            (tmp / EXPORT_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    except OutputExistsError as error:
        raise ConfigError(
            f"{folder}: exists and is not an empty folder"
            + ("" if overwrite else " (pass overwrite=True, --overwrite, to replace an earlier export)")
        ) from error
    return folder


# For whoever runs the graphs without this package: what goes in (the package's own steps, named) and what the
# ensemble's label output is not.
GRAPH_INPUTS = {
    "segmenter": "the decoded gray film in [0, 1], resized (bilinear) to segmenter_size, then standardised per image, "
                 "(x - mean) / std; output: each pixel's lung probability "
                 "(keras_covidcxr.preprocessing.model_inputs.segmenter_input). With input_contract.check_inverted it "
                 "runs a second time on the negated input (the film's negative) for the inverted-film check",
    "ensemble": "the film masked as config.preprocessing says (masking 'bbox': cropped to the lung mask's box widened "
                "by bbox_margin; 'hard': zero outside the lungs; unmasked when the mask is implausible and "
                "fall_back_to_unmasked), the lung mask being the segmenter's output resized (bilinear) to the film, "
                "then thresholded at mask_threshold and trimmed to keep_largest_pieces; then resized (bilinear) to "
                "classifier_size, gray in [0, 1], standardised per image when standardize, the gray copied into "
                "three channels when classifier_channels is 3 "
                "(keras_covidcxr.preprocessing.model_inputs.classifier_input). Its `label` output applies the raw "
                "ensemble threshold only; the decision is decision_rule (calibration, refer band, input checks), as "
                "ExportedPipeline applies it",
}


def _graphs(pipeline):
    """{name: (Keras model, input shape without the batch)} of the model calls `Pipeline.predict` makes."""
    seg = pipeline.segmenter.input_size
    size, channels = pipeline.classifier_size, pipeline.classifier_channels
    return {"segmenter": (pipeline.segmenter, (seg, seg, 1)),
            "ensemble": (pipeline.inference_model, (size, size, channels))}


def _check_graph_runs(path, shape, format, name):
    """Refuse a graph its light-runtime engine cannot load or run (an op it lacks), before the folder is written.
    Not checked when that engine is not installed here."""
    from keras_covidcxr.runtime.graph_engines import GRAPH_ENGINES

    engine = GRAPH_ENGINES.get(format)
    if engine is None:
        return
    try:
        engine(path).run(np.zeros((1, *shape), "float32"))
    except MissingDependencyError:
        return
    except PresetError as error:
        raise ConfigError(f"the exported {name} graph does not run in the {format} runtime, so it was not written: "
                          f"{str(error).split(': ', 1)[-1]}") from error


def _export_graph(model, shape, path, format):
    model(np.zeros((1, *shape), "float32"))  # exporting needs a model that has been called
    try:
        with warnings.catch_warnings():
            # keras' tf2onnx shim probes np.object, which numpy >= 1.25 answers with a FutureWarning
            warnings.filterwarnings("ignore", message=".*np.object.*", category=FutureWarning)
            model.export(str(path), format=format, verbose=False)
    except ImportError as error:
        extra = "export" if keras.backend.backend() == "tensorflow" else "export,tensorflow-cpu"  # TensorFlow writes it
        raise MissingDependencyError(
            f"exporting to {format} needs packages that are not installed ({error}); "
            f'install them with: pip install "keras-covidcxr[{extra}]"'
        ) from error
