"""Dataset builders on small fixture layouts written by the tests."""

import json

import numpy as np
import pytest
from PIL import Image

from keras_covidcxr.data import (
    DatasetError,
    draw_lung_mask,
    from_bimcv,
    from_class_folders,
    from_covid_gr,
    from_covidx_list,
    from_darwin_json,
    from_ieee8023_metadata,
    from_midrc_ricord,
    from_shared_cxr_manifest,
    read_manifest,
    write_manifest,
)


def reasons(report):
    return {item.item: item.reason for item in report.dropped}


# ---- COVIDx ---------------------------------------------------------------------------------------


def test_covidx_list(tmp_path, chest_like, write_png):
    images = tmp_path / "train"
    for name in ("a.png", "b.png", "c d.png", "e.png"):
        write_png(images / name, chest_like(1, 40, 40))
    listing = tmp_path / "train_COVIDx5.txt"
    listing.write_text(
        "3 a.png COVID-19 cohen\n"
        "7 b.png normal rsna\n"
        "\n"
        "9 c d.png pneumonia actualmed\n"
        "4 e.png other rsna\n"
        "5 missing.png normal rsna\n"
        "3 a.png COVID-19 cohen\n"
        "broken-line\n"
    )
    manifest, report = from_covidx_list(listing, images, split="train")
    assert [(r.path, r.label, r.patient_id, r.source, r.split) for r in manifest] == [
        ("a.png", "covid", "cohen:3", "cohen", "train"),
        ("b.png", "normal", "rsna:7", "rsna", "train"),
        ("c d.png", "pneumonia", "actualmed:9", "actualmed", "train"),
    ]
    assert manifest.resolve(manifest[0]) == images / "a.png"
    dropped = report.dropped_by_reason()
    assert dropped["image file not found"] == 1
    assert dropped["image listed twice"] == 1
    assert dropped["line is not 'patient_id filename label source'"] == 1
    assert dropped["label 'other' is not covid/normal/pneumonia"] == 1
    summary = report.summary()
    assert "kept 3 images, dropped 4" in summary and "missing.png" in summary

    listing.write_bytes(b"\xef\xbb\xbf" + listing.read_bytes())  # saved by a Windows editor
    manifest, _ = from_covidx_list(listing, images, split="train")
    assert manifest[0].patient_id == "cohen:3"


