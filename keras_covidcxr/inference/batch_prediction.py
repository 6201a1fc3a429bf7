"""Predict folders of chest X-rays into a results file: streaming, resumable, in bounded memory.

Example:
    >>> from keras_covidcxr import Pipeline, predict_to_file
    >>> pipeline = Pipeline.from_preset("./my_preset")  # doctest: +SKIP
    >>> summary = predict_to_file(pipeline, ["scans/"], "results.csv")  # doctest: +SKIP
    >>> summary.done, summary.failed, summary.skipped  # doctest: +SKIP
    >>> # killed half-way? the same call again predicts only what is missing
"""

import collections
import concurrent.futures
import dataclasses
import hashlib
import itertools
import json
import os
from pathlib import Path

import numpy as np

from keras_covidcxr.errors import ConfigError, CovidCXRError, ImageDecodeError, InputError
from keras_covidcxr.inference.image_walk import find_images
from keras_covidcxr.inference.results_file import ResultsFile
from keras_covidcxr.io.image_loader import check_regular_file, load_image
from keras_covidcxr.io.overlay_files import fitting_stem
from keras_covidcxr.models.pipeline.decision_rule import decision_rule_from_config
from keras_covidcxr.models.pipeline.pipeline_result import PipelineResult
from keras_covidcxr.preprocessing.test_time_augmentation import check_tta
from keras_covidcxr.presets.checksums import sha256_of_file
from keras_covidcxr.presets.preset_format import read_preset_metadata
from keras_covidcxr.version import __version__

# Decoded pixels at which a batch is predicted before it is full: 8 films of 2000 px, 2 of 4000 px.
BATCH_PIXELS = 32_000_000


@dataclasses.dataclass
class PredictionSummary:
    """What a `predict_to_file` run did.

    Attributes:
        total: image files found in the inputs.
        done: files predicted by this run.
        failed: files that got an error row in this run.
        skipped: files already in the results file with the same content.
        skipped_failed: of the skipped files, those whose row is an error.
        errors: the error of each file that failed in this run (its row's `error`; left out of
            comparisons and repr).
    """

    total: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    skipped_failed: int = 0
    errors: list = dataclasses.field(default_factory=list, compare=False, repr=False)

    @property
    def all_ok(self):
        """True when no file found has an error row (new or earlier)."""
        return self.failed == 0 and self.skipped_failed == 0


@dataclasses.dataclass
class _ReadFile:
    """One file after a reader thread: decoded (`image`), failed (`error`) or already done (`earlier`)."""

    source: str
    sha256: str = None
    image: object = None
    error: str = None
    earlier: str = None


