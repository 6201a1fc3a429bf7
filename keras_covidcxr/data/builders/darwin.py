"""Build a segmentation manifest from V7 Labs Darwin JSON lung annotations (v1 and v2 exports).

The V7 COVID-19 X-ray set (`v7labs/covid-19-xray-dataset`) ships one JSON per image with lung
polygons; lateral films and CT slices have tags but no lung polygons. Following the paper's
preprocessing, laterals, images whose smaller side is under 256 px and the children's films of
Kermany et al. are dropped; every kept image gets a binary mask (0 / 255 PNG, the image's size)
drawn with Pillow.

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
from keras_covidcxr.data.builders._files import (
    IMAGE_EXTENSIONS,
    relative_posix,
    require_folder,
    with_progress,
)
from keras_covidcxr.data.image_scan import header_size
from keras_covidcxr.data.manifest import DatasetError, Manifest, ManifestRow
from keras_covidcxr.data.vocabulary import normalize_label, normalize_sex, normalize_view, parse_age
from keras_covidcxr.io.atomic import atomic_write
from keras_covidcxr.io.file_identity import file_identity

# paper: "we dropped lateral views and images under 256 px" before training the ResUnet.
MIN_IMAGE_SIDE = 256

# V7 marks devices and markup over the lungs with an "Ignore" class; like torchxrayvision we
# treat those pixels as background, so the mask holds only what annotators called lung.
_IGNORE_CLASSES = ("ignore",)

# Kermany (Mendeley) file names carry the patient: person1_virus_6.jpeg, NORMAL2-IM-1427-0001.jpeg.
_KERMANY_PATIENT = (re.compile(r"^(person\d+)_"), re.compile(r"^((?:NORMAL2-)?IM-\d+)-\d+"))

# paper: Kermany et al.'s films are of children aged 1-5 (and carry no age), so they are left out.
PEDIATRIC_REASON = "pediatric source (Kermany et al., ages 1-5)"

_VIEW_FIELDS = ("view", "view position", "projection")
_SOURCE_FIELDS = ("source", "data source", "dataset source")

# Words a view tag or field may add around the view itself ("Lateral View", "view: PA").
_VIEW_FILLER = {"view", "position", "projection", "film", "cxr", "xray", "x", "ray"}
_LATERAL_WORDS = {"l", "ll", "rl", "lat", "lateral"}
_FRONTAL_VIEWS = {"pa", "ap", "ap supine", "supine ap", "ap erect", "ap upright"}

# V7's healthy tag is "No Pneumonia (healthy)": it names pneumonia, so it must be read first.
_NORMAL_TAG = re.compile(r"\b(no pneumonia|healthy|normal|no findings?)\b")


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


def _field_key(name):
    """A field name compared loosely: `View Position`, `view_position`, `viewPosition` match."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _explicit_field(document, *names):
    """The first of `names` found in the document, its `image`/`item` part or their metadata."""
    holders = [document, document.get("image") or {}, document.get("item") or {}]
    holders += [h.get("metadata") or {} for h in list(holders)]
    wanted = {_field_key(name) for name in names}
    for holder in holders:
        for key, value in holder.items():
            if _field_key(key) in wanted and value not in (None, ""):
                return value
    return None


def _view_words(text):
    """A view tag or field's words, lower-cased, without filler: "Lateral View" -> "lateral"."""
    return " ".join(word for word in re.findall(r"[a-z]+", str(text).lower()) if word not in _VIEW_FILLER)


def _is_lateral(text):
    """True for "L", "LL", "lat", "Lateral", "Lateral View", "left lateral", ... (not "bilateral")."""
    words = set(_view_words(text).split())
    return bool(words & _LATERAL_WORDS) and words <= _LATERAL_WORDS | {"left", "right", "decubitus"}


def _view(document, tags):
    """`L` when the view field or any tag says lateral, else the view field's or a view tag's view."""
    explicit = _explicit_field(document, *_VIEW_FIELDS)
    candidates = ([] if explicit is None else [str(explicit)]) + tags
    if any(_is_lateral(text) for text in candidates):
        return "L"
    if explicit is not None:
        return normalize_view(explicit)
    views = [normalize_view(_view_words(tag)) for tag in tags if _view_words(tag) in _FRONTAL_VIEWS]
    return views[0] if views else "unknown"


def _tag_label(tag):
    if _NORMAL_TAG.search(tag.lower()) or tag.strip().lower() == "none":
        return "normal"
    return normalize_label(tag)


def _label(tags):
    labels = [_tag_label(tag) for tag in tags]
    for label in ("covid", "pneumonia", "normal"):
        if label in labels:
            return label
    return None


def _from_kermany(document, image_name, tags):
    """True for a film of Kermany et al.'s children's set: by its source field, a tag or its file name."""
    source = _explicit_field(document, *_SOURCE_FIELDS)
    if any("kermany" in str(text).lower() for text in (image_name, source or "", *tags)):
        return True
    return any(pattern.match(Path(image_name).stem) for pattern in _KERMANY_PATIENT)


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
    json_dir,
    image_dir,
    out_mask_dir,
    min_size=MIN_IMAGE_SIDE,
    lung_classes=("lung",),
    overwrite=False,
    allow_pediatric=False,
    progress=None,
):
    """Seg rows for every frontal V7 image with lung polygons; masks are written to `out_mask_dir`.

    Dropped, with the reason in the report: unreadable JSON, no matching image file, a film of
    Kermany et al.'s children's set (file name like `person12_virus_3.jpeg`, or "kermany" in
    the name, a source field or a tag), lateral view (a view field or tag reading "L", "LL",
    "lat", "Lateral", "Lateral View", any case), no lung polygon (CT slices, laterals), smaller
    side under `min_size` px. With `allow_pediatric=True` the Kermany films are kept, with an
    empty age, their filename-derived patient id (`kermany:person12`) and a note in the report.
    The manifest's root is the folder holding both `image_dir` and `out_mask_dir`. Existing
    mask files are replaced only with `overwrite=True` (otherwise a DatasetError, before any write).
    `progress(done, total)`, when given, is called after each JSON file.
    """
    json_dir = require_folder(json_dir, "Darwin JSON")
    image_dir = require_folder(image_dir, "image")
    out_mask_dir = Path(out_mask_dir)
    report = BuildReport("darwin-json")
    rows = []
    masks = {}  # mask path -> array, written only after every JSON was read
    pediatric_kept = 0
    for json_path in with_progress(sorted(json_dir.rglob("*.json")), progress):
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
        pediatric = _from_kermany(document, image_path.name, tags)
        if pediatric and not allow_pediatric:
            report.drop(image_path.name, PEDIATRIC_REASON)
            continue
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
        if pediatric:
            age = None  # children of 1-5 years; no age is recorded for them
            pediatric_kept += 1
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
        report.keep(label, "seg")
    if pediatric_kept:
        report.note(
            f"kept {pediatric_kept} pediatric films (Kermany et al., ages 1-5) with an empty age: "
            "the audit cannot flag them as children"
        )
    images = {file_identity(row["image"]) for row in rows}
    clobbered = [path for path in masks if file_identity(path) in images]
    if clobbered:  # --masks-out is the image folder: a mask would replace its own film, whatever overwrite says
        raise DatasetError(f"{clobbered[0]}: is one of the images; write the masks to a folder of their own "
                           "(--masks-out), not the image folder")
    existing = [path for path in masks if path.exists()]
    if existing and not overwrite:
        raise DatasetError(
            f"{out_mask_dir}: {len(existing)} mask file(s) already exist (e.g. {existing[0].name}); "
            "pass overwrite=True (--overwrite) to replace them"
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