def test_metadata_that_is_not_utf8_is_refused_by_name(tmp_path):
    listing = tmp_path / "train.txt"
    listing.write_bytes("3 a.png COVID-19 h\u00f4pital\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"train.txt: the COVIDx list is not UTF-8 text \(byte 18"):
        from_covidx_list(listing, tmp_path)
    (tmp_path / "metadata.csv").write_bytes(f"{IEEE_HEADER}1,0,M,65,caf\u00e9,Y".encode("latin-1"))
    with pytest.raises(DatasetError, match="metadata.csv: the ieee8023 metadata.csv is not UTF-8 text"):
        from_ieee8023_metadata(tmp_path / "metadata.csv", tmp_path)


def test_covidx_binary_labels(tmp_path, chest_like, write_png):
    images = tmp_path / "train"
    for name in ("p.png", "n1.png", "n2.png", "n3.png"):
        write_png(images / name, chest_like(1, 20, 20))
    listing = tmp_path / "train.txt"
    listing.write_text(
        "419639-003251 p.png positive ricord\n"
        "1 n1.png negative rsna\n"
        "2 n2.png negative rsna\n"
        "3 n3.png Negative rsna\n"
    )
    seen = []
    manifest, report = from_covidx_list(
        listing, images, progress=lambda done, total: seen.append((done, total))
    )
    assert [(r.path, r.label, r.patient_id) for r in manifest] == [("p.png", "covid", "ricord:419639-003251")]
    reason = "COVIDx binary label 'negative' does not say normal or pneumonia"
    assert report.dropped_by_reason() == {reason: 3}
    assert f"  dropped: {reason} 3" in report.summary().splitlines()
    assert seen == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]


def test_covidx_missing_inputs_raise(tmp_path):
    with pytest.raises(DatasetError, match="COVIDx list not found"):
        from_covidx_list(tmp_path / "none.txt", tmp_path)


# ---- Darwin JSON (V7 Labs) ------------------------------------------------------------------------


def square(x0, y0, x1, y1):
    return [{"x": x0, "y": y0}, {"x": x1, "y": y0}, {"x": x1, "y": y1}, {"x": x0, "y": y1}]


def darwin_v1(filename, width, height, annotations):
    return {
        "dataset": "covid-19-chest-x-ray-dataset",
        "image": {"width": width, "height": height, "original_filename": filename, "filename": filename},
        "annotations": annotations,
    }


@pytest.fixture
def darwin_folders(tmp_path, chest_like):
    images, annotations = tmp_path / "images", tmp_path / "annotations"
    annotations.mkdir()
    documents = {
        # frontal, two lung polygons, an "Ignore" device over the right lung, tags for label/age/sex
        "frontal": (
            "frontal.jpg",
            300,
            280,
            [
                {"name": "Lungs", "polygon": {"path": square(20, 30, 120, 230)}},
                {"name": "Lungs", "polygon": {"path": square(160, 30, 260, 230)}},
                {"name": "Ignore", "polygon": {"path": square(200, 100, 220, 120)}},
                {"name": "COVID-19", "tag": {}},
                {"name": "Age 54", "tag": {}},
                {"name": "Female", "tag": {}},
            ],
        ),
        "lateral": (
            "lateral.jpg",
            300,
            300,
            [{"name": "Lateral", "tag": {}}, {"name": "Viral Pneumonia", "tag": {}}],
        ),
        "small": ("small.jpg", 200, 240, [{"name": "Lungs", "polygon": {"path": square(10, 10, 100, 100)}}]),
        "ct": ("ct.jpg", 300, 300, [{"name": "COVID-19", "tag": {}}]),
        # a lung drawn as a complex polygon with a hole, and a kermany patient in the file name
        "person12_virus_3": (
            "person12_virus_3.jpeg",
            280,
            300,
            [
                {
                    "name": "Lung",
                    "complex_polygon": {"path": [square(10, 10, 200, 200), square(50, 50, 100, 100)]},
                },
                {"name": "Bacterial Pneumonia", "tag": {}},
            ],
        ),
    }
    for stem, (filename, width, height, annotation_list) in documents.items():
        _write_jpeg(images / filename, chest_like(len(stem), height, width))
        (annotations / f"{stem}.json").write_text(
            json.dumps(darwin_v1(filename, width, height, annotation_list))
        )
    # a darwin-py 2.0 export with an explicit view field
    _write_jpeg(images / "v2.jpg", chest_like(99, 260, 270))
    (annotations / "v2.json").write_text(
        json.dumps(
            {
                "version": "2.0",
                "item": {
                    "name": "v2.jpg",
                    "slots": [{"width": 270, "height": 260, "source_files": [{"file_name": "v2.jpg"}]}],
                    "metadata": {"View Position": "AP"},
                },
                "annotations": [{"name": "Lung", "polygon": {"paths": [square(10, 10, 60, 60)]}}],
            }
        )
    )
    (annotations / "orphan.json").write_text(json.dumps(darwin_v1("gone.jpg", 300, 300, [])))
    (annotations / "broken.json").write_text("{not json")
    return images, annotations, tmp_path / "masks"


def _write_jpeg(path, pixels):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=92)


