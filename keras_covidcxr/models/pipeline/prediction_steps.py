"""The numpy steps of a prediction, around whichever engine runs the models (Keras or ONNX Runtime).

decode -> input contract -> segmenter -> lung-mask checks -> mask / crop -> classifier inputs ->
members and ensemble (optionally over test-time variants) -> calibration -> decision rule, refer rule,
out-of-distribution check -> `PipelineResult`s. `Pipeline` (Keras) and the light runtime's
`ExportedPipeline` (ONNX Runtime, no Keras import) share this class, so both give the same results
from the same code; each supplies only the model calls (`_segment`, `_run_ensemble`, `_combine`,
`_add_heatmaps`).
"""

import os

import numpy as np
from PIL import Image

from keras_covidcxr.errors import ConfigError, CovidCXRError, InputContractError, InputError
from keras_covidcxr.io.array_input import check_unit_range, pixels_from_array
from keras_covidcxr.io.image_loader import NUL_HINT, LoadedImage, load_image, load_pil_image
from keras_covidcxr.models.pipeline.calibration import ProbabilityCalibration
from keras_covidcxr.models.pipeline.pipeline_result import PipelineResult
from keras_covidcxr.models.pipeline.refer_rule import ReferRule, failed_input_checks
from keras_covidcxr.preprocessing.input_contract import InputContract
from keras_covidcxr.preprocessing.lung_masking import MaskPieces
from keras_covidcxr.preprocessing.model_inputs import (
    classifier_input,
    cleaned_lung_mask,
    lung_mask_at,
    segmenter_input,
)
from keras_covidcxr.preprocessing.preprocessing_config import PreprocessingConfig
from keras_covidcxr.preprocessing.test_time_augmentation import check_tta, test_time_variants
from keras_covidcxr.settings import is_flag, is_whole_number


