"""Manifest CSV: schema validation with file:line errors, round trips, filter and resolve."""

import pytest

from keras_covidcxr.data import DatasetError, Manifest, ManifestRow, read_manifest, write_manifest

HEADER = "path,task,label,mask_path,patient_id,view,age,sex,source,split\n"


def write_csv(folder, text, name="manifest.csv"):
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_valid_rows_and_defaults(tmp_path):
    path = write_csv(
        tmp_path,
        HEADER + "img/a.png,cls,covid,,p1,PA,54,F,ieee8023,train\n" + "img/b.png,seg,,masks/b.png,p2,,,,,\n",
    )
    manifest = read_manifest(path)
    first, second = manifest.rows
    assert (first.label, first.view, first.age, first.sex, first.split) == ("covid", "PA", 54.0, "F", "train")
    assert (second.label, second.view, second.age, second.split) == (None, "unknown", None, None)
    assert manifest.resolve(first) == tmp_path / "img/a.png"
    assert manifest.resolve_mask(second) == tmp_path / "masks/b.png"
    assert manifest.patient_ids() == ["p1", "p2"]


def test_only_path_task_patient_id_are_required(tmp_path):
    path = write_csv(tmp_path, "path,task,label,patient_id,extra_note\na.png,cls,normal,p1,hello\n")
    row = read_manifest(path)[0]
    assert row.extra == {"extra_note": "hello"}


def test_missing_required_column_names_file_and_line(tmp_path):
    path = write_csv(tmp_path, "path,task,label\na.png,cls,covid\n")
    with pytest.raises(DatasetError, match=r"manifest\.csv:1: missing required column\(s\) patient_id$"):
        read_manifest(path)
    path = write_csv(tmp_path, "path;task;label;patient_id\na.png;cls;covid;p1\n")  # a spreadsheet's export
    with pytest.raises(DatasetError, match="header is separated by semicolons: save it with commas"):
        read_manifest(path)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("a.png,cls,cat,,p1,PA,,,,", "label 'cat' is not one of covid, normal, pneumonia"),
        ("a.png,cls,,,p1,PA,,,,", "a cls row needs a label"),
        ("a.png,seg,,,p1,PA,,,,", "a seg row needs a mask_path"),
        ("a.png,det,covid,,p1,PA,,,,", "task 'det' is not one of cls, seg"),
        ("a.png,cls,covid,,,PA,,,,", "patient_id is empty"),
        ("a.png,cls,covid,,p1,oblique,,,,", "view 'oblique' is not one of"),
        ("a.png,cls,covid,,p1,PA,old,,,", "age 'old' is not a number"),
        ("a.png,cls,covid,,p1,PA,-3,,,", "age -3.0 is not a number of years"),
        ("a.png,cls,covid,,p1,PA,,X,,", "sex 'X' is not one of M, F"),
        ("a.png,cls,covid,,p1,PA,,,,holdout", "split 'holdout' is not one of train, val, test"),
        ("a.png,cls,covid,,p1,PA,,,,,surplus", "more fields than columns"),
    ],
)
def test_bad_values_name_file_line_and_reason(tmp_path, line, reason):
    path = write_csv(tmp_path, HEADER + "ok.png,cls,normal,,p0,PA,,,,\n" + line + "\n")
    with pytest.raises(DatasetError) as caught:
        read_manifest(path)
    assert f"{path}:3: " in str(caught.value)
    assert reason in str(caught.value)


def test_every_bad_row_is_collected(tmp_path):
    bad = "".join(f"x{i}.png,cls,cat,,p{i},PA,,,,\n" for i in range(8))
    with pytest.raises(DatasetError) as caught:
        read_manifest(write_csv(tmp_path, HEADER + bad))
    assert len(caught.value.problems) == 8
    assert "(and 3 more problems)" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_repeated_path_for_one_task_is_rejected_but_seg_and_cls_may_share(tmp_path):
    shared = HEADER + "a.png,cls,covid,,p1,PA,,,,\na.png,seg,covid,m.png,p1,PA,,,,\n"
    assert len(read_manifest(write_csv(tmp_path, shared))) == 2
    repeated = HEADER + "a.png,cls,covid,,p1,PA,,,,\na.png,cls,covid,,p1,PA,,,,\n"
    with pytest.raises(DatasetError, match=r":3: cls row for a.png repeats line 2"):
        read_manifest(write_csv(tmp_path, repeated, "repeated.csv"))
    respelled = HEADER + "a.png,cls,covid,,p1,PA,,,,\n./a.png,cls,normal,,p2,PA,,,,\n"
    with pytest.raises(DatasetError, match=r":3: cls row for ./a.png repeats line 2"):
        read_manifest(write_csv(tmp_path, respelled, "respelled.csv"))


def test_a_repeated_column_name_is_refused_not_read_as_its_last_column(tmp_path):
    text = "path,task,label,patient_id,label\na.png,cls,covid,p1,normal\n"
    with pytest.raises(DatasetError, match=r"twice.csv:1: column\(s\) label appear more than once"):
        read_manifest(write_csv(tmp_path, text, "twice.csv"))


def test_missing_file_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="nope.csv: cannot read the manifest"):
        read_manifest(tmp_path / "nope.csv")


