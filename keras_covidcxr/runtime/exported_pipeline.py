"""`ExportedPipeline`: `Pipeline.predict` on an ONNX or LiteRT export (`covidcxr export`), without Keras."""

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np

from keras_covidcxr.errors import ConfigError, PresetError
from keras_covidcxr.models.pipeline.decision_rule import decision_rule_from_config
from keras_covidcxr.models.pipeline.out_of_distribution import FeatureDistanceCheck
from keras_covidcxr.models.pipeline.prediction_steps import PredictionSteps, settings_from_config
from keras_covidcxr.presets.checksums import sha256_of_file
from keras_covidcxr.runtime.export_folder import EXPORT_FILE, EXPORT_VERSION, settings_sha256
from keras_covidcxr.runtime.graph_engines import GRAPH_ENGINES, OnnxGraph
from keras_covidcxr.settings import is_flag


class ExportedPipeline(PredictionSteps):
    """A pipeline exported with `covidcxr export PRESET DIR --format onnx|litert`, run by ONNX Runtime or LiteRT.

    `predict` takes the same inputs and gives the same `PipelineResult`s as `Pipeline.predict`
    (the same decoding, resizing, mask checks, decision and refer rules, calibration and
    out-of-distribution check: the numpy steps are shared); Grad-CAM needs the Keras pipeline, and
    test-time augmentation a weighted-average preset.

    Args:
        folder: the export folder (export.json and the .onnx or .tflite graphs).
        decision_threshold: as `Pipeline.with_decision_threshold`.
        refer: False turns the preset's refer rule off (`--no-refer`).
        check_view: also check the view of images that state none from the lung mask
            (as `Pipeline.with_input_contract(check_view_from_mask=True)`, `--check-view`).
        providers: ONNX Runtime execution providers (default: the CPU; ONNX exports only).

    Example:
        >>> pipeline = ExportedPipeline("covidcxr_lite_onnx")  # doctest: +SKIP
        >>> result = pipeline.predict(["chest.png"])[0]  # doctest: +SKIP
    """

    def __init__(self, folder, decision_threshold=None, refer=True, check_view=False,
                 providers=("CPUExecutionProvider",)):
        for name, value in (("refer", refer), ("check_view", check_view)):
            if not is_flag(value):
                raise ConfigError(f"{name} must be True or False, got {value!r}")
        self.folder = Path(folder)
        try:
            self._read_export(check_view, providers)
            self._decide(None, True)  # the export's own rule must hold before a user's threshold replaces it
        except (KeyError, TypeError, AttributeError, ValueError, ConfigError) as error:
            reason = f"missing {error}" if isinstance(error, KeyError) else str(error)
            raise PresetError(f"{self.folder / EXPORT_FILE}: not a valid export ({reason}); export the preset "
                              "again") from error
        self._decide(decision_threshold, refer)

    def with_decision_threshold(self, threshold):
        """This export labelling the positive class when p >= `threshold`, as `Pipeline.with_decision_threshold`
        (None restores the export's own rule)."""
        return copy.copy(self)._decide(threshold, self._refer)

    def without_refer(self):
        """This export always answering (no refer rule), as `Pipeline.without_refer` and `--no-refer`."""
        return copy.copy(self)._decide(self.decision_threshold, False)

    def _decide(self, threshold, refer):
        self.decision_threshold, self._refer = threshold, refer
        rule = decision_rule_from_config(self._config, threshold, refer=refer)
        exported = self.metadata["export"].get("decision_rule") or {}
        if threshold is None and exported.get("origin") == "user":  # exported after `with_decision_threshold`
            rule = dataclasses.replace(rule, origin="user")
        self.decision_rule = rule
        return self

    def _read_export(self, check_view, providers):
        manifest = _read_manifest(self.folder)
        engine = GRAPH_ENGINES.get(manifest["format"])
        if engine is None:
            raise PresetError(f"{self.folder}: a {manifest['format']} export; the light runtime runs "
                              f"{' and '.join(GRAPH_ENGINES)} exports")
        _check_files(self.folder, manifest)
        config = manifest["config"]
        self.metadata = {"export": {k: v for k, v in manifest.items() if k != "config"},
                         "loaded_from": str(self.folder)}
        self.class_names = tuple(config["class_names"])
        self.member_names = [str(path).rsplit("/", 1)[-1] for path in config["members"]]
        self.ensemble_config = config["ensemble"]
        self.vote_thresholds = list(self.ensemble_config["config"].get("member_thresholds")
                                    or [0.5] * len(self.member_names))
        settings = settings_from_config(config, lambda entry: FeatureDistanceCheck.from_config(entry, self.folder))
        for name, value in settings.items():
            setattr(self, name, value)
        if check_view:
            self.input_contract = dataclasses.replace(self.input_contract, check_view_from_mask=True)
        self._config = config
        self.segmenter_size = manifest["segmenter_size"]
        self.classifier_size = manifest["classifier_size"]
        self.classifier_channels = manifest["classifier_channels"]
        options = {"providers": providers} if engine is OnnxGraph else {}
        self._graphs = {name: engine(self.folder / file_name, **options)
                        for name, file_name in manifest["graphs"].items()}

    @property
    def is_trained(self):
        """Whether the exported preset recorded its training (`covidcxr export --allow-untrained` can export one that did not)."""
        return bool(self.metadata["export"].get("trained", True))

    def _segment(self, batch, batch_size):
        return next(iter(self._graphs["segmenter"].run(batch).values()))[..., 0]

    def _run_ensemble(self, batch, batch_size):
        outputs = self._graphs["ensemble"].run(batch)
        if self.ensemble_config["class_name"] == "WeightedAverageEnsemble" and len(self.class_names) == 2:
            # a threshold set with with_decision_threshold before the export is in export.json, not in the graph
            outputs["label"] = self._threshold_label(outputs["probabilities"])
        return outputs

    def _threshold_label(self, probabilities):
        """Two classes: the weighted average's label at the threshold export.json states."""
        threshold = self.ensemble_config["config"].get("threshold", 0.5)
        return (np.asarray(probabilities)[:, 1] >= threshold).astype("int32")

    def _combine(self, member_probabilities):
        """The weighted average's rule in numpy (test-time augmentation averages before combining)."""
        spec = self.ensemble_config
        if spec["class_name"] != "WeightedAverageEnsemble":
            raise ConfigError("test-time augmentation in the light runtime needs a weighted-average preset")
        settings = spec["config"]
        probabilities = np.einsum("nmc,m->nc", member_probabilities, np.asarray(settings["weights"], "float32"))
        two_classes = len(self.class_names) == 2
        if two_classes:
            label = self._threshold_label(probabilities)
            votes = np.asarray(self.vote_thresholds, "float32")
            member_labels = (member_probabilities[..., 1] >= votes).astype("int32")
        else:
            label = probabilities.argmax(axis=-1).astype("int32")
            member_labels = member_probabilities.argmax(axis=-1).astype("int32")
        return {"probabilities": probabilities, "label": label, "member_probabilities": member_probabilities,
                "member_labels": member_labels}