class PredictionSteps:
    """Base of `Pipeline` and `ExportedPipeline`: `predict` and its numpy steps.

    A subclass sets `class_names`, `member_names`, `vote_thresholds`, `preprocessing`, `input_contract`,
    `decision_rule`, `decision_threshold`, `calibration`, `refer_rule`, `out_of_distribution`,
    `segmenter_size`, `classifier_size` and `classifier_channels` (the settings part of them
    from a preset's config.json with `settings_from_config`), and implements the model calls.
    """

    supports_explain = False  # whether `_add_heatmaps` exists (Grad-CAM needs the Keras pipeline)

    # === Model calls, supplied by the engine ===

    def _segment(self, batch, batch_size):
        """(n, S, S) lung probabilities of a (n, S, S, 1) segmenter batch."""
        raise NotImplementedError

    def _run_ensemble(self, batch, batch_size):
        """The ensemble's outputs as numpy: probabilities, label, member_probabilities, member_labels,
        and with an out-of-distribution check "features": its member's pooled features (`EnsembleWithFeatures`)."""
        raise NotImplementedError

    def _combine(self, member_probabilities):
        """The ensemble's outputs (numpy) from (n, members, classes) member probabilities."""
        raise NotImplementedError

    def _add_heatmaps(self, results, pixels, classifier_batch, explain):
        """Set `heatmap` and `heatmap_class` of each result (`explain`: True or a class name)."""
        raise NotImplementedError

    # === Prediction ===

    def predict(self, images, batch_size=8, on_error="raise", explain=False, strict=False, tta=1):
        """Run the pipeline on images; return one `PipelineResult` per image, in order.

        Args:
            images: one image or a list of them: paths (PNG, JPEG, DICOM,
                ...), `LoadedImage`s (already decoded by `load_image`), PIL
                images and/or arrays (gray (H, W), gray and alpha (H, W, 2) or
                colour (H, W, 3|4); uint8, uint16 or float in [0, 1]; backend
                tensors are read as arrays). A 4-D array (N, H, W, C) is a
                batch of N images.
            batch_size: images per model call (results depend on it only by
                float rounding, about 1e-7).
            on_error: "raise" stops at the first bad image with its
                `CovidCXRError`; "record" puts the reason in `result.error`
                and carries on.
            explain: True adds `result.heatmap`, the Grad-CAM of the predicted
                class; a class name (or its index in `class_names`) gives that
                class's heatmap instead.
            strict: refuse images the input contract only flags (lateral
                views, children). With the contract's
                `check_view_from_mask`, images without a stated view whose
                lung mask looks lateral are flagged too (refused when strict).
            tta: test-time augmentation: the ensemble sees the image and
                `tta - 1` slightly shifted, zoomed and re-contrasted copies
                (`test_time_variants`; no flips) and averages the members'
                probabilities; `result.uncertainty["tta_spread"]` is the spread
                of p over the copies. 1 (the default) is plain prediction.
        """
        tta = check_tta(tta)
        if on_error not in ("raise", "record"):
            raise ConfigError(f"on_error must be 'raise' or 'record', got {on_error!r}")
        if not is_whole_number(batch_size) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        batch_size = int(batch_size)
        if not is_flag(strict):
            raise ConfigError(f"strict must be True or False, got {strict!r}")
        explain = self._explain_target(explain)
        images = _image_list(images)
        results = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            results.extend(self._predict_chunk(chunk, start, batch_size, on_error, explain, strict, tta))
        return results

    @property
    def _refer_rule_in_force(self):
        """The refer rule the decision rule applies: the preset's, without its band under a user's threshold,
        none with --no-refer; built once per decision rule, not per film."""
        rule = self.decision_rule
        if getattr(self, "_refer_rule_of", (None, None))[0] is not rule:
            self._refer_rule_of = (rule, ReferRule.from_dict(rule.refer) if rule.refer else None)
        return self._refer_rule_of[1]

    def _explain_target(self, explain):
        """False, True (the predicted class) or a class name, checked before any image is read."""
        if explain is None or explain is False:
            return False
        if explain is True:
            target = True
        elif isinstance(explain, str) and explain in self.class_names:
            target = explain
        elif is_whole_number(explain) and 0 <= explain < len(self.class_names):
            target = self.class_names[int(explain)]
        else:
            raise ConfigError(f"explain={explain!r}: give True (the predicted class), a class name or its index; "
                              f"classes are {list(self.class_names)}")
        if not self.supports_explain:
            raise ConfigError("explanations (Grad-CAM) need the Keras pipeline (Pipeline.from_preset)")
        return target

    def _predict_chunk(self, chunk, offset, batch_size, on_error, explain, strict, tta):
        results, pixels = [], []
        for index, image in enumerate(chunk, start=offset):
            source = _source_name(image, index)
            result, image_pixels = PipelineResult(source=source), None
            try:
                image_pixels = self._load(image, result, strict)
            except CovidCXRError as error:
                if on_error == "raise":
                    raise
                result.error = str(error)
            results.append(result)
            pixels.append(image_pixels)
        ok = [i for i, result in enumerate(results) if result.error is None]
        if not ok:
            return results

        segmenter_batch = np.stack([segmenter_input(pixels[i], self.segmenter_size) for i in ok])
        lung_probabilities = self._segment(segmenter_batch, batch_size)
        # the segmenter input is standardised: the film's negative is its input negated
        negatives = self._segment(-segmenter_batch, batch_size) if self.input_contract.check_inverted else None
        checked = []
        for row, (i, probabilities) in enumerate(zip(ok, lung_probabilities)):
            try:
                self._check_lung_mask(results[i], probabilities, strict)
                if negatives is not None:
                    self._apply_problems(results[i], self.input_contract.check_inversion(
                        probabilities, negatives[row], self.preprocessing.mask_threshold, strict=strict))
            except CovidCXRError as error:
                if on_error == "raise":
                    raise
                results[i].error = str(error)
                continue
            checked.append((i, probabilities))
        ok = [i for i, _ in checked]
        if not ok:
            return results
        classifier_batch = []
        for i, probabilities in checked:
            result = results[i]
            result.image = pixels[i]
            mask = MaskPieces.of(lung_mask_at(probabilities, pixels[i].shape, self.preprocessing.mask_threshold))
            mask, cleaning = cleaned_lung_mask(mask, self.preprocessing)
            result.mask = mask.mask
            result.warnings.extend(cleaning)
            model_input, result.crop_box, quality, warnings = classifier_input(
                pixels[i], mask, self.preprocessing, self.classifier_size, self.classifier_channels
            )
            result.lung_fraction, result.lung_components = quality.lung_fraction, quality.components
            result.warnings.extend(warnings)
            classifier_batch.append(model_input)
        classifier_batch = np.stack(classifier_batch)
        outputs = self._classify(classifier_batch, batch_size, tta)
        for row, i in enumerate(ok):
            self._fill_prediction(results[i], outputs, row, tta)
        if explain:
            self._add_heatmaps([results[i] for i in ok], [pixels[i] for i in ok], classifier_batch, explain)
        return results

    def _load(self, image, result, strict):
        """Decode one input and check it against the input contract; return its pixels."""
        if isinstance(image, np.ndarray):
            pixels = pixels_from_array(image, result.source)
        else:
            if isinstance(image, LoadedImage):
                loaded = _checked_loaded_image(image, result.source)
            elif isinstance(image, Image.Image):
                loaded = load_pil_image(image, result.source)
            elif isinstance(image, bytes) and b"\0" in image:
                raise InputError(f"{result.source}: bytes holding a NUL byte are not a file name (for an image "
                                 f"file's contents, pass {NUL_HINT})")
            elif isinstance(image, (str, bytes, os.PathLike)):
                if not os.fspath(image):  # "" would be read as the working folder
                    raise InputError(f"{result.source}: an empty file name")
                loaded = load_image(os.fsdecode(image))
            else:
                raise InputError(f"{result.source}: not an image: a {type(image).__name__}; {IMAGE_KINDS}"
                                 + (FILE_OBJECT_HINT if hasattr(image, "read") else ""))
            pixels, result.metadata = loaded.pixels, dict(loaded.metadata)
        self._apply_problems(result, self.input_contract.check(result.metadata, pixels.shape, strict=strict))
        return pixels

    @staticmethod
    def _apply_problems(result, problems):
        """Raise an `InputContractError` for the first refused problem; add the others as warnings."""
        for problem in problems:
            if problem.refused:
                raise InputContractError(f"{result.source}: {problem.message} (input contract)")
            result.warnings.append((problem.code, problem.message))

    def _check_lung_mask(self, result, probabilities, strict):
        """The contract's mask checks on the segmenter-resolution lung probabilities of one image."""
        lung_mask = probabilities >= self.preprocessing.mask_threshold
        problems = self.input_contract.check_lung_mask(result.metadata, lung_mask, strict=strict)
        self._apply_problems(result, problems)

    def _classify(self, classifier_batch, batch_size, tta):
        """The ensemble's outputs (numpy), averaged over `tta` variants, plus "calibrated",
        "tta_probabilities" (n, variants, classes; calibrated) and "ood_distance" when used."""
        variants = [classifier_batch] if tta == 1 else test_time_variants(classifier_batch, tta)
        passes = [self._run_ensemble(variant, batch_size) for variant in variants]
        features = passes[0].pop("features", None)  # of the image itself, not of a variant
        if tta == 1:
            outputs = passes[0]
        else:
            outputs = self._combine(np.mean([p["member_probabilities"] for p in passes], axis=0).astype("float32"))
            outputs["tta_probabilities"] = np.stack([self._calibrated(p["probabilities"]) for p in passes], axis=1)
        outputs["calibrated"] = self._calibrated(outputs["probabilities"])
        if self.out_of_distribution is not None:
            outputs["ood_distance"] = self.out_of_distribution.distances(features)
        return outputs

    def _calibrated(self, probabilities):
        probabilities = np.asarray(probabilities, "float64")
        return probabilities if self.calibration is None else self.calibration.apply(probabilities)

    def _fill_prediction(self, result, outputs, row, tta):
        names = self.class_names
        calibrated = outputs["calibrated"][row]
        result.probabilities = _named(names, calibrated)
        result.raw_probabilities = _named(names, outputs["probabilities"][row])
        if self.decision_threshold is None:
            result.label = names[int(outputs["label"][row])]
        else:
            result.label = names[self.decision_rule.label_index(calibrated)]
        result.decision = self.decision_rule.to_dict()
        member_probabilities = outputs["member_probabilities"][row]
        member_votes = outputs["member_labels"][row]
        result.members = {
            member: {"probabilities": _named(names, probabilities), "label": names[int(vote)]}
            for member, probabilities, vote in zip(self.member_names, member_probabilities, member_votes)
        }
        if len(names) == 2:
            result.vote_thresholds = {member: float(t) for member, t in zip(self.member_names, self.vote_thresholds)}
        # the spread of p(positive) for two classes, else of the probability of the ensemble's class
        column = 1 if len(names) == 2 else names.index(result.label)
        result.uncertainty = {
            "member_spread": float(np.std(member_probabilities[:, column])),
            "members_disagree": len(set(int(v) for v in member_votes)) > 1,
            "tta": tta,
            "tta_spread": float(np.std(outputs["tta_probabilities"][row, :, column])) if tta > 1 else None,
        }
        flagged = None
        if "ood_distance" in outputs:
            distance = float(outputs["ood_distance"][row])
            check = self.out_of_distribution
            flagged = distance > check.threshold
            result.out_of_distribution = {"distance": distance, "threshold": check.threshold, "flagged": flagged}
        refer = self._refer_rule_in_force
        reasons = refer.reasons(calibrated[1] if len(names) == 2 else None, result.uncertainty["member_spread"],
                                flagged, failed_input_checks(result.warnings), names[1]) if refer else {}
        if reasons:
            result.would_be_label, result.label = result.label, "refer"
            result.refer_reasons = reasons
            result.warnings.append(("refer", f"referred: {'; '.join(reasons.values())}; would be "
                                    f"{result.would_be_label}: have a person read this film"))
        if flagged:
            result.warnings.append(("out_of_distribution", f"unlike the training films (feature distance "
                                    f"{distance:.3f} > {check.threshold:.3f}): is this a frontal chest X-ray? "
                                    + ("It is referred, not answered" if reasons else
                                       "Treat the answer with caution")))


