"""Segment -> mask -> classify -> ensemble -> explain, as one object with presets."""

import datetime
import os
import warnings
from pathlib import Path

import keras
import numpy as np

from keras_covidcxr.data.class_names import BINARY_CLASS_NAMES, MULTICLASS_CLASS_NAMES, check_class_names
from keras_covidcxr.errors import (
    ConfigError,
    OutputExistsError,
    PresetError,
    UntrainedPresetWarning,
)
from keras_covidcxr.explain.grad_cam import GradCAM
from keras_covidcxr.io.atomic import atomic_directory
from keras_covidcxr.models.ensemble.ensemble_with_features import EnsembleWithFeatures
from keras_covidcxr.models.ensemble.majority_vote_ensemble import MajorityVoteEnsemble
from keras_covidcxr.models.ensemble.weighted_average_ensemble import WeightedAverageEnsemble
from keras_covidcxr.models.pipeline.batch_inference import run_padded
from keras_covidcxr.models.pipeline.decision_rule import decision_rule_of
from keras_covidcxr.models.pipeline.out_of_distribution import FeatureDistanceCheck
from keras_covidcxr.models.pipeline.prediction_steps import PredictionSteps, settings_from_config
from keras_covidcxr.models.pipeline.verification import golden_outputs
from keras_covidcxr.preprocessing.input_contract import InputContract
from keras_covidcxr.preprocessing.preprocessing_config import PreprocessingConfig
from keras_covidcxr.preprocessing.resize import resize_image
from keras_covidcxr.presets import component_io, preset_format
from keras_covidcxr.presets.destination import replaceable_preset_folder
from keras_covidcxr.presets.resolve import resolve_preset
from keras_covidcxr.settings import replaced
from keras_covidcxr.version import __version__

ENSEMBLE_CLASSES = {cls.__name__: cls for cls in (WeightedAverageEnsemble, MajorityVoteEnsemble)}