def test_round_trip_rebases_paths_and_keeps_extra_columns(tmp_path):
    rows = [
        ManifestRow(
            "img/a.png",
            "cls",
            "p1",
            label="covid",
            view="AP Supine",
            age=61.5,
            sex="M",
            source="bimcv",
            split="test",
            extra={"license": "CC BY 4.0"},
        ),
        ManifestRow("img/b.png", "seg", "p2", mask_path="masks/b.png", age=30.0),
    ]
    original = Manifest(rows, root=tmp_path / "data")
    out = write_manifest(original, tmp_path / "elsewhere" / "m.csv")
    text = out.read_text()
    assert f"{(tmp_path / 'data/img/a.png').as_posix()}," in text and ",30," in text and "61.5" in text
    assert "../" not in text
    back = read_manifest(out)
    assert [back.resolve(r) for r in back] == [original.resolve(r) for r in original]
    assert back.resolve_mask(back[1]) == tmp_path / "data" / "masks/b.png"
    assert back[0].extra == {"license": "CC BY 4.0"}
    assert [(r.label, r.view, r.age, r.sex, r.source, r.split) for r in back] == [
        (r.label, r.view, r.age, r.sex, r.source, r.split) for r in rows
    ]


def test_paths_below_the_csv_folder_are_relative_and_the_others_absolute(tmp_path):
    rows = [
        ManifestRow("data/img/a.png", "cls", "p1", label="covid"),
        ManifestRow("data/img/b.png", "seg", "p2", mask_path="masks/b.png"),
        ManifestRow("elsewhere/c.png", "cls", "p3", label="normal"),
    ]
    manifest = Manifest(rows, root=tmp_path)
    out = write_manifest(manifest, tmp_path / "data" / "m.csv")
    back = read_manifest(out)
    assert [row.path for row in back] == [
        "img/a.png",
        "img/b.png",
        (tmp_path / "elsewhere/c.png").as_posix(),
    ]
    assert back[1].mask_path == (tmp_path / "masks/b.png").as_posix()
    assert [back.resolve(row) for row in back] == [manifest.resolve(row) for row in manifest]
    assert back.resolve_mask(back[1]) == tmp_path / "masks/b.png"


def test_old_manifests_with_climbing_paths_still_resolve_and_are_rewritten_absolute(tmp_path):
    (tmp_path / "runs" / "data").mkdir(parents=True)
    old = write_csv(tmp_path / "runs" / "data", HEADER + "../../images/a.png,cls,covid,,p1,,,,,\n")
    manifest = read_manifest(old)
    assert manifest.resolve(manifest[0]) == tmp_path / "images/a.png"
    moved = read_manifest(write_manifest(manifest, tmp_path / "m.csv"))
    assert moved[0].path == "images/a.png" and moved.resolve(moved[0]) == tmp_path / "images/a.png"
    kept = read_manifest(write_manifest(manifest, tmp_path / "runs" / "again.csv"))
    assert kept[0].path == (tmp_path / "images/a.png").as_posix()


def test_write_refuses_invalid_rows_and_existing_file_without_overwrite(tmp_path):
    with pytest.raises(DatasetError, match="a cls row needs a label"):
        write_manifest(Manifest([ManifestRow("a.png", "cls", "p1")], tmp_path), tmp_path / "m.csv")
    assert not (tmp_path / "m.csv").exists()
    good = Manifest([ManifestRow("a.png", "cls", "p1", label="normal")], tmp_path)
    write_manifest(good, tmp_path / "m.csv")
    before = (tmp_path / "m.csv").read_text()
    with pytest.raises(DatasetError, match="already exists"):
        write_manifest(Manifest([], tmp_path), tmp_path / "m.csv", overwrite=False)
    assert (tmp_path / "m.csv").read_text() == before


def test_filter_by_fields_and_sets():
    rows = [
        ManifestRow(f"{i}.png", "cls", f"p{i}", label=label, split=split, view=view)
        for i, (label, split, view) in enumerate(
            [
                ("covid", "train", "PA"),
                ("normal", "test", "AP"),
                ("covid", "test", "PA"),
                ("covid", None, "PA"),
            ]
        )
    ]
    manifest = Manifest(rows, "/data")
    assert [r.path for r in manifest.filter(label="covid", split="test")] == ["2.png"]
    assert [r.path for r in manifest.filter(split=("train", None))] == ["0.png", "3.png"]
    assert [r.path for r in manifest.filter(view="AP")] == ["1.png"]
    with pytest.raises(ValueError, match="unknown manifest field"):
        manifest.filter(colour="red")


def test_a_manifest_is_never_written_over_one_of_its_own_films(tmp_path):
    film = tmp_path / "COVID" / "UPPER.PNG"
    film.parent.mkdir()
    film.write_bytes(b"a film")
    manifest = Manifest([ManifestRow("COVID/UPPER.PNG", "cls", label="covid", patient_id="p1")], root=tmp_path)
    with pytest.raises(DatasetError, match=r"UPPER.PNG: is one of the manifest's own files \(COVID/UPPER.PNG\)"):
        write_manifest(manifest, film, overwrite=True)
    assert film.read_bytes() == b"a film"
