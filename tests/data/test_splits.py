"""Patient-level splits: disjoint by patient, stratified by label and source, seeded, one split across tasks."""

from collections import Counter, defaultdict

import numpy as np
import pytest

from keras_covidcxr import ConfigError
from keras_covidcxr.data import (
    Manifest,
    ManifestRow,
    describe_splits,
    group_kfold,
    patient_strata,
    split_by_patient,
)


def synthetic_manifest(n_patients=300, seed=0):
    """Patients with 1-4 cls films (labels ~ 50/30/20%), a third also with seg films, some seg-only."""
    rng = np.random.default_rng(seed)
    rows = []
    for patient in range(n_patients):
        label = rng.choice(["covid", "normal", "pneumonia"], p=[0.5, 0.3, 0.2])
        pid = f"p{patient}"
        if patient % 10 != 9:
            rows += [
                ManifestRow(f"cls/{pid}_{i}.png", "cls", pid, label=str(label))
                for i in range(rng.integers(1, 5))
            ]
        if patient % 3 == 0:
            rows.append(ManifestRow(f"seg/{pid}.png", "seg", pid, mask_path=f"masks/{pid}.png"))
    return Manifest(rows, "/data")


def splits_of_patients(manifest):
    splits = defaultdict(set)
    for row in manifest:
        splits[row.patient_id].add(row.split)
    return splits


def test_every_patient_in_exactly_one_split_across_tasks():
    split = split_by_patient(synthetic_manifest(), seed=3)
    assert all(row.split in ("train", "val", "test") for row in split)
    assert all(len(s) == 1 for s in splits_of_patients(split).values())
    assert len(split) == len(synthetic_manifest())


def test_fractions_and_label_mix_are_kept_within_tolerance():
    manifest = synthetic_manifest(n_patients=600)
    split = split_by_patient(manifest, fractions=(0.8, 0.1, 0.1), seed=0)
    images = Counter(row.split for row in split)
    total = sum(images.values())
    for name, share in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
        assert abs(images[name] / total - share) < 0.02
    overall = Counter(row.label for row in split if row.task == "cls")
    n_cls = sum(overall.values())
    for name in ("train", "val", "test"):
        part = Counter(row.label for row in split if row.task == "cls" and row.split == name)
        for label, count in overall.items():
            assert abs(part[label] / sum(part.values()) - count / n_cls) < 0.04, (name, label)


def test_seeded_and_reproducible():
    manifest = synthetic_manifest()
    first = [row.split for row in split_by_patient(manifest, seed=7)]
    assert first == [row.split for row in split_by_patient(manifest, seed=7)]
    assert first != [row.split for row in split_by_patient(manifest, seed=8)]


def test_linked_patients_stay_together():
    manifest = synthetic_manifest()
    links = [("p1", "p2", "p3"), ("p10", "p200")]
    for seed in range(5):
        splits = splits_of_patients(split_by_patient(manifest, seed=seed, linked_patients=links))
        assert splits["p1"] == splits["p2"] == splits["p3"]
        assert splits["p10"] == splits["p200"]


def test_patient_strata_majority_then_first_label_and_seg_only():
    rows = [
        ManifestRow("a", "cls", "x", label="normal"),
        ManifestRow("b", "cls", "x", label="covid"),
        ManifestRow("c", "cls", "x", label="covid"),
        ManifestRow("d", "cls", "y", label="pneumonia"),
        ManifestRow("e", "cls", "y", label="normal"),
        ManifestRow("f", "seg", "z", mask_path="m"),
    ]
    assert patient_strata(Manifest(rows)) == {"x": "covid", "y": "pneumonia", "z": "(seg only)"}


def merged_manifest():
    """Two collections, as after `data merge`: "archive" has 60 patients with 5 COVID-19 films each,
    "registry" 600 patients with one film each (COVID-19 or normal)."""
    rows = [ManifestRow(f"a/{p}_{i}.png", "cls", f"a{p}", label="covid", source="archive")
            for p in range(60) for i in range(5)]
    rows += [ManifestRow(f"r/{p}.png", "cls", f"r{p}", label=("covid", "normal")[p % 2], source="registry")
             for p in range(600)]
    return Manifest(rows, "/data")