def predict_to_file(
    pipeline, inputs, out, batch_size=8, workers=2, strict=False, retry_failed=False, progress=None, overlays=None,
    tta=1,
):
    """Predict every image file under `inputs` into the results file `out`, resuming an earlier run.

    Reader threads hash and decode the next files while the model runs on the
    current batch; at most `2 * batch_size + workers` decoded images are alive
    at a time (a batch is predicted before it is full once it holds
    `BATCH_PIXELS` decoded pixels: two 4000 px films), and each batch's rows
    are written to disk (one write, fsync) before the next batch is
    predicted, so memory does not grow with the number of files and a kill
    loses at most the batch being predicted.

    Each file is predicted once per content: a file whose path and sha256
    already have a row in `out` is skipped; a changed file is predicted again
    and its new row replaces the old one. A file that cannot be read, decoded
    or is refused by the input contract gets a row with its `error`, and the
    run goes on. See `ResultsFile` for the file's layout.

    Args:
        pipeline: a `Pipeline`.
        inputs: files and folders (walked as `find_images` says).
        out: a .csv or .jsonl path (and its .meta.json sidecar). An existing
            file must come from an earlier run with the same model, class
            names, decision rule (`pipeline.decision_rule`), `strict` and
            `pipeline.input_contract.check_view_from_mask` (see
            `Pipeline.with_input_contract`); anything else is refused and
            left untouched.
        batch_size: images per model call.
        workers: reader threads.
        strict: refuse images the input contract only flags (lateral views,
            children; with `check_view_from_mask`, lateral-looking lung masks).
        retry_failed: predict again files whose earlier row is an error (e.g.
            after installing the `dicom` extra).
        progress: optional `callable(summary)`, called once the files are
            found and after each batch.
        overlays: a folder for each predicted file's `<stem>_<sha256[:8]>_mask.png`
            and `..._gradcam.png` (see `save_overlays`); the hash keeps files
            of the same name in different folders apart. A file already done
            whose overlays are missing is predicted again.
        tta: test-time augmentation views per image (see `Pipeline.predict`);
            recorded in the results file, and a resume must use the same.

    Returns:
        A `PredictionSummary`.

    Raises:
        InputError: the inputs hold no image file.
        ConfigError: invalid arguments, or `out` is not an earlier run of the same model.
    """
    for name, value in (("batch_size", batch_size), ("workers", workers)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive int, got {value!r}")
    tta = check_tta(tta)
    paths = find_images(inputs)
    if not paths:
        named = [inputs] if isinstance(inputs, (str, os.PathLike)) else inputs
        raise InputError(f"no image files in {', '.join(str(path) for path in named)}")
    summary = PredictionSummary(total=len(paths))
    results = results_file_for(pipeline, out, strict, tta)
    pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="covidcxr-reader")
    try:
        if progress:
            progress(summary)
        remaining, pending, batch = iter(paths), collections.deque(), []

        def read_ahead():
            for path in itertools.islice(remaining, batch_size + workers - len(pending)):
                pending.append(pool.submit(_read_file, path, results, retry_failed, overlays))

        read_ahead()
        while pending:
            batch.append(pending.popleft().result())
            read_ahead()
            decoded = [item.image.pixels.size for item in batch if item.image is not None]
            # a batch also closes on many skipped/failed files, so progress keeps moving on resume, and on many
            # pixels, so that a folder of large films does not hold a batch of them (with masks, heatmaps) at once
            if (len(decoded) == batch_size or sum(decoded) >= BATCH_PIXELS or len(batch) >= 4 * batch_size
                    or not pending):
                results.append(_predict_rows(pipeline, batch, batch_size, strict, summary, overlays, tta))
                batch = []
                if progress:
                    progress(summary)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        results.close()
    return summary


def results_file_for(pipeline, out, strict=False, tta=1):
    """The `ResultsFile` that `predict_to_file(pipeline, ..., out, strict=strict, tta=tta)` writes into."""
    about = {"preset": pipeline.metadata.get("loaded_from"), "package_version": __version__}
    return ResultsFile(
        out, pipeline.class_names, model_sha256(pipeline), strict=strict, untrained=not pipeline.is_trained,
        check_view=pipeline.input_contract.check_view_from_mask, decision=pipeline.decision_rule.to_dict(),
        tta=tta, about={key: value for key, value in about.items() if value is not None},
    )


def model_sha256(pipeline):
    """A fingerprint of the pipeline's model, recorded in (and checked against) the results file.

    For a pipeline loaded from a preset: the hash of the preset's file
    checksums (config and weights, so a retrained preset in the same folder
    differs). Otherwise: the hash of its config and every weight.
    """
    files = pipeline.metadata.get("files")
    if files:
        return _preset_sha256(files)
    if "export" in pipeline.metadata:  # an `ExportedPipeline`: the fingerprint of the preset it came from
        return pipeline.metadata["export"]["preset_sha256"]
    digest = hashlib.sha256()
    digest.update(json.dumps(pipeline.get_config(), sort_keys=True).encode())
    for model in (pipeline.segmenter, *pipeline.ensemble.members):
        for weight in model.weights:
            digest.update(np.ascontiguousarray(np.asarray(weight)).tobytes())
    return digest.hexdigest()


def finished_run(preset, inputs, out, strict=False, retry_failed=False, decision_threshold=None, check_view=False,
                 overlays=None, tta=1, refer=True):
    """The summary of a rerun that has nothing left to do, found without loading the model; else None.

    `out` must come from an earlier `predict_to_file` of the same preset and
    settings (anything else raises the `ConfigError` that run would raise),
    and hold a row for the current content of every image file under
    `inputs` (and, with `overlays`, its overlays there). A file whose row
    is an error counts as done unless `retry_failed`. The first file still
    to do ends the check.

    Example:
        >>> finished_run("covidcxr_lite", ["scans/"], "results.csv")  # doctest: +SKIP
        PredictionSummary(total=1200, done=0, failed=0, skipped=1200, skipped_failed=3)
    """
    if not (os.path.isfile(out) and os.path.getsize(out)):
        return None  # a file that is not ours (no sidecar) is refused below, before the model loads
    paths = find_images(inputs)
    if not paths:
        return None
    metadata = read_preset_metadata(preset)
    config = metadata["config"]
    check_view = check_view or bool(config["input_contract"].get("check_view_from_mask"))
    decision = decision_rule_from_config(config, decision_threshold, refer=refer).to_dict()
    summary = PredictionSummary(total=len(paths), skipped=len(paths))
    with ResultsFile(out, config["class_names"], _preset_sha256(metadata["files"]), strict=strict,
                     check_view=check_view, decision=decision, tta=tta, read_only=True,
                     about={"package_version": __version__}) as results:
        for path in paths:
            source = os.path.abspath(path)
            try:
                check_regular_file(source)
                earlier = _earlier_row(results, source, sha256_of_file(source), overlays)
            except (OSError, ImageDecodeError):  # still unreadable (missing, a pipe): done if its error row says so
                earlier = results.earlier_row(source, None)
            if earlier is None or (earlier == "failed" and retry_failed):
                return None
            summary.skipped_failed += earlier == "failed"
    return summary


