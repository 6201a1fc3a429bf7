"""The audit catches each planted problem, names the file and patient, and passes a clean manifest."""

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from keras_covidcxr import ConfigError
from keras_covidcxr.data import (
    AUDIT_CHECKS,
    MAX_HASH_DISTANCE,
    Manifest,
    ManifestRow,
    audit_manifest,
    exclude_refused,
    find_near_duplicates,
    perceptual_hash,
    split_by_patient,
    thumbnail_fingerprint,
)
from keras_covidcxr.data.near_duplicates import hash_distances


def test_clean_manifest_passes(clean_manifest):
    calls = []
    report = audit_manifest(clean_manifest, progress=lambda done, total: calls.append((done, total)))
    assert report.passed, report.summary()
    assert report.findings == []
    assert calls[-1] == (24, 24) and len(calls) == 24
    assert report.summary().startswith("Audit PASSED: 0 errors, 0 warnings in 24 rows (12 patients")


@pytest.fixture
def planted(tmp_path, chest_like, write_png):
    """One manifest with one instance of every problem, plus clean rows around them."""

    def png(name, seed, height=288, width=272):
        return write_png(tmp_path / name, chest_like(seed, height, width)).name

    original = chest_like(7)
    write_png(tmp_path / "reupload_original.png", original)
    # the same picture re-uploaded: slightly smaller and re-encoded as JPEG, under another name
    smaller = Image.fromarray(original).resize((260, 275), Image.Resampling.LANCZOS)
    smaller.save(tmp_path / "reupload_copy.jpg", quality=80)

    rows = [
        ManifestRow(png("clean_a.png", 1), "cls", "clean1", label="covid", view="PA", age=50, split="train"),
        ManifestRow(png("clean_b.png", 2), "cls", "clean2", label="normal", view="AP", split="test"),
        # a film used for cls and seg by the same patient in one split is fine
        ManifestRow(png("both_tasks.png", 3), "cls", "clean3", label="covid", split="val"),
        ManifestRow("both_tasks.png", "seg", "clean3", mask_path=png("both_tasks_mask.png", 4), split="val"),
        # planted problems
        ManifestRow(png("shared_1.png", 10), "cls", "P-shared", label="covid", split="train"),
        ManifestRow(png("shared_2.png", 11), "cls", "P-shared", label="covid", split="test"),
        ManifestRow("reupload_original.png", "cls", "P-orig", label="pneumonia", split="train"),
        ManifestRow("reupload_copy.jpg", "cls", "P-copy", label="pneumonia", split="test"),
        ManifestRow(png("child.png", 12), "cls", "P-child", label="normal", age=9, split="train"),
        ManifestRow(png("lateral.png", 13), "cls", "P-lateral", label="covid", view="L", split="val"),
        ManifestRow(png("small.png", 14, 200, 300), "cls", "P-small", label="covid", split="train"),
        ManifestRow("missing.png", "cls", "P-missing", label="covid", split="test"),
        ManifestRow(
            png("seg_image.png", 15),
            "seg",
            "P-mask",
            mask_path=png("seg_mask.png", 16, 100, 100),
            split="train",
        ),
        ManifestRow(png("no_mask.png", 17), "seg", "P-nomask", mask_path="absent_mask.png", split="train"),
    ]
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    rows.append(ManifestRow("broken.png", "cls", "P-broken", label="covid", split="train"))
    return Manifest(rows, root=tmp_path)


EXPECTED = {
    "patient_in_several_splits": ["P-shared"],
    "near_duplicate_across_splits": ["P-orig", "P-copy"],
    "pediatric": ["P-child"],
    "lateral_view": ["P-lateral"],
    "image_too_small": ["P-small"],
    "missing_file": ["P-missing", "P-nomask"],
    "unreadable_file": ["P-broken"],
    "mask_size_mismatch": ["P-mask"],
}


def test_each_planted_problem_is_caught_and_named(planted):
    report = audit_manifest(planted)
    assert not report.passed
    counts = report.counts()
    for check, patients in EXPECTED.items():
        found = [f for f in report.findings if f.check == check]
        assert sorted(p for f in found for p in f.patient_ids) == sorted(patients), check
        assert counts[check] == len(found)
    assert counts["same_picture_several_patients"] == 0 and counts["no_split"] == 0
    assert {f.check for f in report.errors} == set(EXPECTED)
    summary = report.summary()
    for name in (
        "shared_1.png",
        "shared_2.png",
        "reupload_copy.jpg",
        "child.png",
        "lateral.png",
        "small.png",
        "missing.png",
        "absent_mask.png",
        "broken.png",
        "seg_mask.png",
    ):
        assert name in summary
    for patients in EXPECTED.values():
        assert all(patient in summary for patient in patients)
    assert "both_tasks.png" not in summary  # one file, one patient, one split: no finding
    assert "300x200 px" in summary


