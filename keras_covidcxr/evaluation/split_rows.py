"""The rows `evaluate_pipeline` scores: a split's cls rows, or an error saying where the rows are.

Kept free of Keras, so the CLI refuses a wrong `--split` before the backend loads.

Example:
    >>> from keras_covidcxr.data.manifest import Manifest, ManifestRow
    >>> manifest = Manifest([ManifestRow("a.png", "cls", "p1", "covid", split="train")])
    >>> rows_to_score(manifest, "test")
    Traceback (most recent call last):
    ...
    keras_covidcxr.errors.ConfigError: the manifest has no cls rows in split 'test' (its cls rows: 1 in 'train')
"""

import collections

from keras_covidcxr.errors import ConfigError


def rows_to_score(manifest, split):
    """The cls rows of `split` in `manifest`; ConfigError naming the splits there are when it has none."""
    rows = manifest.filter(task="cls", split=split)
    if not rows:
        raise ConfigError(_no_rows_message(manifest, split))
    return rows


def _no_rows_message(manifest, split):
    counts = collections.Counter(row.split for row in manifest.filter(task="cls"))
    if not counts:
        return "the manifest has no cls rows (classification images) to score"
    have = ", ".join(f"{count} in {name!r}" if name else f"{count} without a split"
                     for name, count in sorted(counts.items(), key=lambda item: str(item[0] or "")))
    hint = ""
    if None in counts:
        hint = ("; give every row a split with `covidcxr data split` (`--fractions 0,0,1` puts every "
                "patient in test, for a set used only to evaluate)")
    return f"the manifest has no cls rows in split {split!r} (its cls rows: {have}){hint}"