def test_every_collection_keeps_its_share_of_every_split():
    for seed in range(3):
        split = split_by_patient(merged_manifest(), seed=seed)
        archive = Counter(row.split for row in split if row.source == "archive")
        assert archive["val"] >= 20 and archive["test"] >= 20  # 10% of its 300 films, give or take a patient
    legacy = split_by_patient(merged_manifest(), seed=0, stratify_by=("label",))
    archive = Counter(row.split for row in legacy if row.source == "archive")
    assert archive["val"] + archive["test"] <= 10  # by label alone the many-film patients all went to train


def test_patient_strata_by_label_and_another_field():
    rows = [
        ManifestRow("a", "cls", "x", label="covid", source="s1"),
        ManifestRow("b", "seg", "x", mask_path="m", source="s1"),
        ManifestRow("c", "cls", "y", label="normal"),
        ManifestRow("d", "seg", "z", mask_path="m", source="s2"),
    ]
    assert patient_strata(Manifest(rows), by=("label", "source")) == {
        "x": "covid/s1", "y": "normal/unknown", "z": "(seg only)/s2"
    }
    with pytest.raises(ConfigError, match="cannot stratify by 'hospital'"):
        patient_strata(Manifest(rows), by=("label", "hospital"))


@pytest.mark.parametrize("fractions", [(0.8, 0.2), (0.5, 0.5, 0.5), (1.2, -0.1, -0.1)])
def test_bad_fractions_raise(fractions):
    with pytest.raises(ConfigError, match="fractions"):
        split_by_patient(synthetic_manifest(20), fractions=fractions)


def test_describe_splits_counts_images_and_patients():
    rows = [
        ManifestRow("a", "cls", "x", label="covid", split="train"),
        ManifestRow("b", "cls", "x", label="covid", split="train"),
        ManifestRow("c", "seg", "y", mask_path="m", split="test"),
    ]
    assert describe_splits(Manifest(rows)) == (
        "train: 2 images, 1 patients (cls:covid 2)\ntest: 1 images, 1 patients (seg:- 1)"
    )


def test_group_kfold_is_patient_disjoint_and_stratified():
    manifest = synthetic_manifest(n_patients=200)
    folds = group_kfold(manifest, k=5, seed=1)
    assert len(folds) == 5
    seen_test = []
    for fold in folds:
        train_patients = {row.patient_id for row in fold.train}
        test_patients = {row.patient_id for row in fold.test}
        assert not train_patients & test_patients
        assert len(fold.train) + len(fold.test) == len(manifest)
        assert {row.label for row in fold.test if row.task == "cls"} == {"covid", "normal", "pneumonia"}
        seen_test += [row.path for row in fold.test]
    assert sorted(seen_test) == sorted(row.path for row in manifest)


def test_group_kfold_needs_enough_patients():
    with pytest.raises(ConfigError, match="fewer than the folds"):
        group_kfold(synthetic_manifest(3), k=5)


def test_patients_whose_rows_name_one_file_stay_together(tmp_path):
    """Two builders' ids for one film (a seg row and a cls row), or one file spelled two ways."""
    for name in ("film.png", "other.png"):
        (tmp_path / name).write_bytes(b"x")
    base = synthetic_manifest(n_patients=60).rows
    rows = [row.replace(path=f"cls/{row.patient_id}.png") for row in base if row.task == "cls"]
    rows += [ManifestRow("film.png", "seg", "v7labs:film", mask_path="m.png"),
             ManifestRow("film.png", "cls", "ieee8023:1", label="covid"),
             ManifestRow("other.png", "cls", "a", label="normal"),
             ManifestRow("./other.png", "seg", "b", mask_path="m2.png")]
    manifest = Manifest(rows, tmp_path)
    for seed in range(8):
        split = splits_of_patients(split_by_patient(manifest, seed=seed))
        assert split["v7labs:film"] == split["ieee8023:1"] and split["a"] == split["b"], seed
        for fold in group_kfold(manifest, k=5, seed=seed):
            tested = {row.patient_id for row in fold.test}
            assert ("v7labs:film" in tested) == ("ieee8023:1" in tested) and ("a" in tested) == ("b" in tested)