def test_allow_pediatric_min_size_and_no_images(planted):
    report = audit_manifest(planted, allow_pediatric=True, min_size=100)
    assert report.counts()["pediatric"] == 0 and report.counts()["image_too_small"] == 0
    quick = audit_manifest(planted, check_images=False)
    counts = quick.counts()
    assert counts["missing_file"] == 2 and counts["near_duplicate_across_splits"] == 0
    assert counts["image_too_small"] == 0 and counts["patient_in_several_splits"] == 1


def test_same_picture_in_one_split_is_a_warning_and_links_patients(planted):
    rows = [row.replace(split="train") if row.patient_id in ("P-orig", "P-copy") else row for row in planted]
    manifest = planted.with_rows(rows)
    report = audit_manifest(manifest)
    warning = [f for f in report.warnings if f.check == "same_picture_several_patients"]
    assert len(warning) == 1 and set(warning[0].patient_ids) == {"P-orig", "P-copy"}
    groups = find_near_duplicates(manifest)
    assert [set(g.patient_ids) for g in groups] == [{"P-orig", "P-copy"}]
    assert groups[0].min_similarity >= 0.97


def test_splitting_with_linked_duplicates_passes_the_duplicate_check(tmp_path, chest_like, write_png):
    rows = []
    for patient in range(30):
        write_png(tmp_path / f"p{patient}.png", chest_like(patient))
        rows.append(
            ManifestRow(f"p{patient}.png", "cls", f"p{patient}", label=("covid", "normal")[patient % 2])
        )
    for copy in range(5):  # patient p0's picture re-uploaded under five new patient ids
        Image.fromarray(chest_like(0)).save(tmp_path / f"copy{copy}.jpg", quality=85)
        rows.append(ManifestRow(f"copy{copy}.jpg", "cls", f"copy{copy}", label="covid"))
    manifest = Manifest(rows, tmp_path)
    links = [g.patient_ids for g in find_near_duplicates(manifest)]
    assert len(links) == 1 and len(links[0]) == 6
    report = audit_manifest(split_by_patient(manifest, linked_patients=links, seed=0))
    assert report.passed, report.summary()


def test_unsplit_rows_are_a_warning(clean_manifest):
    manifest = clean_manifest.with_rows(row.replace(split=None) for row in clean_manifest)
    report = audit_manifest(manifest)
    assert report.passed and [f.check for f in report.warnings] == ["no_split"]


def test_a_manifest_without_rows_fails(clean_manifest):
    report = audit_manifest(clean_manifest.with_rows([]))
    assert not report.passed and [f.check for f in report.errors] == ["no_rows"]


def test_json_report(planted, tmp_path):
    report = audit_manifest(planted)
    path = report.to_json(tmp_path / "out" / "audit.json")
    content = json.loads(path.read_text())
    assert content["passed"] is False
    assert content["counts"]["missing_file"] == 2
    assert set(content["counts"]) == set(AUDIT_CHECKS)
    assert content["settings"]["near_duplicate_threshold"] == 0.97
    assert {tuple(f["patient_ids"]) for f in content["findings"] if f["check"] == "pediatric"} == {
        ("P-child",)
    }
    with pytest.raises(FileExistsError):
        report.to_json(path, overwrite=False)


def test_fingerprint_survives_resize_and_jpeg_but_separates_different_films(chest_like):
    original = chest_like(21, 400, 380)
    buffer = io.BytesIO()
    Image.fromarray(original).resize((300, 320)).save(buffer, format="JPEG", quality=70)
    copy = np.asarray(Image.open(buffer)) / 255.0
    a, b = thumbnail_fingerprint(original / 255.0), thumbnail_fingerprint(copy)
    assert float(a @ b / 256) > 0.99
    others = [thumbnail_fingerprint(chest_like(seed) / 255.0) for seed in range(30, 60)]
    assert max(float(a @ other / 256) for other in others) < 0.97
    assert not thumbnail_fingerprint(np.full((50, 50), 0.5)).any()  # flat image: no false matches
    films = [original / 255.0, copy, chest_like(30) / 255.0, chest_like(31) / 255.0]
    hashes = np.stack([perceptual_hash(film) for film in films])
    assert hashes.shape == (4, 64) and hashes.dtype == bool
    distances = hash_distances(hashes, hashes)
    assert distances[0, 1] <= MAX_HASH_DISTANCE < distances[0, 2]
    assert distances[0, 2] == np.sum(hashes[0] != hashes[2]) and np.all(np.diag(distances) == 0)