def test_darwin_json_keeps_frontal_films_and_draws_masks(darwin_folders):
    images, annotations, masks = darwin_folders
    manifest, report = from_darwin_json(annotations, images, masks, allow_pediatric=True)
    by_name = {row.path.split("/")[-1]: row for row in manifest}
    assert set(by_name) == {"frontal.jpg", "person12_virus_3.jpeg", "v2.jpg"}
    frontal = by_name["frontal.jpg"]
    assert (frontal.task, frontal.label, frontal.age, frontal.sex, frontal.source) == (
        "seg",
        "covid",
        54.0,
        "F",
        "v7labs",
    )
    assert by_name["person12_virus_3.jpeg"].patient_id == "kermany:person12"
    assert by_name["person12_virus_3.jpeg"].label == "pneumonia"
    assert by_name["v2.jpg"].view == "AP"

    mask = np.asarray(Image.open(manifest.resolve_mask(frontal)))
    assert mask.shape == (280, 300) and set(np.unique(mask)) == {0, 255}
    assert mask[100, 50] == 255 and mask[100, 140] == 0  # left lung, gap between lungs
    assert mask[110, 210] == 0 and mask[150, 210] == 255  # "Ignore" device is background
    holed = np.asarray(Image.open(manifest.resolve_mask(by_name["person12_virus_3.jpeg"])))
    assert holed[30, 30] == 255 and holed[75, 75] == 0  # the inner path is a hole

    why = reasons(report)
    assert why["lateral.jpg"] == "lateral view"
    assert why["small.jpg"] == "smaller side under 256 px"
    assert why["ct.jpg"] == "no lung polygon"
    assert why["orphan.json"] == "image file not found"
    assert why["broken.json"].startswith("unreadable JSON")

    # the manifest survives a write/read round trip with masks that exist
    back = read_manifest(write_manifest(manifest, masks.parent / "seg.csv"))
    assert all(back.resolve_mask(row).is_file() for row in back)


def _darwin_one(folder, chest_like, stem, tags=(), filename=None, image_fields=None, seed=0):
    """Write one 300x300 V7 image with a lung polygon plus `tags`; returns (images, annotations)."""
    images, annotations = folder / "images", folder / "annotations"
    annotations.mkdir(parents=True, exist_ok=True)
    filename = filename or f"{stem}.jpg"
    _write_jpeg(images / filename, chest_like(seed, 300, 300))
    document = darwin_v1(
        filename,
        300,
        300,
        [{"name": "Lung", "polygon": {"path": square(20, 20, 200, 200)}}]
        + [{"name": tag, "tag": {}} for tag in tags],
    )
    document["image"].update(image_fields or {})
    (annotations / f"{stem}.json").write_text(json.dumps(document))
    return images, annotations


def test_darwin_json_reads_the_no_pneumonia_tag_as_normal(tmp_path, chest_like):
    _darwin_one(tmp_path, chest_like, "healthy", tags=["No Pneumonia (healthy)", "PA"])
    _darwin_one(tmp_path, chest_like, "viral", tags=["Viral Pneumonia", "AP"], seed=1)
    manifest, _ = from_darwin_json(tmp_path / "annotations", tmp_path / "images", tmp_path / "masks")
    assert {row.path.split("/")[-1]: (row.label, row.view) for row in manifest} == {
        "healthy.jpg": ("normal", "PA"),
        "viral.jpg": ("pneumonia", "AP"),
    }


def test_darwin_json_drops_laterals_from_any_view_field_or_tag(tmp_path, chest_like):
    laterals = {
        "field_l": {"image_fields": {"view": "L"}},
        "field_metadata": {"image_fields": {"metadata": {"View Position": "lateral"}}},
        "tag_lateral_view": {"tags": ["Lateral View", "COVID-19"]},
        "tag_ll": {"tags": ["LL"]},
        "tag_lat": {"tags": ["lat"]},
    }
    for seed, (stem, kwargs) in enumerate(laterals.items()):
        _darwin_one(tmp_path, chest_like, stem, seed=seed, **kwargs)
    _darwin_one(tmp_path, chest_like, "frontal", tags=["AP Supine", "Bilateral opacities"], seed=9)
    manifest, report = from_darwin_json(tmp_path / "annotations", tmp_path / "images", tmp_path / "masks")
    assert [(row.path.split("/")[-1], row.view) for row in manifest] == [("frontal.jpg", "AP Supine")]
    assert reasons(report) == {f"{stem}.jpg": "lateral view" for stem in laterals}
    assert "dropped: lateral view 5" in report.summary()