def settings_from_config(config, read_out_of_distribution):
    """The numpy-side settings of a preset's config.json, as keyword arguments of `Pipeline`.

    `read_out_of_distribution(entry)` reads the out-of-distribution check's features (from the
    preset or export folder).
    """
    def optional(key, read):
        return read(config[key]) if config.get(key) is not None else None

    return {
        "preprocessing": PreprocessingConfig.from_dict(config["preprocessing"]),
        "input_contract": InputContract.from_dict(config["input_contract"]),
        "calibration": optional("calibration", ProbabilityCalibration.from_dict),
        "refer_rule": optional("refer_rule", ReferRule.from_dict),
        "out_of_distribution": optional("out_of_distribution", read_out_of_distribution),
    }


IMAGE_KINDS = "give a path, an array, a LoadedImage or a PIL image"
FILE_OBJECT_HINT = " (for an open file, give its path or PIL.Image.open(file))"
_SINGLE_IMAGES = (str, bytes, os.PathLike, np.ndarray, LoadedImage, Image.Image)


def _image_list(images):
    """`predict`'s `images` as a list of single images: one image becomes a list of one, a 4-D array the list of
    its images, a 1-D array of file names (or a pandas column) the list of them; backend tensors (TensorFlow,
    JAX, PyTorch on the CPU) become arrays."""
    def as_array(image):
        is_tensor = hasattr(image, "__array__") and not isinstance(image, _SINGLE_IMAGES)
        return np.asarray(image) if is_tensor else image

    images = as_array(images)
    if isinstance(images, np.ndarray) and images.dtype.kind in "US":
        if images.ndim == 0:
            return [images.item()]  # one file name
        if images.ndim != 1:  # e.g. df[["file"]].values, (n, 1)
            raise ConfigError(f"images: file names as a 1-D list or array, got an array of shape {images.shape} "
                              "(flatten it, e.g. df['file'].tolist())")
        return images.tolist()  # file names in an array
    if isinstance(images, np.ndarray) and images.ndim == 1 and images.dtype.kind == "O":
        return images.tolist()  # a pandas column of file names (or of images)
    if isinstance(images, _SINGLE_IMAGES) and not (isinstance(images, np.ndarray) and images.ndim == 4):
        return [images]
    if images is None or isinstance(images, dict) or hasattr(images, "read") or not hasattr(images, "__iter__"):
        raise ConfigError(f"images: {IMAGE_KINDS}, or a list of them; got "
                          + ("None" if images is None else f"a {type(images).__name__}")
                          + (FILE_OBJECT_HINT if hasattr(images, "read") else ""))
    return [as_array(image) for image in images]


def _checked_loaded_image(image, name):
    """A `LoadedImage` made by hand must hold what `load_image` gives: float (H, W) pixels in [0, 1]."""
    pixels = np.asarray(image.pixels)
    if pixels.ndim != 2 or pixels.dtype.kind != "f":
        raise InputError(f"{name}: a LoadedImage holds float (height, width) pixels in [0, 1], as load_image gives; "
                         f"got {pixels.dtype} {pixels.shape} (pass an array instead: it is converted)")
    check_unit_range(pixels, name)
    return image


def _source_name(image, index):
    if isinstance(image, np.ndarray):
        return f"array[{index}]"
    if isinstance(image, LoadedImage):
        return str(image.metadata.get("path") or f"image[{index}]")
    if isinstance(image, bytes) and b"\0" in image:
        return f"bytes[{index}]"  # an image file's contents, not its name
    if isinstance(image, (str, bytes, os.PathLike)):
        return os.fsdecode(image) or f"image[{index}]"
    return getattr(image, "filename", None) or f"image[{index}]"  # a PIL image read from a file names it


def _named(class_names, probabilities):
    return {name: float(p) for name, p in zip(class_names, probabilities)}