def test_a_pair_needs_both_the_hash_and_the_correlation(chest_like):
    from keras_covidcxr.data.near_duplicates import similar_pairs

    fingerprints = np.stack([thumbnail_fingerprint(chest_like(seed) / 255.0) for seed in (1, 1, 2)])
    far, near = np.zeros(64, bool), np.zeros(64, bool)
    far[:32] = True  # 32 bits away from `near`
    assert [(i, j) for i, j, _ in similar_pairs(fingerprints)] == [(0, 1)]
    assert similar_pairs(fingerprints, hashes=np.stack([near, far, near])) == []
    assert [(i, j) for i, j, _ in similar_pairs(fingerprints, hashes=np.stack([near, near, far]))] == [(0, 1)]


def test_one_file_in_two_rows_of_a_task_is_an_error_under_any_spelling(tmp_path, chest_like, write_png):
    write_png(tmp_path / "film.png", chest_like(1))
    write_png(tmp_path / "other.png", chest_like(2))
    (tmp_path / "link.png").symlink_to("film.png")
    os.link(tmp_path / "other.png", tmp_path / "hard.png")
    rows = [
        ManifestRow("film.png", "cls", "P1", label="covid", split="train"),
        ManifestRow("link.png", "cls", "P1", label="covid", split="train"),  # a symlink: the same film
        ManifestRow("other.png", "cls", "P2", label="normal", split="train"),
        ManifestRow("hard.png", "cls", "P2", label="normal", split="train"),  # a hard link: the same film
        ManifestRow("film.png", "seg", "P1", mask_path="other.png", split="train"),  # another task: fine
    ]
    report = audit_manifest(Manifest(rows, root=tmp_path), check_images=False)
    found = [f for f in report.errors if f.check == "file_listed_twice"]
    assert sorted(f.paths for f in found) == [("film.png", "link.png"), ("other.png", "hard.png")]
    assert "one file in 2 cls rows: film.png (patient P1, covid, train); link.png" in found[0].message
    assert not report.passed
    unique = Manifest([rows[0], rows[2], rows[4]], root=tmp_path)
    assert audit_manifest(unique, check_images=False).counts()["file_listed_twice"] == 0


def test_one_file_in_two_splits_or_under_two_patients_is_found_under_any_spelling(tmp_path, chest_like, write_png):
    write_png(tmp_path / "film.png", chest_like(1))
    write_png(tmp_path / "mask.png", chest_like(2))
    write_png(tmp_path / "other.png", chest_like(3))
    rows = [ManifestRow("film.png", "seg", "v7labs:film", mask_path="mask.png", split="train"),
            ManifestRow("./film.png", "cls", "ieee8023:1", label="covid", split="val"),
            ManifestRow("other.png", "cls", "a", label="normal", split="test"),
            ManifestRow(str(tmp_path / "other.png"), "seg", "b", mask_path="mask.png", split="test")]
    for check_images in (True, False):
        report = audit_manifest(Manifest(rows, tmp_path), check_images=check_images)
        across = [f for f in report.findings if f.check == "near_duplicate_across_splits"]
        assert [f.patient_ids for f in across] == [("v7labs:film", "ieee8023:1")], report.summary()
        assert "one file in train, val" in across[0].message
        one_split = [f for f in report.findings if f.check == "same_picture_several_patients"]
        assert [f.patient_ids for f in one_split] == [("a", "b")] and one_split[0].severity == "warning"
    one_patient = [rows[0], rows[1].replace(patient_id="v7labs:film")]  # one patient's film in two splits
    counts = audit_manifest(Manifest(one_patient, tmp_path)).counts()
    assert counts["patient_in_several_splits"] == 1 and counts["near_duplicate_across_splits"] == 0  # once


def test_a_childs_films_without_an_age_are_a_childs_too(tmp_path, chest_like, write_png):
    for name, seed in (("young.png", 1), ("later.png", 2), ("grown_up.png", 3), ("other_id.png", 4),
                       ("adult.png", 5)):
        write_png(tmp_path / name, chest_like(seed))
    write_png(tmp_path / "mask.png", chest_like(6))
    rows = [ManifestRow("young.png", "cls", "kid", label="normal", age=12, split="train"),
            ManifestRow("later.png", "cls", "kid", label="normal", split="train"),
            ManifestRow("grown_up.png", "cls", "kid", label="normal", age=30, split="train"),  # adult by its age
            # the child's film under another builder's id, and that id's other film
            ManifestRow("young.png", "seg", "kid_v7", mask_path="mask.png", split="train"),
            ManifestRow("other_id.png", "cls", "kid_v7", label="normal", split="train"),
            ManifestRow("adult.png", "cls", "grown", label="normal", age=40, split="train")]
    manifest = Manifest(rows, tmp_path)
    found = [f.message for f in audit_manifest(manifest).findings if f.check == "pediatric"]
    assert found == ["young.png (patient kid): age 12", "later.png (patient kid): age 12 in another row",
                     "young.png (patient kid_v7): age 12 in another row",
                     "other_id.png (patient kid_v7): age 12 in another row"]
    kept, dropped = exclude_refused(manifest)
    assert [row.path for row in kept] == ["grown_up.png", "adult.png"] and len(dropped["pediatric"]) == 4