def _read_manifest(folder):
    if Path(folder).exists() and not Path(folder).is_dir():
        raise PresetError(f"{folder}: is a file; give the folder that `covidcxr export` wrote")
    path = Path(folder) / EXPORT_FILE
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise PresetError(f"{path}: no such file (not a covidcxr export folder)") from None
    except (OSError, ValueError) as error:
        raise PresetError(f"{path}: cannot read it ({error})") from None
    if not isinstance(manifest, dict) or "covidcxr_export" not in manifest:
        raise PresetError(f"{path}: not a covidcxr export")
    if manifest["covidcxr_export"] != EXPORT_VERSION:
        raise PresetError(f"{path}: export format {manifest['covidcxr_export']}, this version reads "
                          f"{EXPORT_VERSION}: export the preset again (covidcxr export)")
    recorded = manifest.get("settings_sha256")
    if recorded is None and not _exported_before_fingerprints(manifest.get("package_version")):
        raise PresetError(f"{path}: its settings fingerprint (settings_sha256) is missing; export the preset again")
    if recorded is not None and recorded != settings_sha256(manifest):
        raise PresetError(f"{path}: its settings were edited after export (their sha256 differs); export the "
                          "preset again")
    return manifest


def _exported_before_fingerprints(version):
    """Whether an export's package version predates the settings fingerprint (0.4.10)."""
    try:
        return tuple(int(part) for part in str(version).split(".")[:3]) < (0, 4, 10)
    except ValueError:
        return False


def _check_files(folder, manifest):
    """Refuse an export whose files are missing or differ from the sha256 that export.json records, and
    graphs it does not list (a path to another folder's graph)."""
    for name in manifest["graphs"].values():
        if name not in manifest.get("files", {}):
            raise PresetError(f"{Path(folder) / EXPORT_FILE}: graph {name} is not among its checksummed files")
    for name, digest in manifest.get("files", {}).items():
        path = Path(folder) / name
        if not path.is_file():
            raise PresetError(f"{path}: missing from the export (export.json lists it); export the preset again")
        if sha256_of_file(path) != digest:
            raise PresetError(f"{path}: its sha256 differs from the one in export.json (the file was changed or "
                              "damaged); export the preset again")