def test_group_kfold_keeps_linked_patients_together():
    manifest = synthetic_manifest(n_patients=100)
    linked = [("p0", "p1", "p2"), ("p10", "p55")]
    for seed in range(5):
        for fold in group_kfold(manifest, k=5, seed=seed, linked_patients=linked):
            tested = {row.patient_id for row in fold.test}
            assert all(len(tested & set(group)) in (0, len(group)) for group in linked), seed
    with pytest.raises(ConfigError, match="only 1 groups of linked patients"):
        group_kfold(synthetic_manifest(6), k=5, linked_patients=[tuple(f"p{i}" for i in range(6))])


def test_training_refuses_one_file_in_train_and_val_under_another_spelling(tmp_path):
    from keras_covidcxr.data import DatasetError
    from keras_covidcxr.data.splits import refuse_shared_patients

    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(b"x")
    rows = [ManifestRow("img/a.png", "cls", "p1", label="covid", split="train"),
            ManifestRow(str(tmp_path / "img" / "a.png"), "cls", "p2", label="covid", split="val")]
    manifest = Manifest(rows, tmp_path)
    with pytest.raises(DatasetError, match=r"image files in both the 'train' and 'val' splits.*img/a.png"):
        refuse_shared_patients({split: manifest.split_rows("cls", split) for split in ("train", "val")})


def test_ids_differing_only_in_letter_case_are_one_patient():
    from keras_covidcxr.data import DatasetError
    from keras_covidcxr.data.splits import refuse_shared_patients

    rows = [row.replace(patient_id=row.patient_id.upper()) if i % 2 else row
            for i, row in enumerate(synthetic_manifest(n_patients=100))]  # "p3" and "P3" for one person
    manifest = Manifest(rows, "/data")
    for seed in range(4):
        split = splits_of_patients(split_by_patient(manifest, seed=seed))
        assert all(split[p] == split[p.upper()] for p in split if p.islower() and p.upper() in split), seed
        for fold in group_kfold(manifest, k=5, seed=seed):
            tested = {row.patient_id.casefold() for row in fold.test}
            assert not tested & {row.patient_id.casefold() for row in fold.train}, seed
    leak = {"train": [ManifestRow("a.png", "cls", "nih:1")], "val": [ManifestRow("b.png", "cls", "NIH:1")]}
    with pytest.raises(DatasetError, match="patients in both"):
        refuse_shared_patients(leak)


def test_keep_existing_keeps_every_earlier_split_and_places_the_new_rows():
    from keras_covidcxr.data import DatasetError

    first = split_by_patient(synthetic_manifest(n_patients=200), seed=0)
    grown = synthetic_manifest(n_patients=300, seed=1).rows[-150:]  # new patients (ids p2xx) and films
    old_test = next(row for row in first if row.split == "test" and row.task == "cls")
    grown.append(old_test.replace(path="cls/a_new_film.png", split=None))  # a new film of an earlier test patient
    grown = [row.replace(patient_id=f"new{row.patient_id}") for row in grown[:-1]] + grown[-1:]
    manifest = Manifest([*first.rows, *grown], "/data")

    kept = split_by_patient(manifest, seed=5, keep_existing=True)
    assert [row.split for row in kept][:len(first)] == [row.split for row in first]
    assert next(row.split for row in kept if row.path == "cls/a_new_film.png") == "test"
    shares = Counter(row.split for row in kept)
    assert abs(shares["train"] / len(kept) - 0.8) < 0.03
    assert [row.split for row in split_by_patient(manifest, seed=5)][:len(first)] != [row.split for row in first]

    torn = Manifest([ManifestRow("a.png", "cls", "p1", label="covid", split="train"),
                     ManifestRow("b.png", "cls", "p1", label="covid", split="test")], "/data")
    with pytest.raises(DatasetError, match="already in several splits.*p1 in train, p1 in test"):
        split_by_patient(torn, keep_existing=True)