def test_darwin_json_drops_kermany_children_unless_allowed(tmp_path, chest_like):
    _darwin_one(tmp_path, chest_like, "person7_bacteria_29", tags=["Bacterial Pneumonia", "Age 3"])
    _darwin_one(tmp_path, chest_like, "NORMAL2-IM-1427-0001", tags=["No Pneumonia (healthy)"], seed=1)
    _darwin_one(
        tmp_path, chest_like, "x1", tags=["Bacterial Pneumonia"], image_fields={"source": "Kermany"}, seed=2
    )
    _darwin_one(tmp_path, chest_like, "adult", tags=["COVID-19", "Age 60"], seed=3)
    folders = tmp_path / "annotations", tmp_path / "images", tmp_path / "masks"
    manifest, report = from_darwin_json(*folders)
    assert [row.path.split("/")[-1] for row in manifest] == ["adult.jpg"]
    assert report.dropped_by_reason() == {"pediatric source (Kermany et al., ages 1-5)": 3}

    manifest, report = from_darwin_json(*folders, allow_pediatric=True, overwrite=True)
    by_name = {row.path.split("/")[-1]: row for row in manifest}
    assert [
        (by_name[name].patient_id, by_name[name].age, by_name[name].label) for name in sorted(by_name)
    ] == [
        ("kermany:NORMAL2-IM-1427", None, "normal"),
        ("v7labs:adult", 60.0, "covid"),
        ("kermany:person7", None, "pneumonia"),
        ("v7labs:x1", None, "pneumonia"),
    ]
    assert not report.dropped and "kept 3 pediatric films" in report.summary()


def test_draw_lung_mask_only_draws_lung_classes():
    annotations = [
        {"name": "Lungs", "polygon": {"path": square(1, 1, 4, 4)}},
        {"name": "Pacemaker", "polygon": {"path": square(6, 6, 8, 8)}},
    ]
    mask = draw_lung_mask(annotations, width=10, height=10)
    assert mask[2, 2] == 255 and mask[7, 7] == 0


# ---- ieee8023 metadata.csv ------------------------------------------------------------------------

IEEE_HEADER = (
    "patientid,offset,sex,age,finding,RT_PCR_positive,survival,intubated,view,modality,date,location,"
    "folder,filename,doi,url,license\n"
)


def test_ieee8023_metadata(tmp_path, chest_like, write_png):
    images = tmp_path / "images"
    rows = [
        ("1", "M", "65", "Pneumonia/Viral/COVID-19", "PA", "X-ray", "a.jpg", "CC BY 4.0"),
        ("2", "F", "", "No Finding", "AP", "X-ray", "b.jpg", ""),
        ("3", "", "40", "Pneumonia/Bacterial/Streptococcus", "AP Supine", "X-ray", "c.png", ""),
        ("1", "M", "65", "Pneumonia/Viral/COVID-19", "L", "X-ray", "lat.jpg", ""),
        ("4", "F", "50", "Pneumonia/Viral/COVID-19", "Axial", "CT", "ct.jpg", ""),
        ("5", "M", "10", "Pneumonia/Viral/COVID-19", "PA", "X-ray", "child.jpg", ""),
        ("6", "M", "70", "ARDS", "PA", "X-ray", "ards.jpg", ""),
        ("7", "M", "70", "todo", "PA", "X-ray", "todo.jpg", ""),
        ("8", "F", "30", "No Finding", "PA", "X-ray", "missing.jpg", ""),
        (" ", "F", "30", "No Finding", "PA", "X-ray", "nopid.jpg", ""),
    ]
    for row in rows:
        if row[6] != "missing.jpg":
            write_png(images / row[6], chest_like(3, 30, 30))
    text = IEEE_HEADER + "".join(
        f"{pid},0,{sex},{age},{finding},Y,,N,{view},{modality},2020,Here,images,{filename},,,{lic}\n"
        for pid, sex, age, finding, view, modality, filename, lic in rows
    )
    (tmp_path / "metadata.csv").write_text(text)
    manifest, report = from_ieee8023_metadata(tmp_path / "metadata.csv", images)
    assert [(r.path, r.label, r.view, r.patient_id, r.age, r.sex) for r in manifest] == [
        ("a.jpg", "covid", "PA", "ieee8023:1", 65.0, "M"),
        ("b.jpg", "normal", "AP", "ieee8023:2", None, "F"),
        ("c.png", "pneumonia", "AP Supine", "ieee8023:3", 40.0, None),
    ]
    assert manifest[0].extra["license"] == "CC BY 4.0"
    why = reasons(report)
    assert why["lat.jpg"] == "lateral view"
    assert why["ct.jpg"] == "modality 'CT' is not X-ray"
    assert why["child.jpg"] == "patient under 18"
    assert why["ards.jpg"] == "finding 'ARDS' is not covid/normal/pneumonia"
    assert why["todo.jpg"].startswith("finding 'todo'")
    assert why["missing.jpg"] == "image file not found"
    assert why["nopid.jpg"] == "no patientid"

    kept_all, _ = from_ieee8023_metadata(
        tmp_path / "metadata.csv", images, drop_lateral=False, drop_pediatric=False
    )
    assert {"lat.jpg", "child.jpg"} <= {r.path for r in kept_all}


