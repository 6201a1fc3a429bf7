"""Test-time augmentation: the same classifier inputs, slightly shifted, zoomed and re-contrasted.

`test_time_variants(batch, count)` returns `count` versions of a batch of classifier inputs: the
batch itself first, then `count - 1` variants, each one small random affine change (shift up to
4% of the side, zoom 0.95-1.05) and contrast change (x0.9-1.1 around the image mean), the same
for every image of the batch and the same on every call (seeded), so results are reproducible and
do not depend on the batch size. No flips: a chest film is not left-right symmetric (the heart,
the side markers), and the members were not trained to be flip-invariant.

Example:
    >>> import numpy as np
    >>> batch = np.random.default_rng(0).random((2, 32, 32, 1)).astype("float32")
    >>> variants = test_time_variants(batch, 3)
    >>> len(variants), variants[0] is batch, variants[1].shape
    (3, True, (2, 32, 32, 1))
"""

import numpy as np

from keras_covidcxr.errors import ConfigError

MAX_SHIFT = 0.04  # of the image side
ZOOM_RANGE = (0.95, 1.05)
CONTRAST_RANGE = (0.9, 1.1)


def check_tta(count):
    """Refuse a TTA count that is not a whole number >= 1."""
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ConfigError(f"tta must be a whole number >= 1 (1 = no test-time augmentation), got {count!r}")
    return int(count)


def test_time_variants(batch, count, seed=0):
    """[batch, variant 1, ..., variant count-1] of a (n, H, W, C) batch of classifier inputs."""
    from scipy.ndimage import affine_transform

    count = check_tta(count)
    batch = np.asarray(batch)
    if batch.ndim != 4:
        raise ConfigError(f"test-time augmentation needs a (n, H, W, C) batch, got shape {batch.shape}")
    height, width = batch.shape[1:3]
    centre = np.array([(height - 1) / 2, (width - 1) / 2])
    variants = [batch]
    for index in range(1, count):
        rng = np.random.default_rng([seed, index])
        zoom = rng.uniform(*ZOOM_RANGE)
        shift = rng.uniform(-MAX_SHIFT, MAX_SHIFT, size=2) * np.array([height, width])
        contrast = rng.uniform(*CONTRAST_RANGE)
        # output pixel o reads input pixel centre + (o - centre) / zoom - shift
        matrix = np.eye(2) / zoom
        offset = centre - matrix @ centre - shift
        variant = np.empty_like(batch)
        for i in range(len(batch)):
            for channel in range(batch.shape[-1]):
                image = batch[i, :, :, channel]
                moved = affine_transform(image, matrix, offset=offset, order=1, mode="nearest")
                mean = image.mean()  # contrast around the mean, kept inside the image's own value range
                variant[i, :, :, channel] = np.clip(mean + contrast * (moved - mean), image.min(), image.max())
        variants.append(variant)
    return variants


test_time_variants.__test__ = False  # not a test: pytest collects `test_*` names users import
