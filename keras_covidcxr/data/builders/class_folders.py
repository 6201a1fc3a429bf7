"""Build a classification manifest from a folder per class (`root/COVID/*.png`, `root/Normal/*.png`).

Split folders above the class folders (`root/train/COVID/...`, `root/test/...`) set the rows'
split. Such layouts rarely say who the patient is: by default every image is its own patient
(`<source>:<path below the root, without suffix>`), which the report says out loud; pass `patient_id_pattern` (a regex whose first group is the
patient) when file names carry it.

The COVID-19 Radiography Database keeps each class's films in `COVID/images/` and its lung masks
in `COVID/masks/` (same file names): a class folder with an `images` folder is read from there
only, `masks` folders are never read as images, and a mask of an image's name becomes the
row's `mask_path`.

Example:
    >>> manifest, report = from_class_folders("COVID-19_Radiography_Dataset")  # doctest: +SKIP
    >>> manifest, report = from_class_folders("data", patient_id_pattern=r"^(person\\d+)_")  # doctest: +SKIP
"""

import re

from keras_covidcxr.data.build_report import BuildReport, BuiltManifest
from keras_covidcxr.data.builders._files import find_images, relative_posix, require_folder, with_progress
from keras_covidcxr.data.manifest import DatasetError, Manifest, ManifestRow
from keras_covidcxr.data.vocabulary import normalize_label
from keras_covidcxr.errors import ConfigError

_SPLIT_FOLDERS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


def _class_folders(root, class_map):
    """(split, folder, label-or-None) for every class folder under `root`."""
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        split = _SPLIT_FOLDERS.get(folder.name.lower())
        if split is not None:
            for inner in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
                found.append((split, inner, _label_of(inner.name, class_map)))
        else:
            found.append((None, folder, _label_of(folder.name, class_map)))
    return found


def _subfolder(folder, name):
    """The folder inside `folder` called `name` in any case, or None."""
    return next((p for p in sorted(folder.iterdir()) if p.is_dir() and p.name.lower() == name), None)


def _images_with_masks(folder):
    """(image, mask or None) for each image of a class folder; `masks` folders hold no images."""
    images_folder = _subfolder(folder, "images") or folder
    masks_folder = _subfolder(folder, "masks")
    pairs = []
    for image in find_images(images_folder, skip_folders=("masks",)):
        mask = None if masks_folder is None else masks_folder / image.relative_to(images_folder)
        pairs.append((image, mask if mask is not None and mask.is_file() else None))
    return pairs


def _patient_id_regex(pattern):
    """The compiled `patient_id_pattern`; a `ConfigError` when it is not a regex with a group for the id."""
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise ConfigError(f"patient_id_pattern {pattern!r} is not a regular expression ({error})") from None
    if regex.groups < 1:
        raise ConfigError(f"patient_id_pattern {pattern!r} has no group: put the patient id in parentheses, "
                          r"e.g. '^(patient\d+)_'")
    return regex


def _label_of(name, class_map):
    if class_map is not None:
        return class_map.get(name)
    return normalize_label(name.replace("_", " "))


def from_class_folders(root, class_map=None, source=None, patient_id_pattern=None, progress=None):
    """Cls rows for the images under each class folder of `root`.

    Args:
        root: the folder holding one folder per class (optionally inside train/val/test folders).
        class_map: folder name -> label (e.g. `{"P": "covid", "N": "normal"}`); by default the
            folder name is read as a label ("COVID-19", "Normal", "Viral Pneumonia", ...).
            Folders that map to no label are dropped and reported.
        source: the `source` of every row (default: the root folder's name).
        patient_id_pattern: regex searched in the file name; its first group is the patient id.
        progress: optional `callable(done, total)` called after each image file.
    """
    root = require_folder(root, "dataset")
    source = source or root.name
    pattern = _patient_id_regex(patient_id_pattern) if patient_id_pattern else None
    report = BuildReport(f"class-folders ({source})")
    rows = []
    folders = _class_folders(root, class_map)
    if not folders:
        raise DatasetError(f"{root}: no class folders found")
    unmatched = sorted(set(class_map or ()) - {folder.name for _, folder, _ in folders})
    if unmatched:  # a misspelt folder would silently drop its class
        raise ConfigError(f"{root}: the class map names {unmatched}, which are not its class folders "
                          f"({', '.join(sorted({folder.name for _, folder, _ in folders}))})")
    found = [
        (split, folder, label, pair)
        for split, folder, label in folders
        for pair in _images_with_masks(folder)
    ]
    for split, folder, label, (image, mask) in with_progress(found, progress):
        relative = relative_posix(image, root)
        if label is None:
            report.drop(relative, f"folder {folder.name!r} is not a known class")
            continue
        # Each image its own patient: its path below the root, as train/COVID/0001.png and
        # test/Normal/0001.png are different films (a file stem would make them one patient).
        patient = relative.rsplit(".", 1)[0]
        if pattern is not None:
            match = pattern.search(image.name)
            if match is None or not match.group(1):
                report.drop(relative, "file name does not match patient_id_pattern" if match is None else
                            "patient_id_pattern's group is empty in this file name")
                continue
            patient = match.group(1)
        rows.append(
            ManifestRow(
                path=relative,
                task="cls",
                patient_id=f"{source}:{patient}",
                label=label,
                mask_path=None if mask is None else relative_posix(mask, root),
                source=source,
                split=split,
            )
        )
        report.keep(label, "cls")
    n_masks = sum(row.mask_path is not None for row in rows)
    if n_masks:
        report.note(
            f"{n_masks} images have a lung mask of the same name in a masks folder (set as mask_path)"
        )
    if pattern is None and rows:
        report.note("no patient ids in this layout: each image counts as its own patient")
    return BuiltManifest(Manifest(rows, root=root), report)