def test_ieee8023_metadata_needs_its_columns(tmp_path):
    (tmp_path / "metadata.csv").write_text("patient,file\n1,a.png\n")
    with pytest.raises(DatasetError, match="missing column"):
        from_ieee8023_metadata(tmp_path / "metadata.csv", tmp_path)


# ---- folder layouts -------------------------------------------------------------------------------


def test_class_folders_with_and_without_split_folders(tmp_path, chest_like, write_png):
    for name in (
        "COVID/c1.png",
        "COVID/c2.png",
        "Normal/n1.png",
        "Viral Pneumonia/v1.png",
        "Lung_Opacity/o1.png",
        "Non-COVID/x1.png",  # normal or pneumonia: not covid, whatever its name contains
    ):
        write_png(tmp_path / "flat" / name, chest_like(1, 20, 20))
    manifest, report = from_class_folders(tmp_path / "flat")
    assert sorted((r.path, r.label) for r in manifest) == [
        ("COVID/c1.png", "covid"),
        ("COVID/c2.png", "covid"),
        ("Normal/n1.png", "normal"),
        ("Viral Pneumonia/v1.png", "pneumonia"),
    ]
    assert manifest[0].patient_id == "flat:COVID/c1" and manifest[0].source == "flat"
    assert reasons(report)["Lung_Opacity/o1.png"] == "folder 'Lung_Opacity' is not a known class"
    assert reasons(report)["Non-COVID/x1.png"] == "folder 'Non-COVID' is not a known class"
    assert "each image counts as its own patient" in report.summary()

    for name in (
        "train/covid/person1_a.png",
        "train/covid/person1_b.png",
        "test/normal/person2_a.png",
        "test/normal/stray.png",
    ):
        write_png(tmp_path / "split" / name, chest_like(2, 20, 20))
    manifest, report = from_class_folders(tmp_path / "split", patient_id_pattern=r"^(person\d+)_")
    assert sorted((r.split, r.label, r.patient_id) for r in manifest) == [
        ("test", "normal", "split:person2"),
        ("train", "covid", "split:person1"),
        ("train", "covid", "split:person1"),
    ]
    assert reasons(report)["test/normal/stray.png"] == "file name does not match patient_id_pattern"


def test_class_folders_radiography_database_layout(tmp_path, chest_like, write_png):
    root = tmp_path / "COVID-19_Radiography_Dataset"
    for name in (
        "COVID/images/COVID-1.png",
        "COVID/images/COVID-2.png",
        "COVID/masks/COVID-1.png",
        "COVID/masks/COVID-2.png",
        "Normal/images/Normal-1.png",
        "Normal/MASKS/Normal-1.png",
        "Normal/stray.png",  # beside images/: not read
        "Viral Pneumonia/v1.png",
        "Viral Pneumonia/Masks/v1.png",
    ):
        write_png(root / name, chest_like(1, 20, 20))
    manifest, report = from_class_folders(root)
    assert sorted((r.path, r.label, r.mask_path) for r in manifest) == [
        ("COVID/images/COVID-1.png", "covid", "COVID/masks/COVID-1.png"),
        ("COVID/images/COVID-2.png", "covid", "COVID/masks/COVID-2.png"),
        ("Normal/images/Normal-1.png", "normal", "Normal/MASKS/Normal-1.png"),
        ("Viral Pneumonia/v1.png", "pneumonia", "Viral Pneumonia/Masks/v1.png"),
    ]
    assert all(r.task == "cls" for r in manifest) and not report.dropped
    assert "4 images have a lung mask" in report.summary()
    back = read_manifest(write_manifest(manifest, tmp_path / "m.csv"))
    assert all(back.resolve_mask(row).is_file() for row in back)