def test_excluding_a_bad_mask_keeps_its_films_classification_row(tmp_path, chest_like, write_png):
    write_png(tmp_path / "film.png", chest_like(1))
    write_png(tmp_path / "small_mask.png", chest_like(2, 100, 100))
    write_png(tmp_path / "small.png", chest_like(3, 200, 300))
    write_png(tmp_path / "fits.png", chest_like(4, 100, 100))
    rows = [ManifestRow("film.png", "seg", "p1", mask_path="small_mask.png"),
            ManifestRow("film.png", "cls", "p1", label="covid"),
            ManifestRow("small.png", "cls", "p2", label="normal"),
            ManifestRow(str(tmp_path / "small.png"), "seg", "p2", mask_path="small_mask.png"),
            ManifestRow("fits.png", "seg", "p3", mask_path="small_mask.png")]  # the mask is this film's
    kept, dropped = exclude_refused(Manifest(rows, tmp_path), min_size=100)
    assert [(row.path, row.task) for row in kept] == [("film.png", "cls"), ("small.png", "cls"), ("fits.png", "seg")]
    kept, dropped = exclude_refused(Manifest(rows, tmp_path))
    assert [(row.path, row.task) for row in kept] == [("film.png", "cls")]  # both spellings of small.png go
    assert set(dropped) == {"mask_size_mismatch", "image_too_small"}


def test_a_stricter_hash_distance_catches_a_cropped_copy(tmp_path, chest_like, write_png):
    original = chest_like(7, 400, 380)
    write_png(tmp_path / "original.png", original)
    write_png(tmp_path / "cropped.png", original[20:-20, 19:-19])  # a 5% crop
    rows = [ManifestRow("original.png", "cls", "p1", label="covid", split="train"),
            ManifestRow("cropped.png", "cls", "p2", label="covid", split="test")]
    manifest = Manifest(rows, tmp_path)
    assert audit_manifest(manifest).passed
    strict = audit_manifest(manifest, near_duplicate_threshold=0.85, max_hash_distance=14)
    assert strict.counts()["near_duplicate_across_splits"] == 1 and strict.settings["max_hash_distance"] == 14
    for wrong in (65, None, 2.5):
        with pytest.raises(ConfigError, match=f"max_hash_distance={wrong}"):
            audit_manifest(manifest, max_hash_distance=wrong)


def test_ids_differing_only_in_letter_case_are_one_patient_in_two_splits(tmp_path, chest_like, write_png):
    for i in range(2):
        write_png(tmp_path / f"f{i}.png", chest_like(i))
    rows = [ManifestRow("f0.png", "cls", "nih:10012", label="normal", split="train"),
            ManifestRow("f1.png", "cls", "NIH:10012", label="normal", split="val")]
    report = audit_manifest(Manifest(rows, tmp_path), min_size=0)
    assert not report.passed and report.counts()["patient_in_several_splits"] == 1
    finding = report.errors[0]
    assert finding.patient_ids == ("nih:10012", "NIH:10012")
    assert "nih:10012 / NIH:10012 (one id in different letter case) is in train, val" in finding.message
    assert "  what to do: split again with `covidcxr data split`" in report.summary()


def test_exclude_refused_keeps_the_first_row_of_a_file_listed_twice(tmp_path, chest_like, write_png):
    write_png(tmp_path / "film.png", chest_like(1))
    write_png(tmp_path / "other.png", chest_like(2))
    rows = [ManifestRow("film.png", "cls", "p1", label="covid"),
            ManifestRow(str(tmp_path / "film.png"), "cls", "p1", label="covid"),  # the same file, spelt absolute
            ManifestRow("film.png", "seg", "p1", mask_path="other.png"),  # another task: not a second listing
            ManifestRow("other.png", "cls", "p2", label="normal")]
    manifest = Manifest(rows, tmp_path)
    assert audit_manifest(manifest, min_size=0).counts()["file_listed_twice"] == 1
    kept, dropped = exclude_refused(manifest, min_size=0)
    assert [row.path for row in kept] == ["film.png", "film.png", "other.png"]
    assert list(dropped) == ["file_listed_twice"]
    assert audit_manifest(kept, min_size=0).passed