def _preset_sha256(files):
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def overlay_stem(source, sha256):
    """The file-name stem of a folder run's overlays of `source`: its stem and the start of its hash (cut to fit
    the file system's name limit, as `save_overlays` cuts it)."""
    return fitting_stem(f"{Path(source).stem}_{sha256[:8]}")


def _earlier_row(results, source, sha256, overlays):
    """`results.earlier_row`, except that a done file whose overlays are missing counts as not done."""
    earlier = results.earlier_row(source, sha256)
    if earlier == "ok" and overlays is not None:
        return "ok" if (Path(overlays) / f"{overlay_stem(source, sha256)}_mask.png").is_file() else None
    return earlier


def _read_file(path, results, retry_failed, overlays=None):
    """Runs in a reader thread: hash the file, skip it if done, else decode it."""
    source = os.path.abspath(path)
    try:
        check_regular_file(source)
        sha256 = sha256_of_file(source)
    except (OSError, ImageDecodeError) as error:  # missing, a pipe: an error row, or none if an earlier run left one
        if results.earlier_row(source, None) == "failed" and not retry_failed:
            return _ReadFile(source, earlier="failed")
        if isinstance(error, ImageDecodeError):
            return _ReadFile(source, error=str(error))
        if isinstance(error, FileNotFoundError):
            return _ReadFile(source, error=f"{source}: no such file")
        return _ReadFile(source, error=f"{source}: cannot read the file ({error.strerror or error})")
    earlier = _earlier_row(results, source, sha256, overlays)
    if earlier == "ok" or (earlier == "failed" and not retry_failed):
        return _ReadFile(source, sha256, earlier=earlier)
    try:
        # hashed before decoding: if the file changes in between, its row's hash is stale and it is redone
        return _ReadFile(source, sha256, image=load_image(source))
    except CovidCXRError as error:
        return _ReadFile(source, sha256, error=str(error))


def _predict_rows(pipeline, batch, batch_size, strict, summary, overlays=None, tta=1):
    """The rows of one batch, in input order; updates `summary` and writes the overlays."""
    images = [item.image for item in batch if item.image is not None]
    explain = overlays is not None
    predictions = iter(pipeline.predict(images, batch_size=batch_size, on_error="record", strict=strict,
                                        explain=explain, tta=tta))
    rows = []
    for item in batch:
        if item.earlier is not None:
            summary.skipped += 1
            summary.skipped_failed += item.earlier == "failed"
            continue
        result = (
            next(predictions) if item.image is not None else PipelineResult(item.source, error=item.error)
        )
        if explain and result.error is None:
            result = _with_overlays(result, overlays, item.source, item.sha256)
        rows.append({"source": item.source, "sha256": item.sha256, **result.to_dict()})
        summary.failed += result.error is not None
        summary.done += result.error is None
        if result.error is not None:
            summary.errors.append(result.error)
    return rows


def _with_overlays(result, folder, source, sha256):
    """`result` once its overlays (`overlay_stem`) are written, or an error result saying why they could not be.

    A film whose overlays fail (a user's file in the way, a full disk) is a failed row, so
    `--retry-failed` redoes it; the rest of the batch carries on.
    """
    from keras_covidcxr.io.overlays import save_overlays  # matplotlib, only when asked for

    try:
        save_overlays(result, folder, overlay_stem(source, sha256), film_sha256=sha256)
    except CovidCXRError as error:
        return PipelineResult(result.source, error=f"{result.source}: overlays not written ({error})")
    return result