def test_covid_gr(tmp_path, chest_like, write_png):
    for name in ("P/p1.jpg", "P/p2.jpg", "N/n1.jpg"):
        write_png(tmp_path / name, chest_like(4, 20, 20))
    manifest, report = from_covid_gr(tmp_path)
    assert sorted((r.path, r.label, r.patient_id, r.source) for r in manifest) == [
        ("N/n1.jpg", "normal", "covid-gr:N/n1", "covid-gr"),
        ("P/p1.jpg", "covid", "covid-gr:P/p1", "covid-gr"),
        ("P/p2.jpg", "covid", "covid-gr:P/p2", "covid-gr"),
    ]
    assert report.builder == "covid-gr"
    # the same file name under P and N is two films of two patients, not one patient with two labels
    write_png(tmp_path / "N" / "p1.jpg", chest_like(5, 20, 20))
    manifest, _ = from_covid_gr(tmp_path)
    assert len({r.patient_id for r in manifest}) == len(manifest) == 4


def _write_dicom(path, view, age="045Y", sex="F"):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = pydicom.Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.ViewPosition, dataset.PatientAge, dataset.PatientSex, dataset.Modality = view, age, sex, "DX"
    dataset.Rows = dataset.Columns = 4
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 12, 11
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation, dataset.PixelRepresentation = (
        1,
        "MONOCHROME2",
        0,
    )
    dataset.PixelData = np.zeros((4, 4), np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)


def test_midrc_ricord(tmp_path, chest_like, write_png):
    collection = tmp_path / "MIDRC-RICORD-1C"
    _write_dicom(collection / "MIDRC-RICORD-1C-SITE2-000216" / "study1" / "series1" / "1-1.dcm", "AP")
    _write_dicom(collection / "MIDRC-RICORD-1C-SITE2-000216" / "study2" / "series1" / "1-1.dcm", "LL")
    _write_dicom(
        collection / "MIDRC-RICORD-1C-SITE2-000300" / "study1" / "series1" / "1-1.dcm", "PA", "070Y", "M"
    )
    write_png(collection / "loose.png", chest_like(1, 10, 10))
    manifest, report = from_midrc_ricord(tmp_path)  # the folder above the collection works too
    assert [(r.patient_id, r.label, r.view, r.age, r.sex) for r in manifest] == [
        ("midrc:MIDRC-RICORD-1C-SITE2-000216", "covid", "AP", 45.0, "F"),
        ("midrc:MIDRC-RICORD-1C-SITE2-000300", "covid", "PA", 70.0, "M"),
    ]
    assert manifest.resolve(manifest[0]).is_file()
    why = reasons(report)
    assert why["MIDRC-RICORD-1C-SITE2-000216/study2/series1/1-1.dcm"] == "lateral view"
    assert why["loose.png"] == "file is not inside a patient folder"


def test_bimcv(tmp_path, chest_like, write_png):
    root = tmp_path / "bimcv_covid19_posi_subjects_1"
    rx = root / "sub-S0001" / "ses-E0001" / "mod-rx"
    write_png(rx / "sub-S0001_ses-E0001_run-1_bp-chest_vp-pa_dx.png", chest_like(1, 20, 20))
    write_png(rx / "sub-S0001_ses-E0001_run-2_bp-chest_vp-ll_dx.png", chest_like(2, 20, 20))
    write_png(
        root / "sub-S0002" / "ses-E0005" / "mod-rx" / "sub-S0002_ses-E0005_run-1_bp-chest_vp-ap_cr.png",
        chest_like(3, 20, 20),
    )
    write_png(
        root / "sub-S0002" / "ses-E0005" / "mod-ct" / "sub-S0002_ses-E0005_ct.png", chest_like(4, 20, 20)
    )
    (root / "participants.tsv").write_text(
        "participant_id\tmodality_dicom\tage\tgender\n"
        "sub-S0001\t['DX']\t[71]\tM\nsub-S0002\t['CR']\t[55, 56]\tF\n"
    )
    manifest, report = from_bimcv(tmp_path)
    assert [(r.patient_id, r.view, r.age, r.sex, r.label) for r in manifest] == [
        ("bimcv:sub-S0001", "PA", 71.0, "M", "covid"),
        ("bimcv:sub-S0002", "AP", 55.0, "F", "covid"),
    ]
    assert report.dropped_by_reason() == {"lateral view": 1, "not an X-ray (mod- folder is not mod-rx)": 1}
    assert not report.notes


