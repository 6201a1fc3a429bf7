"""Training batches from manifests: `keras.utils.PyDataset`s that work under every backend.

- `SegmentationDataset`: (image, mask) pairs of a manifest's seg rows, decoded by the PyDataset's
  worker threads on first use, cached in memory as model-ready arrays, augmented on the fly
  (image and mask with one transform).
- `masked_classifier_inputs` + `ClassificationDataset`: the classifiers' inputs are the images
  masked by the segmenter through `preprocessing.model_inputs` - the same three calls
  (`segmenter_input`, `lung_mask_at`, `classifier_input`) the `Pipeline` makes at inference - so
  training cannot drift from inference. They are computed once (decoding in parallel threads, the
  segmenter in batches) and cached as gray arrays; batches are augmented on the fly.

Training sets are built with `drop_remainder=True`: every step sees a full batch, so a compiled
step (XLA, JAX) never retraces for a short last batch, and every epoch (reshuffled) drops
different images. (TensorFlow's oneDNN CPU kernels can corrupt memory while training, whatever the batch
size: a 64 px ResUnet with filters 4,8,16 at batch 4 dies here; `TF_ENABLE_ONEDNN_OPTS=0`, set before
TensorFlow loads, avoids it, and the `covidcxr train` and `finetune` commands set it unless you did.)

Augmented batches are re-standardised per image (mean 0, std 1, as the inputs are at inference),
because filling uncovered pixels shifts the statistics. Un-augmented batches are exactly the
inference inputs. Batch order depends only on (seed, epoch), so a resumed run replays it.

Neither class needs TensorFlow; where it is installed, nothing changes.
"""

import concurrent.futures
import math

import keras
import numpy as np

from keras_covidcxr.data.manifest import DatasetError
from keras_covidcxr.io.image_loader import load_image
from keras_covidcxr.preprocessing.lung_masking import MaskPieces
from keras_covidcxr.preprocessing.model_inputs import (
    classifier_input,
    cleaned_lung_mask,
    lung_mask_at,
    segmenter_input,
)
from keras_covidcxr.preprocessing.preprocessing_config import PreprocessingConfig
from keras_covidcxr.preprocessing.resize import resize_image
from keras_covidcxr.preprocessing.standardize import standardize


