"""Build a segmentation manifest from V7 Labs Darwin JSON lung annotations (v1 and v2 exports).

The V7 COVID-19 X-ray set (`v7labs/covid-19-xray-dataset`) ships one JSON per image with lung
polygons; lateral films and CT slices have tags but no lung polygons. Following the paper's
preprocessing, laterals and images whose smaller side is under 256 px are dropped; every kept
image gets a binary mask (0 / 255 PNG, the image's size) drawn with Pillow.

Example:
    >>> manifest, report = from_darwin_json("v7/annotations", "v7/images", "v7/masks")  # doctest: +SKIP
    >>> print(report.summary())  # doctest: +SKIP
"""

import json
import os
import re
from pathlib import Path

import numpy as np

from keras_covidcxr.data.build_report import BuildReport, BuiltManifest
from keras_covidcxr.data.builders._files import IMAGE_EXTENSIONS, relative_posix, require_folder
from keras_covidcxr.data.image_scan import header_size
from keras_covidcxr.data.manifest import DatasetError, Manifest, ManifestRow
from keras_covidcxr.data.vocabulary import normalize_label, normalize_sex, normalize_view, parse_age
from keras_covidcxr.io.atomic import atomic_write

# paper: "we dropped lateral views and images under 256 px" before training the ResUnet.
MIN_IMAGE_SIDE = 256

# V7 marks devices and markup over the lungs with an "Ignore" class; like torchxrayvision we
# treat those pixels as background, so the mask holds only what annotators called lung.
_IGNORE_CLASSES = ("ignore",)

# Kermany (Mendeley) file names carry the patient: person1_virus_6.jpeg, NORMAL2-IM-1427-0001.jpeg.
_KERMANY_PATIENT = (re.compile(r"^(person\d+)_"), re.compile(r"^((?:NORMAL2-)?IM-\d+)-\d+"))


def _paths_of(annotation):
    """Every closed path (a list of (x, y)) of a polygon or complex polygon annotation."""
    paths = []
    for kind in ("polygon", "complex_polygon"):
        shape = annotation.get(kind)
        if not isinstance(shape, dict):
            continue
        for key in ("path", "paths"):
            value = shape.get(key)
            if not value:
                continue
            nested = value if isinstance(value[0], list) else [value]
            paths.extend([(float(p["x"]), float(p["y"])) for p in path] for path in nested)
    return [path for path in paths if len(path) >= 3]


def draw_lung_mask(annotations, width, height, lung_classes=("lung",)):
    """A uint8 (height, width) mask: 255 inside lung polygons, 0 elsewhere (even-odd for holes)."""
    from PIL import Image, ImageDraw

    def fill(paths):
        region = np.zeros((height, width), bool)
        for path in paths:  # XOR of the paths: a path inside another is a hole
            canvas = Image.new("1", (width, height), 0)
            ImageDraw.Draw(canvas).polygon(path, fill=1, outline=1)
            region ^= np.asarray(canvas, bool)
        return region

    lungs = np.zeros((height, width), bool)
    ignored = np.zeros((height, width), bool)
    for annotation in annotations:
        name = str(annotation.get("name", "")).lower()
        paths = _paths_of(annotation)
        if not paths:
            continue
        if any(word in name for word in _IGNORE_CLASSES):
            ignored |= fill(paths)
        elif any(word in name for word in lung_classes):
            lungs |= fill(paths)
    return np.where(lungs & ~ignored, 255, 0).astype(np.uint8)


def _tags(document):
    """Lower-cased names of tag annotations and of any free-text tag lists."""
    names = [str(a.get("name", "")) for a in document.get("annotations", []) if "tag" in a]
    for holder in (document, document.get("image") or {}, document.get("item") or {}):
        if isinstance(holder.get("tags"), list):
            names.extend(
                str(tag.get("name", tag) if isinstance(tag, dict) else tag) for tag in holder["tags"]
            )
    return [name.strip() for name in names if name.strip()]


def _explicit_field(document, *names):
    """The first of `names` found in the document, its `image`/`item` part or their metadata."""
    holders = [document, document.get("image") or {}, document.get("item") or {}]
    holders += [h.get("metadata") or {} for h in list(holders)]
    wanted = {name.lower() for name in names}
    for holder in holders:
        for key, value in holder.items():
            if key.lower() in wanted and value not in (None, ""):
                return value
    return None


def _view(document, tags):
    explicit = _explicit_field(document, "view", "view position", "view_position", "viewposition")
    if explicit is not None:
        return normalize_view(explicit)
    views = [normalize_view(tag) for tag in tags if tag.lower() in ("lateral", "l", "pa", "ap", "ap supine")]
    if "L" in views:
        return "L"
    return views[0] if views else "unknown"


def _label(tags):
    labels = [normalize_label(tag) for tag in tags]
    if "covid" in labels:
        return "covid"
    if "pneumonia" in labels:
        return "pneumonia"
    if "normal" in labels or any(tag.lower() in ("none", "no pneumonia") for tag in tags):
        return "normal"
    return None