def test_bimcv_participant_column_and_unmatched_ages(tmp_path, chest_like, write_png):
    rx = tmp_path / "sub-S0001" / "ses-E0001" / "mod-rx"
    write_png(rx / "sub-S0001_ses-E0001_run-1_bp-chest_vp-pa_dx.png", chest_like(1, 20, 20))
    tsv = tmp_path / "participants.tsv"
    tsv.write_text("participant\tage\tgender\nsub-S0001\t[12]\tF\n")
    manifest, report = from_bimcv(tmp_path)
    assert [(r.patient_id, r.age, r.sex) for r in manifest] == [("bimcv:sub-S0001", 12.0, "F")]
    assert not report.notes

    tsv.write_text("participant_id\tage\tgender\nsub-S9999\t[40]\tF\n")
    manifest, report = from_bimcv(tmp_path)
    assert manifest[0].age is None
    assert "no image got an age" in report.summary() and "cannot detect children" in report.summary()


# ---- the shared curated folder's manifest.csv -----------------------------------------------------


def test_shared_cxr_manifest(tmp_path, chest_like, write_png):
    for name in (
        "seg/images/a.png",
        "seg/masks/a.png",
        "cls/images/a.png",
        "cls/images/b.png",
        "seg/images/nomask.png",
    ):
        write_png(tmp_path / name, chest_like(5, 20, 20))
    (tmp_path / "manifest.csv").write_text(
        "file,task,label,patient_id,view,age,source_repo,source_path,license\n"
        'seg/images/a.png,seg,covid,ieee8023:2,PA,65,"hida6/covid-chestxray-dataset (fork, x)",images/a.jpeg,\n'
        "cls/images/a.png,cls,covid,ieee8023:2,PA,65,hida6/covid-chestxray-dataset,images/a.jpeg,CC BY 4.0\n"
        "cls/images/b.png,cls,normal,actualmed:ANON1,unknown,,agchung/Actualmed,b.jpeg,research use only\n"
        "seg/images/nomask.png,seg,unknown,figure1:COVID-1,AP Supine,50,agchung/Figure1,n.png,\n"
        "cls/images/gone.png,cls,covid,figure1:COVID-2,AP,,agchung/Figure1,g.png,\n"
        "extra/images/lat.png,bad_input,covid,ieee8023:9,L,,x,y,\n"
        "cls/images/a.png,cls,covid,ieee8023:3,Axial,40,x,y,\n"  # a CT slice: no view of a chest X-ray
    )
    manifest, report = from_shared_cxr_manifest(tmp_path / "manifest.csv")
    assert [(r.task, r.path, r.mask_path, r.label, r.source, r.view, r.age) for r in manifest] == [
        ("seg", "seg/images/a.png", "seg/masks/a.png", "covid", "ieee8023", "PA", 65.0),
        ("cls", "cls/images/a.png", None, "covid", "ieee8023", "PA", 65.0),
        ("cls", "cls/images/b.png", None, "normal", "actualmed", "unknown", None),
    ]
    assert manifest[2].extra["license"] == "research use only"
    why = reasons(report)
    assert why["seg/images/nomask.png"] == "mask file not found"
    assert why["cls/images/gone.png"] == "image file not found"
    assert why["extra/images/lat.png"] == "task 'bad_input' is not seg/cls"
    assert "view 'Axial': a CT slice, not a chest X-ray" in report.summary()
    assert report.to_dict()["kept_by_label"] == {"covid": 2, "normal": 1}
    # the same film kept for both tasks is two rows: the summary counts each task apart
    assert report.to_dict()["kept_by_task"] == {"seg": {"covid": 1}, "cls": {"covid": 1, "normal": 1}}
    assert "kept for classification (cls) by label: covid 1, normal 1" in report.summary()
    assert "kept for segmentation (seg, with lung masks) by label: covid 1" in report.summary()