class Pipeline(PredictionSteps):
    """Lung segmentation, masking and an ensemble of classifiers, with Grad-CAM.

    Args:
        segmenter: a `ResUnet`.
        ensemble: a `WeightedAverageEnsemble` or `MajorityVoteEnsemble` of
            `CXRClassifier`s sharing one input shape.
        class_names: one name per class, in the classifiers' output order;
            defaults to ("non_covid", "covid") or ("covid", "normal", "pneumonia").
        preprocessing: a `PreprocessingConfig` (masking mode, mask checks).
        input_contract: an `InputContract` (what images are accepted).
        metadata: the preset's metadata (training provenance among it).
        decision_threshold: two classes only: label the positive class when its
            (calibrated) probability reaches this, instead of the ensemble's own
            rule (see `decision_rule`); it turns the refer rule's band off (its film
            checks, out of distribution and input checks, still refer).
        calibration: a `ProbabilityCalibration` fitted on validation data: results'
            `probabilities` are calibrated, `raw_probabilities` keep the ensemble's.
        refer_rule: a `ReferRule`; images it catches are labelled "refer" (their
            would-be label kept in `would_be_label`). Its band and member-spread
            limit need a two-class weighted average; its film checks (out of
            distribution, input checks) work in any pipeline.
        out_of_distribution: a `FeatureDistanceCheck`; images whose features lie far
            from the training images' get an "out_of_distribution" warning.

    `inference_model` is the Keras model `predict` (and `export`) runs on classifier inputs: the
    ensemble, or with an out-of-distribution check an `EnsembleWithFeatures` that also returns the
    check's features from the same backbone pass.

    A pipeline is not a Keras object and has no `from_config`: it is saved and
    loaded as a preset (`save_to_preset`, `from_preset`), whose config.json is
    `get_config()` and whose components are serialized Keras models.

    Example:
        >>> from keras_covidcxr import Pipeline
        >>> pipeline = Pipeline.from_preset("./my_preset")  # doctest: +SKIP
        >>> result = pipeline.predict(["chest.png"])[0]  # doctest: +SKIP
        >>> result.label, result.probabilities["covid"], result.lung_fraction  # doctest: +SKIP
        >>> heatmap = pipeline.explain("chest.png")  # doctest: +SKIP
        >>> pipeline.save_to_preset("./copy_of_preset")  # doctest: +SKIP
    """

    supports_explain = True

    def __init__(
        self,
        segmenter,
        ensemble,
        class_names=None,
        preprocessing=None,
        input_contract=None,
        metadata=None,
        decision_threshold=None,
        calibration=None,
        refer_rule=None,
        out_of_distribution=None,
    ):
        if not (hasattr(ensemble, "members") and hasattr(ensemble, "num_classes")):
            raise ConfigError(f"ensemble must be a WeightedAverageEnsemble or MajorityVoteEnsemble, got a "
                              f"{type(ensemble).__name__} (members go inside one: WeightedAverageEnsemble([m1, m2]))")
        for name, value, kind in (("preprocessing", preprocessing, PreprocessingConfig),
                                  ("input_contract", input_contract, InputContract)):
            if value is not None and not isinstance(value, kind):
                raise ConfigError(f"{name}: give {kind.__name__}(...) with these settings, not a "
                                  f"{type(value).__name__}")
        if class_names is None:
            class_names = BINARY_CLASS_NAMES if ensemble.num_classes == 2 else MULTICLASS_CLASS_NAMES
        class_names = tuple(class_names)
        if len(class_names) != ensemble.num_classes or len(set(class_names)) != len(class_names):
            raise ConfigError(
                f"need {ensemble.num_classes} distinct class names, got {list(class_names)}"
            )
        # these classifiers give p(covid) first: swapping the names would read every label backwards
        check_class_names(class_names, remedy="retrain or fine-tune them with the classes ['non_covid', 'covid']")
        shapes = {tuple(m.input_shape[1:]) for m in ensemble.members}
        if len(shapes) != 1:
            raise ConfigError(f"ensemble members must share one input shape, got {sorted(shapes)}")
        if segmenter.input_channels != 1:
            raise ConfigError("the pipeline feeds gray images: the segmenter needs input_channels=1")
        self.segmenter = segmenter
        self.ensemble = ensemble
        self.class_names = class_names
        self.preprocessing = preprocessing or PreprocessingConfig()
        self.input_contract = input_contract or InputContract(min_size=segmenter.input_size)
        _check_decoding_matches(self.input_contract)
        self.metadata = dict(metadata or {})
        self.preset_folder = None  # the folder `from_preset` read it from
        if refer_rule is not None and refer_rule.has_band and (
                len(class_names) != 2 or not isinstance(ensemble, WeightedAverageEnsemble)):
            raise ConfigError("a refer band or member-spread limit needs a two-class weighted-average ensemble (a "
                              "threshold to refer around); other pipelines refer only on film checks")
        if refer_rule is not None and refer_rule.out_of_distribution and out_of_distribution is None:
            raise ConfigError("the refer rule refers out-of-distribution films, but the pipeline has no "
                              "out-of-distribution check to flag them")
        if out_of_distribution is not None and out_of_distribution.member not in ensemble.member_names:
            raise ConfigError(
                f"the out-of-distribution check uses member {out_of_distribution.member!r}, "
                f"which is not one of {ensemble.member_names}"
            )
        if out_of_distribution is not None:
            member = ensemble.members[ensemble.member_names.index(out_of_distribution.member)]
            channels = getattr(getattr(member, "feature_extractor", None), "output_shape", (None,))[-1]
            if channels is not None and channels != out_of_distribution.reference.shape[1]:
                raise ConfigError(
                    f"the out-of-distribution check's reference features have {out_of_distribution.reference.shape[1]}"
                    f" channels, member {out_of_distribution.member!r}'s features {channels}"
                )
        self.calibration = calibration
        self.refer_rule = refer_rule
        self.out_of_distribution = out_of_distribution
        self.decision_threshold = decision_threshold
        self.decision_rule = decision_rule_of(ensemble, class_names, decision_threshold, calibration, refer_rule)
        self.classifier_size, _, self.classifier_channels = shapes.pop()
        self.segmenter_size = segmenter.input_size
        normalising = [m.name for m in ensemble.members if getattr(m, "input_normalization", None)]
        if normalising and self.preprocessing.standardize:
            raise ConfigError(
                f"members {normalising} normalise gray [0, 1] inputs themselves: use "
                "PreprocessingConfig(standardize=False)"
            )
        self._grad_cam = None
        # with the out-of-distribution check, one pass of its member's backbone gives both its
        # probabilities and the features the check reads
        self.inference_model = ensemble if out_of_distribution is None else EnsembleWithFeatures(
            ensemble, out_of_distribution.member)

    def with_preprocessing(self, **changes):
        """A pipeline sharing these models, with some preprocessing settings changed.

        Example: `pipeline.with_preprocessing(masking="bbox", bbox_margin=0.05)`.
        """
        return self._sharing_models(preprocessing=replaced(self.preprocessing, changes, "preprocessing settings"))

    def with_input_contract(self, **changes):
        """A pipeline sharing these models, with some input contract settings changed.

        Example: `pipeline.with_input_contract(check_view_from_mask=True)`
        also checks the view of PNG/JPEG images from their lung mask.
        """
        return self._sharing_models(input_contract=replaced(self.input_contract, changes, "input contract fields"))

    def with_decision_threshold(self, threshold):
        """A pipeline sharing these models that labels the positive class when p >= `threshold`.

        Two classes only; None restores the preset's own rule. Every result
        records the rule it was labelled by (`result.decision`). A refer rule
        keeps only its film checks (`ReferRule.without_band`).

        Example: `pipeline.with_decision_threshold(0.5).decision_rule.describe()`
        gives "covid if p(covid) >= 0.500 (threshold given by the user)", followed
        by the film checks of the pipeline's refer rule, if it has one.
        """
        return self._sharing_models(decision_threshold=threshold)

    def without_refer(self):
        """A pipeline sharing these models that always answers (no refer rule), as `--no-refer` does."""
        return self._sharing_models(refer_rule=None)

    def _sharing_models(self, **changes):
        settings = {
            "preprocessing": self.preprocessing,
            "input_contract": self.input_contract,
            "metadata": self.metadata,
            "decision_threshold": self.decision_threshold,
            "calibration": self.calibration,
            "refer_rule": self.refer_rule,
            "out_of_distribution": self.out_of_distribution,
            **changes,
        }
        pipeline = Pipeline(self.segmenter, self.ensemble, self.class_names, **settings)
        pipeline.preset_folder = self.preset_folder
        if "out_of_distribution" not in changes:  # the same inference model, so no second trace of it
            pipeline.inference_model = self.inference_model
        return pipeline

    def __repr__(self):
        return (
            f"Pipeline(segmenter={type(self.segmenter).__name__} {self.segmenter_size} px, "
            f"members={list(self.member_names)} at {self.classifier_size} px, "
            f"ensemble={type(self.ensemble).__name__}, classes={list(self.class_names)}, "
            f"label: {self.decision_rule.describe()})"
        )

    @property
    def member_names(self):
        return self.ensemble.member_names

    @property
    def vote_thresholds(self):
        """Two classes: each member's p(positive) at which it votes positive."""
        return list(self.ensemble.vote_thresholds)

    @property
    def is_trained(self):
        """Whether the preset records how its weights were trained."""
        return bool(self.metadata.get("training"))

    # === Prediction (`predict` and its numpy steps: `PredictionSteps`) ===

    def _segment(self, batch, batch_size):
        return run_padded(self.segmenter, batch, batch_size)[..., 0]

    def _run_ensemble(self, batch, batch_size):
        return run_padded(self.inference_model, batch, batch_size)

    def _combine(self, member_probabilities):
        combined = self.ensemble.combine(keras.ops.convert_to_tensor(member_probabilities))
        return {key: np.asarray(keras.ops.convert_to_numpy(value)) for key, value in combined.items()}

    def explain(self, image, class_name=None):
        """Grad-CAM heatmap (original size, values in [0, 1]) of one image.

        `class_name` (a name or its index in `class_names`) defaults to the predicted class.
        """
        result = self.predict([image], explain=True if class_name is None else class_name)[0]
        return result.heatmap

    def _add_heatmaps(self, results, pixels, classifier_batch, explain):
        if self._grad_cam is None:
            self._grad_cam = GradCAM(self.ensemble)  # kept: it caches compiled gradient functions
        targets = [explain if isinstance(explain, str) else result.would_be_label or result.label
                   for result in results]
        for class_name in dict.fromkeys(targets):
            rows = [i for i, target in enumerate(targets) if target == class_name]
            heatmaps = self._grad_cam(classifier_batch[rows], self.class_names.index(class_name))
            for row, heatmap in zip(rows, heatmaps):
                results[row].heatmap = _heatmap_at_original(heatmap, pixels[row].shape, results[row].crop_box)
                results[row].heatmap_class = class_name

    def export(self, folder, format="onnx", overwrite=False):
        """Write this pipeline's graphs as ONNX, LiteRT or a TensorFlow SavedModel (see `export_pipeline`).

        An ONNX or LiteRT export runs without Keras: `keras_covidcxr.runtime.ExportedPipeline(folder)`.
        """
        from keras_covidcxr.models.pipeline.export import export_pipeline

        return export_pipeline(self, folder, format=format, overwrite=overwrite)

    # === Presets ===

    @classmethod
    def from_preset(cls, handle):
        """Load a pipeline from a preset folder, a registered name or hf://owner/repo[@revision].

        Every file is checked against the checksums in metadata.json, only
        keras_covidcxr classes are built, and weights must match exactly. A
        registered name whose trained weights are not published yet raises a
        `PresetError` saying how to train them (`covidcxr presets` lists which).
        A preset that records no training loads with an `UntrainedPresetWarning`.

        Example:
            >>> import keras_covidcxr
            >>> pipeline = Pipeline.from_preset(keras_covidcxr.DEFAULT_PRESET)  # doctest: +SKIP
        """
        folder = resolve_preset(handle)
        config, metadata = preset_format.read_verified_config(folder)
        try:
            segmenter = _read_component(folder, metadata, config["segmenter"])
            members = [_read_component(folder, metadata, path) for path in config["members"]]
            ensemble_spec = config["ensemble"]
            ensemble_cls = ENSEMBLE_CLASSES.get(ensemble_spec["class_name"])
            if ensemble_cls is None:
                raise PresetError(
                    f"{folder / 'config.json'}: unknown ensemble class {ensemble_spec['class_name']!r}"
                )
            pipeline = cls(
                segmenter,
                ensemble_cls(members, **ensemble_spec["config"]),
                class_names=config["class_names"],
                metadata={**metadata, "loaded_from": str(handle)},
                **settings_from_config(config, lambda entry: _read_ood(folder, metadata, entry)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise PresetError(f"{folder / 'config.json'}: invalid pipeline config ({error!r})") from error
        except ConfigError as error:
            raise PresetError(f"{folder / 'config.json'}: {error}") from error
        pipeline.preset_folder = Path(folder)
        if not pipeline.is_trained:
            warnings.warn(
                f"{handle}: this preset records no training (untrained weights); its outputs mean nothing",
                UntrainedPresetWarning,
                stacklevel=2,
            )
        return pipeline

    def get_config(self):
        """The preset's config.json: the pipeline graph without weights.

        A threshold given with `with_decision_threshold` becomes a weighted average's own (on the raw
        scale, as it stores it), and the refer rule keeps only its film checks, as the pipeline decides now
        (`save_to_preset` and `export` refuse a threshold that the ensemble cannot store).
        """
        ensemble_config = self.ensemble.get_config()
        del ensemble_config["members"]
        refer_rule = self.refer_rule
        if self.decision_threshold is not None and "threshold" in ensemble_config:
            threshold = self.decision_threshold
            ensemble_config["threshold"] = float(self.calibration.invert_positive(threshold)
                                                 if self.calibration is not None else threshold)
            refer_rule = refer_rule and refer_rule.without_band()
        config = {
            "format_version": preset_format.FORMAT_VERSION,
            "class_names": list(self.class_names),
            "segmenter": "segmenter",
            "members": [f"members/{name}" for name in self.ensemble.member_names],
            "ensemble": {"class_name": type(self.ensemble).__name__, "config": ensemble_config},
            "preprocessing": self.preprocessing.to_dict(),
            "input_contract": self.input_contract.to_dict(),
        }
        if self.calibration is not None:
            config["calibration"] = self.calibration.to_dict()
        if refer_rule is not None:
            config["refer_rule"] = refer_rule.to_dict()
        if self.out_of_distribution is not None:
            config["out_of_distribution"] = self.out_of_distribution.to_config()
        return config

    def _training_record(self, training):
        """`training`, saying so when a threshold was set after it (its figures are the earlier rule's)."""
        if self.decision_threshold is None or not training:
            return training
        earlier = decision_rule_of(self.ensemble, self.class_names, None, self.calibration, self.refer_rule)
        return {**training, "threshold_set_after_training": {
            "rule": self.decision_rule.describe(), "replaces": earlier.describe(),
            "note": "set with with_decision_threshold; the figures of this record were measured at the rule it "
                    "replaces"}}

    def check_storable(self):
        """Refuse (ConfigError) to save or export a pipeline whose decision its config cannot hold: a threshold
        given with `with_decision_threshold` to an ensemble that stores none (a majority vote)."""
        if self.decision_threshold is not None and "threshold" not in self.ensemble.get_config():
            raise ConfigError(f"a {type(self.ensemble).__name__} stores no threshold: save or export this pipeline "
                              "without with_decision_threshold, and give the threshold when predicting")

    def save_to_preset(self, folder, training=None, description=None, overwrite=False):
        """Write this pipeline as a preset folder, atomically.

        `training` is the provenance (data, recipe, metrics) stored in
        metadata.json; it defaults to the loaded preset's. metadata.json also
        records the outputs on the bundled sample images, which
        `covidcxr verify` re-checks. An existing folder is replaced only if it
        is an empty folder, or a preset and `overwrite=True`.
        """
        if not isinstance(folder, (str, os.PathLike)) or not str(folder):
            raise PresetError(f"save_to_preset needs a folder path (a str or Path), got {folder!r}")
        self.check_storable()
        config = self.get_config()
        components = {"segmenter": self.segmenter, **dict(zip(config["members"], self.ensemble.members))}
        metadata = {
            "format_version": preset_format.FORMAT_VERSION,
            "description": description or self.metadata.get("description"),
            "package_version": __version__,
            "keras_version": keras.__version__,
            "backend": keras.backend.backend(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "parameter_counts": {path: int(model.count_params()) for path, model in components.items()},
            "training": self._training_record(training if training is not None else self.metadata.get("training")),
            "golden_outputs": golden_outputs(self),
        }

        try:
            with atomic_directory(folder, replace_if=lambda path: replaceable_preset_folder(path, overwrite)) as tmp:
                preset_format.write_json(tmp / preset_format.CONFIG_FILE, config)
                for path, model in components.items():
                    (tmp / path).mkdir(parents=True)
                    component_io.write_component(model, tmp / path)
                if self.out_of_distribution is not None:
                    self.out_of_distribution.save_features(tmp)
                preset_format.finish_metadata(tmp, metadata)
        except OutputExistsError as error:
            raise PresetError(
                f"{folder}: exists and is not an empty folder"
                + ("" if overwrite else " (pass overwrite=True, --overwrite, to replace an older preset)")
            ) from error
        except OSError as error:  # still an OSError (disk full, permission), naming the preset, not its temporary
            if error.errno is None:
                raise
            raise OSError(error.errno, f"cannot write the preset there: {error.strerror}", str(folder)) from error
        return Path(folder)


def _read_component(folder, metadata, relative):
    for name in (component_io.CONFIG_FILE, component_io.WEIGHTS_FILE):
        preset_format.require_listed(folder, metadata, f"{relative}/{name}")
    return component_io.read_component(folder / relative)


def _read_ood(folder, metadata, entry):
    preset_format.require_listed(folder, metadata, entry.get("features", "out_of_distribution.npz"))
    return FeatureDistanceCheck.from_config(entry, folder)


def _heatmap_at_original(heatmap, shape, crop_box):
    if crop_box is None:
        return resize_image(heatmap, shape)
    x0, y0, x1, y1 = crop_box
    full = np.zeros(shape, "float32")
    full[y0:y1, x0:x1] = resize_image(heatmap, (y1 - y0, x1 - x0))
    return full


def _check_decoding_matches(contract):
    """The contract's channels and value range must be what the loader gives the models: gray in [0, 1]."""
    value_range = tuple(float(v) for v in contract.value_range)
    if contract.channels != 1 or value_range != (0.0, 1.0):
        raise ConfigError(
            f"the input contract asks for {contract.channels}-channel images in {list(value_range)}, "
            "but this package decodes every image to 1-channel gray in [0, 1]"
        )