def _age_and_sex(document, tags):
    age = parse_age(_explicit_field(document, "age", "patient age", "patientage"))
    sex = normalize_sex(_explicit_field(document, "sex", "gender", "patient sex", "patientsex"))
    for tag in tags:
        match = re.fullmatch(r"age\W*(\d+(?:\.\d+)?)", tag.lower()) or re.fullmatch(
            r"(\d+(?:\.\d+)?)\s*(?:y|yo|years?(?: old)?)", tag.lower()
        )
        if age is None and match:
            age = float(match.group(1))
        sex = sex or normalize_sex(tag)
    return age, sex


def _image_name(document, json_path):
    image = document.get("image") or {}
    item = document.get("item") or {}
    names = [image.get("original_filename"), image.get("filename"), item.get("name")]
    for slot in item.get("slots") or []:
        names.extend(source.get("file_name") for source in slot.get("source_files") or [])
    return [name for name in names if name] + [json_path.stem + ext for ext in IMAGE_EXTENSIONS]


def _patient_id(document, image_name):
    explicit = _explicit_field(document, "patient_id", "patientid", "patient")
    if explicit is not None:
        return f"v7labs:{explicit}"
    stem = Path(image_name).stem
    for pattern in _KERMANY_PATIENT:
        match = pattern.match(stem)
        if match:
            return f"kermany:{match.group(1)}"
    return f"v7labs:{stem}"


def from_darwin_json(
    json_dir, image_dir, out_mask_dir, min_size=MIN_IMAGE_SIDE, lung_classes=("lung",), overwrite=False
):
    """Seg rows for every frontal V7 image with lung polygons; masks are written to `out_mask_dir`.

    Dropped, with the reason in the report: unreadable JSON, no matching image file, lateral
    view (explicit view field or a "Lateral"/"L" tag), no lung polygon (CT slices, laterals),
    smaller side under `min_size` px. Images from the Kermany set (children) keep their
    filename-derived patient id (`kermany:person12`); the audit flags children when an age is known.
    The manifest's root is the folder holding both `image_dir` and `out_mask_dir`. Existing
    mask files are replaced only with `overwrite=True` (otherwise a DatasetError, before any write).
    """
    json_dir = require_folder(json_dir, "Darwin JSON")
    image_dir = require_folder(image_dir, "image")
    out_mask_dir = Path(out_mask_dir)
    report = BuildReport("darwin-json")
    rows = []
    masks = {}  # mask path -> array, written only after every JSON was read
    for json_path in sorted(json_dir.rglob("*.json")):
        try:
            document = json.loads(json_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            report.drop(json_path.name, f"unreadable JSON ({error.__class__.__name__})")
            continue
        if not isinstance(document, dict):
            report.drop(json_path.name, "JSON is not a Darwin annotation object")
            continue
        image_path = next(
            (image_dir / n for n in _image_name(document, json_path) if (image_dir / n).is_file()), None
        )
        if image_path is None:
            report.drop(json_path.name, "image file not found")
            continue
        tags = _tags(document)
        view = _view(document, tags)
        if view == "L":
            report.drop(image_path.name, "lateral view")
            continue
        size = header_size(image_path)
        if size is None:
            report.drop(image_path.name, "image unreadable")
            continue
        width, height = size
        if min(width, height) < min_size:
            report.drop(image_path.name, f"smaller side under {min_size} px")
            continue
        mask = draw_lung_mask(document.get("annotations", []), width, height, lung_classes)
        if not mask.any():
            report.drop(image_path.name, "no lung polygon")
            continue
        mask_path = out_mask_dir / f"{image_path.stem}.png"
        if mask_path in masks:
            report.drop(json_path.name, f"second annotation of {image_path.name}")
            continue
        masks[mask_path] = mask
        age, sex = _age_and_sex(document, tags)
        label = _label(tags)
        rows.append(
            {
                "image": image_path,
                "mask": mask_path,
                "patient_id": _patient_id(document, image_path.name),
                "label": label,
                "view": view,
                "age": age,
                "sex": sex,
            }
        )
        report.keep(label)
    existing = [path for path in masks if path.exists()]
    if existing and not overwrite:
        raise DatasetError(
            f"{out_mask_dir}: {len(existing)} mask file(s) already exist (e.g. {existing[0].name}); "
            "pass overwrite=True to replace them"
        )
    _write_masks(masks)
    root = _common_root(image_dir, out_mask_dir)
    manifest_rows = [
        ManifestRow(
            path=relative_posix(row["image"], root),
            task="seg",
            patient_id=row["patient_id"],
            label=row["label"],
            mask_path=relative_posix(row["mask"], root),
            view=row["view"],
            age=row["age"],
            sex=row["sex"],
            source="v7labs",
        )
        for row in rows
    ]
    return BuiltManifest(Manifest(manifest_rows, root=root), report)


def _write_masks(masks):
    from PIL import Image

    for path, mask in masks.items():
        try:
            with atomic_write(path, "wb") as handle:
                Image.fromarray(mask).save(handle, format="PNG")
        except OSError as error:
            raise DatasetError(f"{path}: cannot write the mask ({error.strerror or error})") from error


def _common_root(*folders):
    try:
        return Path(os.path.commonpath([os.path.abspath(folder) for folder in folders]))
    except ValueError:  # different drives: paths relative to the image folder, masks absolute
        return Path(os.path.abspath(folders[0]))