def test_darwin_json_never_replaces_existing_masks_unless_asked(darwin_folders):
    images, annotations, masks = darwin_folders
    (masks / "frontal.png").parent.mkdir(parents=True)
    (masks / "frontal.png").write_bytes(b"mine")
    with pytest.raises(DatasetError, match="already exist"):
        from_darwin_json(annotations, images, masks)
    assert (masks / "frontal.png").read_bytes() == b"mine" and len(list(masks.iterdir())) == 1
    manifest, _ = from_darwin_json(annotations, images, masks, overwrite=True)
    assert Image.open(masks / "frontal.png").size == (300, 280) and len(manifest) == 2


def test_darwin_masks_are_never_written_over_the_films(tmp_path, chest_like):
    images, annotations = _darwin_one(tmp_path, chest_like, "film", filename="film.png")
    before = (images / "film.png").read_bytes()
    for overwrite in (False, True):
        with pytest.raises(DatasetError, match="film.png: is one of the images; write the masks to a folder of their own"):
            from_darwin_json(annotations, images, images, overwrite=overwrite)
    assert (images / "film.png").read_bytes() == before


def test_a_shared_manifest_naming_a_column_twice_is_refused(tmp_path):
    (tmp_path / "manifest.csv").write_text("file,task,label,patient_id,label\ncls/a.png,cls,covid,p1,normal\n")
    with pytest.raises(DatasetError, match=r"manifest.csv:1: column\(s\) label appear more than once"):
        from_shared_cxr_manifest(tmp_path / "manifest.csv")


@pytest.mark.parametrize(
    "text, years",
    [("54", 54.0), ("050Y", 50.0), ("early 40s", 40.0), ("54 yo", 54.0), ("90+", 90.0), ("18 months", 1.5),
     ("20 mo", 1.67), ("006M", 0.5), ("3 wk", 0.06), ("30 days", 0.08), ("24 hrs", 0.0), ("unknown", None),
     ("45M", 45.0), ("45 M", 45.0), ("17 Jahre", 17.0), ("60 or older", 60.0), ("-1", None), ("\u22121", None)],  # a lone M may be the sex
)
def test_ages_in_months_weeks_or_days_are_not_read_as_years(text, years):
    from keras_covidcxr.data.vocabulary import parse_age

    assert parse_age(text) == years


@pytest.mark.parametrize(
    "name, label",
    [("COVID-19", "covid"), ("covid19", "covid"), ("COVID positive", "covid"), ("COVID +ve", "covid"),
     ("Pneumonia/Viral/COVID-19", "covid"), ("COVID-19, ARDS", "covid"), ("SARS-CoV-2", "covid"),
     ("Pre-COVID", None), ("post-covid", None), ("COVID-free", None), ("COVID(-)", None), ("COVID -ve", None),
     ("covid19-", None), ("COVID ruled out", None), ("COVID-19 excluded", None), ("COVID suspected", None),
     ("NormalNonCovid", None), ("PneumoniaNonCOVID", None), ("covid negative", None), ("Non-COVID", None),
     ("PreCovid", None), ("PostCovid", None), ("CovidFree", None), ("COVID not detected", None),
     ("no evidence of covid", None), ("SARS-CoV-2 neg", None), ("covid pending", None), ("COVID?", None),
     ("COVID-19 pre-treatment", "covid"), ("Normal", "normal"), ("Viral Pneumonia", "pneumonia")],
)
def test_covid_counts_only_when_named_plainly(name, label):
    # "Pre-COVID" holds pre-pandemic controls: read as covid, a whole control folder would be mislabelled
    from keras_covidcxr.data.vocabulary import normalize_label

    assert normalize_label(name) == label