class _ShuffledBatches(keras.utils.PyDataset):
    """Batches over `n` items whose order is a function of (seed, epoch)."""

    def __init__(self, n, batch_size, shuffle, seed, workers, drop_remainder=False):
        super().__init__(workers=workers, use_multiprocessing=False)
        if n == 0:
            raise DatasetError("no rows to train or validate on")
        self.n = n
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_remainder = drop_remainder
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch):
        """Use epoch `epoch`'s order (called when a run resumes part-way)."""
        self.epoch = int(epoch)
        if self.shuffle:
            self._order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        else:
            self._order = np.arange(self.n)

    def on_epoch_end(self):
        self.set_epoch(self.epoch + 1)

    def __len__(self):
        if self.drop_remainder:
            return max(1, self.n // self.batch_size)
        return math.ceil(self.n / self.batch_size)

    def batch_indices(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        return self._order[index * self.batch_size : (index + 1) * self.batch_size]


def _restandardize(images):
    """Per-image standardisation of a (batch, H, W, 1) array (as `standardize` does one image)."""
    return np.stack([standardize(image[..., 0])[..., None] for image in images])


class SegmentationDataset(_ShuffledBatches):
    """(images (B, S, S, 1), masks (B, S, S, 1) in {0, 1}) batches of a manifest's seg rows.

    Images go through `segmenter_input` (resize to S x S, standardise); masks, of their image's size,
    are resized bilinearly and thresholded at 0.5.

    Args:
        manifest: a `Manifest`; only its seg rows are used (filter it by split first).
        input_size: the ResUnet's input side S.
        batch_size: pairs per batch.
        augmenter: an `Augmenter` (e.g. with `SEGMENTER_AUGMENTATION`) or None.
        shuffle: reshuffle every epoch.
        seed: shuffling seed.
        workers: decoding/augmenting threads.
        cache: keep every decoded pair in memory (S x S x 2 floats each).
        drop_remainder: leave out the last, incomplete batch (for training sets).

    Example:
        >>> from keras_covidcxr.data import read_manifest  # doctest: +SKIP
        >>> train = SegmentationDataset(read_manifest("m.csv").filter(split="train"), 256)  # doctest: +SKIP
    """

    def __init__(self, manifest, input_size, batch_size=32, augmenter=None, shuffle=False, seed=0,
                 workers=1, cache=True, drop_remainder=False):
        rows = [row for row in manifest if row.task == "seg"]
        self.images = [manifest.resolve(row) for row in rows]
        self.masks = [manifest.resolve_mask(row) for row in rows]
        self.input_size = int(input_size)
        self.augmenter = augmenter
        self.cache = {} if cache else None
        super().__init__(len(rows), batch_size, shuffle, seed, workers, drop_remainder)

    def pair(self, i):
        """The i-th (image, mask) pair at the model's input size, without augmentation."""
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        image_pixels = load_image(self.images[i]).pixels
        mask_pixels = load_image(self.masks[i]).pixels
        if mask_pixels.shape[:2] != image_pixels.shape[:2]:  # resized alone, it would not lie on its lungs
            (mh, mw), (ih, iw) = mask_pixels.shape[:2], image_pixels.shape[:2]
            raise DatasetError(f"{self.masks[i]}: mask {mw}x{mh} px, its image {self.images[i]} {iw}x{ih} px; "
                               "a mask must have its image's size (`covidcxr data audit` lists every such pair)")
        image = segmenter_input(image_pixels, self.input_size)
        mask = resize_image(mask_pixels, (self.input_size, self.input_size)) >= 0.5
        pair = image, mask[..., None].astype("float32")
        if self.cache is not None:
            self.cache[i] = pair
        return pair

    def arrays(self, workers=4):
        """Every pair, un-augmented, as two stacked arrays (decoded in parallel)."""
        with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
            pairs = list(pool.map(self.pair, range(self.n)))
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    def __getitem__(self, index):
        pairs = [self.pair(int(i)) for i in self.batch_indices(index)]
        images = np.stack([p[0] for p in pairs])
        masks = np.stack([p[1] for p in pairs])
        if self.augmenter is not None:
            images, masks = self.augmenter.augment_pairs(images, masks)
            images = _restandardize(images)
        return images, masks


def masked_classifier_inputs(manifest, segmenter, input_size, preprocessing=None, batch_size=32,
                             workers=4, progress=None):
    """Gray (N, S, S) float32 classifier inputs of a manifest's cls rows, masked by `segmenter`.

    Exactly the `Pipeline`'s path: `segmenter_input` -> segmenter -> `lung_mask_at` -> `cleaned_lung_mask` ->
    `classifier_input` (masking mode, mask checks and fallback from `preprocessing`), with the
    gray channel kept (the RGB input replicates it). Images are decoded in parallel threads and
    processed in chunks, so memory holds one chunk of full-size images at a time.

    Returns:
        (inputs, warnings) where `warnings` counts each warning code (e.g. "implausible_mask").

    Raises:
        CovidCXRError: an image cannot be decoded (the message names the file).
    """
    preprocessing = preprocessing or PreprocessingConfig()
    rows = [row for row in manifest if row.task == "cls"]
    paths = [manifest.resolve(row) for row in rows]
    inputs = np.zeros((len(rows), input_size, input_size), "float32")
    warnings = {}
    chunk = max(1, int(batch_size))
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        for start in range(0, len(paths), chunk):
            pixels = list(pool.map(lambda path: load_image(path).pixels, paths[start : start + chunk]))
            batch = np.stack([segmenter_input(p, segmenter.input_size) for p in pixels])
            count = len(batch)
            if count < chunk:  # pad to one traced shape
                batch = np.concatenate([batch, np.zeros((chunk - count, *batch.shape[1:]), "float32")])
            probabilities = np.asarray(keras.ops.convert_to_numpy(segmenter.predict_on_batch(batch)))
            for offset, (image, probs) in enumerate(zip(pixels, probabilities[:count, ..., 0])):
                mask = MaskPieces.of(lung_mask_at(probs, image.shape, preprocessing.mask_threshold))
                mask, cleaning = cleaned_lung_mask(mask, preprocessing)
                model_input, _, _, notes = classifier_input(image, mask, preprocessing, input_size)
                notes = [*cleaning, *notes]
                inputs[start + offset] = model_input[..., 0]
                for code, _ in notes:
                    warnings[code] = warnings.get(code, 0) + 1
            if progress is not None:
                progress(min(start + chunk, len(paths)), len(paths))
    return inputs, warnings


class ClassificationDataset(_ShuffledBatches):
    """(images (B, S, S, channels), targets[, sample weights]) batches of precomputed classifier inputs.

    Targets are float32 (B, 1) for two classes (sigmoid output) and int32 (B,) class indices
    otherwise (softmax output, sparse cross-entropy). With `class_weights` every batch carries
    per-sample weights `class_weights[label]` (the class-weighted loss; the same on every
    backend, independent of how `fit` handles `class_weight`).

    Args:
        inputs: gray (N, S, S) or RGB (N, S, S, 3) inputs, e.g. from
            `masked_classifier_inputs`.
        labels: (N,) class indices.
        num_classes: number of classes (2 -> sigmoid targets).
        batch_size, augmenter, shuffle, seed, workers: as for `SegmentationDataset`.
        class_weights: {class index: weight} or None.
        drop_remainder: leave out the last, incomplete batch (for training sets).
        channels: 3 (gray replicated) or 1, as the classifier's input.
        standardized: the inputs are per-image standardised (augmented images are then
            standardised again); False for gray [0, 1] inputs (`PreprocessingConfig.standardize`).
    """

    def __init__(self, inputs, labels, num_classes, batch_size=32, augmenter=None, shuffle=False,
                 class_weights=None, seed=0, workers=1, drop_remainder=False, channels=3, standardized=True):
        inputs = np.asarray(inputs, "float32")
        if inputs.ndim == 4:
            inputs = inputs[..., 0]
        labels = np.asarray(labels, np.int64).reshape(-1)
        if len(inputs) != len(labels):
            raise DatasetError(f"{len(inputs)} inputs but {len(labels)} labels")
        self.inputs = inputs
        self.labels = labels
        self.num_classes = int(num_classes)
        self.augmenter = augmenter
        self.class_weights = class_weights
        self.channels = int(channels)
        self.standardized = bool(standardized)
        super().__init__(len(labels), batch_size, shuffle, seed, workers, drop_remainder)

    def targets(self, labels):
        if self.num_classes == 2:
            return labels.astype("float32")[:, None]
        return labels.astype("int32")

    def images(self, indices, augment=False):
        x = self.inputs[indices][..., None]
        if augment and self.augmenter is not None:
            x = self.augmenter(x)
            x = _restandardize(x) if self.standardized else np.clip(x, 0.0, 1.0)
        return np.repeat(x, 3, axis=-1) if self.channels == 3 else x

    def __getitem__(self, index):
        indices = self.batch_indices(index)
        x = self.images(indices, augment=True)
        y = self.targets(self.labels[indices])
        if self.class_weights is None:
            return x, y
        weights = np.asarray([self.class_weights[int(c)] for c in self.labels[indices]], "float32")
        return x, y, weights

