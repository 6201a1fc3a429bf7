"""`covidcxr data build | split | audit` through typer's CliRunner: output files and exit codes 0/1/2."""

import csv
import json
import os

import pytest
from covidcxr_cli.data_commands import data_app
from typer.testing import CliRunner

from keras_covidcxr.data import from_shared_cxr_manifest, read_manifest, write_manifest


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def shared_folder(tmp_path, chest_like, write_png):
    """A folder laid out like the shared curated data: seg pairs and cls images for 20 patients."""
    folder = tmp_path / "cxr"
    lines = ["file,task,label,patient_id,view,age,source_repo,source_path,license"]
    for patient in range(20):
        label = ("covid", "normal", "pneumonia")[patient % 3]
        write_png(folder / f"cls/images/p{patient}.png", chest_like(patient))
        lines.append(f"cls/images/p{patient}.png,cls,{label},ieee8023:{patient},PA,40,repo,x,")
        if patient % 2 == 0:
            write_png(folder / f"seg/images/p{patient}.png", chest_like(patient))
            write_png(folder / f"seg/masks/p{patient}.png", chest_like(patient + 1000))
            lines.append(f"seg/images/p{patient}.png,seg,covid,ieee8023:{patient},PA,40,repo,x,")
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_build_split_audit_happy_path(runner, shared_folder, tmp_path):
    built = tmp_path / "built.csv"
    result = runner.invoke(
        data_app,
        [
            "build",
            "shared-cxr",
            str(shared_folder / "manifest.csv"),
            "--out",
            str(built),
            "--report",
            str(tmp_path / "build.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "shared-cxr: kept 30 images, dropped 0" in result.stdout
    assert len(read_manifest(built)) == 30 and (tmp_path / "build.json").is_file()

    split = tmp_path / "split.csv"
    result = runner.invoke(
        data_app, ["split", str(built), "--out", str(split), "--fractions", "0.6,0.2,0.2", "--seed", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "train:" in result.stdout and "test:" in result.stdout
    with open(split, newline="") as handle:
        rows = list(csv.DictReader(handle))
    splits_per_patient = {}
    for row in rows:
        splits_per_patient.setdefault(row["patient_id"], set()).add(row["split"])
    assert all(len(s) == 1 for s in splits_per_patient.values())
    again = runner.invoke(data_app, ["split", str(built), "--out", str(split)])
    assert again.exit_code == 2 and "already exists; pass --overwrite to replace it" in again.stderr
    assert again.stdout == ""  # refused before the images were read

    result = runner.invoke(data_app, ["audit", str(split), "--json", str(tmp_path / "audit.json")])
    assert result.exit_code == 0, result.output
    assert "Audit PASSED" in result.stdout and (tmp_path / "audit.json").is_file()


def _split_covid_rows(runner, folder, count, fractions, split=None):
    """`data split` of a manifest of `count` covid films, one patient each (with `split` already set)."""
    extra = ",split" if split else ""
    lines = [f"path,task,label,patient_id{extra}"] + [f"{i}.png,cls,covid,p{i}{',' + split if split else ''}"
                                                       for i in range(count)]
    (folder / "m.csv").write_text("\n".join(lines) + "\n")
    result = runner.invoke(data_app, ["split", str(folder / "m.csv"), "--out", str(folder / "s.csv"),
                                      "--no-link-duplicates", "--fractions", fractions])
    assert result.exit_code == 0, result.output
    return result


def test_a_split_too_small_for_its_fractions_says_which_splits_are_empty(runner, tmp_path):
    result = _split_covid_rows(runner, tmp_path, 3, "0.7,0.15,0.15")
    assert "got no patient: 3 patients" in " ".join(result.stderr.split())


def test_a_label_missing_from_a_split_is_named(runner, tmp_path):
    lines = ["path,task,label,patient_id"] + [f"c{i}.png,cls,covid,c{i}" for i in range(40)] + [
        "n0.png,cls,normal,n0", "n1.png,cls,normal,n1"]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    result = runner.invoke(data_app, ["split", str(tmp_path / "m.csv"), "--out", str(tmp_path / "s.csv"),
                                      "--no-link-duplicates"])
    assert result.exit_code == 0, result.output
    message = " ".join(result.stderr.split())
    assert "warning: no normal film in" in message and "covid film" not in message


def test_splitting_a_manifest_that_has_splits_says_so(runner, tmp_path):
    result = _split_covid_rows(runner, tmp_path, 4, "0.5,0.25,0.25", split="test")
    assert "note: 4 of" in result.stderr and "rows already have a split; OUT gets a new one" in " ".join(
        result.stderr.split())
    assert (tmp_path / "m.csv").read_text().count(",test") == 4  # the input is left as it was
    message = " ".join(result.stderr.split())
    assert "warning: 2 rows that were in val or test are now in train" in message and "--keep-existing" in message


def test_keep_existing_leaves_earlier_test_films_in_test(runner, tmp_path):
    lines = ["path,task,label,patient_id,split"] + [f"{i}.png,cls,covid,p{i},test" for i in range(4)] + [
        f"{i}.png,cls,covid,p{i}," for i in range(4, 40)]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    result = runner.invoke(data_app, ["split", str(tmp_path / "m.csv"), "--out", str(tmp_path / "s.csv"),
                                      "--no-link-duplicates", "--keep-existing"])
    assert result.exit_code == 0, result.output
    split = {row.path: row.split for row in read_manifest(tmp_path / "s.csv")}
    assert [split[f"{i}.png"] for i in range(4)] == ["test"] * 4 and "now in train" not in result.stderr
    assert list(split.values()).count("test") == 4  # the test share is full already: no new film goes there


def test_split_says_which_patient_ids_it_reads_as_one(runner, tmp_path):
    lines = ["path,task,label,patient_id", "a.png,cls,covid,nih:1", "b.png,cls,covid,NIH:1"] + [
        f"n{i}.png,cls,normal,nan" for i in range(3)] + [f"c{i}.png,cls,covid,c{i}" for i in range(10)]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    result = runner.invoke(data_app, ["split", str(tmp_path / "m.csv"), "--out", str(tmp_path / "s.csv"),
                                      "--no-link-duplicates"])
    assert result.exit_code == 0, result.output
    message = " ".join(result.stderr.split())
    assert "1 patient ids differ from another only in letter case (e.g. nih:1 and NIH:1)" in message
    assert "3 rows have the patient id 'nan', a placeholder" in message
    split = {row.path: row.split for row in read_manifest(tmp_path / "s.csv")}
    assert split["a.png"] == split["b.png"]


def test_split_says_which_images_it_could_not_read(runner, tmp_path, chest_like, write_png):
    lines = ["path,task,label,patient_id"] + [f"{i}.png,cls,covid,p{i}" for i in range(6)]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    args = ["split", str(tmp_path / "m.csv"), "--out", str(tmp_path / "s.csv")]
    nothing = runner.invoke(data_app, args)
    assert nothing.exit_code == 2 and not (tmp_path / "s.csv").exists()
    assert "none of its 6 images could be read (e.g. 0.png: no such file" in " ".join(nothing.output.split())
    for i in range(4):
        write_png(tmp_path / f"{i}.png", chest_like(i))
    some = runner.invoke(data_app, args)
    assert some.exit_code == 0, some.output
    assert "warning: 2 of 6 images could not be read and were not compared" in " ".join(some.stderr.split())
    bad = runner.invoke(data_app, [*args, "--overwrite", "--fractions", "0.8,0.1,0.2"])
    assert bad.exit_code == 2 and "summing to 1" in bad.output and "could not be read" not in bad.output
    if os.path.isdir("/proc/self"):  # a folder where no file can be made, even by root: refused before the work
        nowhere = runner.invoke(data_app, [*args[:2], "--out", "/proc/split.csv"])
        assert nowhere.exit_code == 2 and "could not be read" not in nowhere.output
        assert "/proc/split.csv: cannot write the split manifest (--out): /proc is not writable" in " ".join(
            nowhere.output.split())


def test_a_build_that_keeps_no_image_writes_nothing_and_says_why(runner, tmp_path, chest_like, write_png):
    write_png(tmp_path / "data" / "Lung_Opacity" / "o1.png", chest_like(1, 20, 20))
    out = tmp_path / "built.csv"
    result = runner.invoke(data_app, ["build", "class-folders", str(tmp_path / "data"), "--out", str(out)])
    assert result.exit_code == 2 and not out.exists()
    assert "folder 'Lung_Opacity' is not a known class" in result.stdout
    assert "no image kept, so no manifest written" in " ".join(result.stderr.split())


def test_class_folders_take_a_class_map_and_a_patient_id_pattern(runner, tmp_path, chest_like, write_png):
    for folder, name in (("COVID", "person1_a.png"), ("COVID", "person1_b.png"), ("Non-COVID", "person2_a.png")):
        write_png(tmp_path / "data" / folder / name, chest_like(1, 20, 20))
    out = tmp_path / "built.csv"
    plain = runner.invoke(data_app, ["build", "class-folders", str(tmp_path / "data"), "--out", str(out)])
    assert plain.exit_code == 0, plain.output  # "Non-COVID" is no label: dropped, and the one class left is said
    assert ("warning: every classification row is labelled covid: a classifier cannot be trained or evaluated on "
            "one class (folders that are not a known class were dropped: name their labels with --class-map)"
            ) in " ".join(plain.stderr.split())
    mapped = runner.invoke(data_app, ["build", "class-folders", str(tmp_path / "data"), "--out", str(out),
                                      "--overwrite", "--class-map", "COVID=covid, Non-COVID=normal",
                                      "--patient-id-pattern", r"^(person\d+)_", "--report", str(tmp_path / "r.json")])
    assert mapped.exit_code == 0, mapped.output
    assert json.loads((tmp_path / "r.json").read_text())["kept_by_task"] == {"cls": {"covid": 2, "normal": 1}}
    rows = read_manifest(out)
    assert sorted((row.label, row.patient_id) for row in rows) == [
        ("covid", "data:person1"), ("covid", "data:person1"), ("normal", "data:person2")]
    assert "warning" not in mapped.stderr
    for bad, message in ((["--class-map", "COVID"], "write FOLDER=LABEL pairs"),
                         (["--class-map", "COVID=non_covid"], "'non_covid' for folder 'COVID' is not a label"),
                         (["--class-map", "COVID=covid,COVID=normal"], "names folder 'COVID' twice"),
                         (["--class-map", "COVlD=covid,Non-COVID=normal"],  # misspelt: its class would be dropped
                          "the class map names ['COVlD'], which are not its class folders (COVID, Non-COVID)"),
                         (["--patient-id-pattern", "^person"], "has no group: put the patient id in parentheses"),
                         (["--patient-id-pattern", "^(person"], "is not a regular expression")):
        refused = runner.invoke(data_app, ["build", "class-folders", str(tmp_path / "data"), "--out",
                                           str(tmp_path / "x.csv"), *bad])
        assert refused.exit_code == 2 and message in " ".join(refused.stderr.split()), refused.output
        assert "Traceback" not in refused.output
    empty_ids = runner.invoke(data_app, ["build", "class-folders", str(tmp_path / "data"), "--out",
                                         str(tmp_path / "z.csv"), "--patient-id-pattern", "^person(x*)"])
    assert empty_ids.exit_code == 2 and "group is empty in this file name" in empty_ids.stdout  # not one patient "data:"
    other = runner.invoke(data_app, ["build", "covid-gr", str(tmp_path / "data"), "--out", str(tmp_path / "y.csv"),
                                     "--class-map", "COVID=covid"])
    assert other.exit_code == 2 and "are for class-folders" in " ".join(other.stderr.split())


def test_audit_failure_exits_1_and_names_the_problem(runner, shared_folder, tmp_path):
    manifest = from_shared_cxr_manifest(shared_folder / "manifest.csv").manifest
    leaky = manifest.with_rows(
        row.replace(split="train" if i % 2 else "test", age=12 if i == 0 else row.age)
        for i, row in enumerate(manifest)
    )
    write_manifest(leaky, tmp_path / "leaky.csv")
    result = runner.invoke(data_app, ["audit", str(tmp_path / "leaky.csv")])
    assert result.exit_code == 1, result.output
    assert "Audit FAILED" in result.stdout
    assert "[error] pediatric (1)" in result.stdout  # printed verbatim, not read as rich markup
    assert "patient ieee8023:0): age 12" in result.stdout


def test_long_finding_lists_are_cut_and_say_how_to_see_them_all(runner, tmp_path):
    rows = ["path,task,label,patient_id,split"] + [f"missing_{i}.png,cls,covid,p{i},train" for i in range(30)]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    result = runner.invoke(data_app, ["audit", str(tmp_path / "m.csv"), "--json", str(tmp_path / "a.json")])
    assert "missing_24.png" in result.stdout and "missing_25.png" not in result.stdout
    assert "... and 5 more" in result.stdout and "(lists cut at 25 per check" in result.stdout
    assert "missing_29.png" in (tmp_path / "a.json").read_text()
    result = runner.invoke(data_app, ["audit", str(tmp_path / "m.csv"), "--max-per-check", "30"])
    assert "missing_29.png" in result.stdout and "lists cut" not in result.stdout


def test_bad_manifest_exits_2_with_one_error_line(runner, tmp_path):
    bad = tmp_path / "bad [v2].csv"
    bad.write_text("path,task,label,patient_id\na.png,cls,cat,p1\n")
    result = runner.invoke(data_app, ["audit", str(bad)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {bad}:2: label 'cat' is not one of covid, normal, pneumonia"
    ]
    result = runner.invoke(
        data_app, ["split", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "o.csv")]
    )
    assert result.exit_code == 2 and "cannot read the manifest" in result.stderr


def test_debug_shows_the_traceback_instead_of_one_line(runner, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("path,task,label,patient_id\na.png,cls,cat,p1\n")
    result = runner.invoke(data_app, ["audit", str(bad)])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    result = runner.invoke(data_app, ["audit", str(bad), "--debug"])
    assert result.exit_code == 2 and "Traceback" in result.stderr and "'cat'" in result.stderr
    out = str(tmp_path / "out.csv")
    for args in (
        ["build", "bimcv", str(tmp_path / "absent"), "--out", out],
        ["merge", str(bad), "--out", out],
        ["split", str(bad), "--out", out],
    ):
        result = runner.invoke(data_app, [*args, "--debug"])
        assert result.exit_code == 2 and "Traceback" in result.stderr, args


def test_refuses_to_overwrite_and_bad_options_exit_2(runner, shared_folder, tmp_path):
    out = tmp_path / "out.csv"
    out.write_text("mine\n")
    args = ["build", "shared-cxr", str(shared_folder / "manifest.csv"), "--out", str(out)]
    result = runner.invoke(data_app, args)
    assert result.exit_code == 2 and "already exists" in result.stderr
    assert out.read_text() == "mine\n"
    assert runner.invoke(data_app, [*args, "--overwrite"]).exit_code == 0

    result = runner.invoke(
        data_app, ["build", "covidx", str(tmp_path / "list.txt"), "--out", str(tmp_path / "x.csv")]
    )
    assert result.exit_code == 2 and "covidx needs --images" in result.stderr
    result = runner.invoke(
        data_app, ["split", str(out), "--out", str(tmp_path / "s.csv"), "--fractions", "0.5,0.5"]
    )
    assert result.exit_code == 2 and "fractions" in result.stderr
    result = runner.invoke(
        data_app, ["split", str(out), "--out", str(tmp_path / "s.csv"), "--stratify", "label,hospital"]
    )
    assert result.exit_code == 2 and "cannot stratify by 'hospital': not a manifest field" in result.stderr
    result = runner.invoke(data_app, ["build", "unknown-layout", "x", "--out", "y"])
    assert result.exit_code == 2
    result = runner.invoke(data_app, ["audit", str(out), "--json", str(tmp_path)])
    assert result.exit_code == 2 and f"{tmp_path}: a folder; --json takes the report file's name" in " ".join(
        result.stderr.split())


def test_merge_combines_manifests_from_different_folders(runner, tmp_path):
    for name, label in (("covidx", "normal"), ("bimcv", "covid")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "m.csv").write_text(
            "path,task,label,patient_id,source,extra_note\n"
            f"images/a.png,cls,{label},{name}:1,{name},from {name}\n"
        )
    out = tmp_path / "data" / "all.csv"
    out.parent.mkdir()
    sources = [str(tmp_path / "covidx" / "m.csv"), str(tmp_path / "bimcv" / "m.csv")]
    result = runner.invoke(data_app, ["merge", *sources, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (2 rows, 2 patients, from 2 manifests)" in " ".join(result.stdout.split())
    merged = read_manifest(out)
    assert [merged.resolve(row) for row in merged] == [tmp_path / "covidx/images/a.png", tmp_path / "bimcv/images/a.png"]
    assert [row.label for row in merged] == ["normal", "covid"]
    assert [row.extra["extra_note"] for row in merged] == ["from covidx", "from bimcv"]

    again = runner.invoke(data_app, ["merge", *sources, "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.stderr
    twice = runner.invoke(data_app, ["merge", sources[0], sources[0], "--out", str(tmp_path / "twice.csv")])
    assert twice.exit_code == 2 and "list each image once" in twice.stderr

    # unprefixed ids that two datasets both use: merged as one patient, and the user is told
    (tmp_path / "bimcv" / "m.csv").write_text("path,task,label,patient_id\nimages/a.png,cls,covid,covidx:1\n")
    shared = runner.invoke(data_app, ["merge", *sources, "--out", str(tmp_path / "shared.csv")])
    assert shared.exit_code == 0 and "1 patient ids are in both" in " ".join(shared.stderr.split())


def _stored_paths(manifest_path):
    with open(manifest_path, newline="") as handle:
        return [row["path"] for row in csv.DictReader(handle)]


def test_built_split_and_merged_paths_are_relative_below_the_csv_and_absolute_elsewhere(
    runner, shared_folder, tmp_path
):
    above, aside = tmp_path / "built.csv", tmp_path / "runs" / "deep" / "built.csv"
    for out in (above, aside):
        result = runner.invoke(data_app, ["build", "shared-cxr", str(shared_folder / "manifest.csv"), "--out", str(out)])
        assert result.exit_code == 0, result.output
    images = [read_manifest(above).resolve(row) for row in read_manifest(above)]
    assert all(image.is_file() and image.is_relative_to(shared_folder) for image in images)
    assert _stored_paths(above) == [image.relative_to(tmp_path).as_posix() for image in images]
    assert _stored_paths(aside) == [image.as_posix() for image in images]  # no ../../..

    # split and merge write into other folders than their input: each path is re-expressed for it
    written = {
        "split below": (["split", str(aside)], tmp_path / "split.csv"),
        "split aside": (["split", str(above)], shared_folder / "splits" / "split.csv"),
        "merge below": (["merge", str(aside)], shared_folder / "merged.csv"),
        "merge aside": (["merge", str(above)], tmp_path / "runs" / "merged.csv"),
    }
    for name, (args, out) in written.items():
        extra = ["--no-link-duplicates"] if args[0] == "split" else []
        result = runner.invoke(data_app, [*args, "--out", str(out), *extra])
        assert result.exit_code == 0, (name, result.output)
        manifest = read_manifest(out)
        assert sorted(manifest.resolve(row) for row in manifest) == sorted(images), name
        if name.endswith("below"):
            assert not any(path.startswith(("/", "..")) for path in _stored_paths(out)), name
        else:
            assert all(path.startswith(shared_folder.as_posix()) for path in _stored_paths(out)), name


@pytest.fixture
def shared_extra_folder(tmp_path, chest_like, write_png):
    """A folder laid out like ../shared/data/cxr_extra: NIH, Radiography (no patient ids, 224 px) and Hannover."""
    folder = tmp_path / "cxr_extra"
    lines = ["file,task,label,patient_id,view,age,sex,source,source_repo,source_path,license,finding_labels"]
    for i in range(12):
        source, label, view, size = [
            ("nih", "normal", "AP", 320), ("nih", "pneumonia", "PA", 320), ("radiography", "covid", "unknown", 224),
        ][i % 3]
        name = f"cls/images/{source}_{i}.png"
        write_png(folder / name, chest_like(500 + i, height=size, width=size))
        patient = f"radiography:COVID-{i}" if source == "radiography" else f"{source}:{i // 2}"
        findings = {"normal": "No Finding", "pneumonia": "Pneumonia|Infiltration"}.get(label, "")
        sex = "" if source == "radiography" else "MF"[i % 2]
        lines.append(f"{name},cls,{label},{patient},{view},{'' if source == 'radiography' else 50},{sex},{source},"
                     f"repo,x,lic,{findings}")
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_build_merge_split_audit_of_both_shared_folders_needs_no_hand_edits(
    runner, shared_folder, shared_extra_folder, tmp_path, chest_like, write_png
):
    # A child's film and a tiny picture in the curated folder: the audit refuses both.
    write_png(shared_folder / "cls/images/child.png", chest_like(900))
    write_png(shared_folder / "cls/images/tiny.png", chest_like(901, height=150, width=140))
    with open(shared_folder / "manifest.csv", "a") as handle:
        handle.write("cls/images/child.png,cls,normal,ieee8023:90,PA,9,repo,x,\n")
        handle.write("cls/images/tiny.png,cls,covid,ieee8023:91,PA,50,repo,x,\n")
    for folder, name in ((shared_folder, "cxr.csv"), (shared_extra_folder, "extra.csv")):
        result = runner.invoke(data_app, ["build", "shared-cxr", str(folder / "manifest.csv"), "--out",
                                          str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    extra = read_manifest(tmp_path / "extra.csv")
    nih = next(row for row in extra if row.source == "nih")
    assert nih.sex in ("M", "F") and nih.extra["finding_labels"] in ("No Finding", "Pneumonia|Infiltration")
    assert {row.source for row in extra} == {"nih", "radiography"}

    merged, split = tmp_path / "merged.csv", tmp_path / "split.csv"
    result = runner.invoke(data_app, ["merge", str(tmp_path / "cxr.csv"), str(tmp_path / "extra.csv"),
                                      "--out", str(merged)])
    assert result.exit_code == 0, result.output
    # Without excluding the refused rows, the audit fails on them ...
    result = runner.invoke(data_app, ["split", str(merged), "--out", str(tmp_path / "raw.csv")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(data_app, ["audit", str(tmp_path / "raw.csv"), "--min-size", "224"])
    assert result.exit_code == 1 and "pediatric" in result.stdout and "image_too_small" in result.stdout
    # ... and with --exclude-refused, split says what it dropped and the audit passes.
    result = runner.invoke(data_app, ["split", str(merged), "--out", str(split), "--exclude-refused",
                                      "--min-size", "224"])
    assert result.exit_code == 0, result.output
    assert "dropped 1 (pediatric)" in result.stdout and "dropped 1 (image_too_small)" in result.stdout
    assert "child.png" in result.stdout and "tiny.png" in result.stdout
    rows = len(read_manifest(merged))
    assert f"kept {rows - 2} of {rows} rows" in result.stdout
    result = runner.invoke(data_app, ["audit", str(split), "--min-size", "224"])
    assert result.exit_code == 0, result.output
    kept = read_manifest(split)
    assert len(kept) == len(read_manifest(merged)) - 2 and {row.source for row in kept} >= {"nih", "radiography"}


@pytest.mark.parametrize("command", ["build", "audit"])
def test_a_report_is_never_written_over_one_of_the_manifests_films(runner, shared_folder, tmp_path, command):
    film = shared_folder / "cls" / "images" / "p3.png"
    before = film.read_bytes()
    if command == "build":
        args = ["build", "shared-cxr", str(shared_folder / "manifest.csv"), "--out", str(tmp_path / "b.csv"),
                "--report", str(film), "--overwrite"]
    else:
        built = tmp_path / "built.csv"
        assert runner.invoke(data_app, ["build", "shared-cxr", str(shared_folder / "manifest.csv"), "--out",
                                        str(built)]).exit_code == 0
        args = ["audit", str(built), "--json", str(film), "--overwrite"]
    result = runner.invoke(data_app, args)
    assert result.exit_code == 2, result.output
    assert "p3.png: is one of the manifest's own files" in " ".join(result.output.split())
    assert film.read_bytes() == before


def test_an_output_never_replaces_an_input_or_another_output(runner, shared_folder, tmp_path):
    source = shared_folder / "manifest.csv"
    built = tmp_path / "built.csv"
    assert runner.invoke(data_app, ["build", "shared-cxr", str(source), "--out", str(built)]).exit_code == 0
    manifest_text = built.read_text()
    cases = [
        (["build", "shared-cxr", str(source), "--out", str(built), "--report", str(built)],
         "is both the manifest (--out) and the build report (--report)"),
        (["build", "shared-cxr", str(source), "--out", str(source)], "is both the shared-cxr input and the manifest"),
        (["merge", str(built), "--out", str(tmp_path / "." / "built.csv")], "is both an input manifest and the merged"),
        (["split", str(built), "--out", str(built)], "is both the input manifest and the split manifest"),
        (["audit", str(built), "--json", str(built)], "is both the audited manifest and the audit report"),
    ]
    for args, message in cases:
        result = runner.invoke(data_app, [*args, "--overwrite"])
        assert result.exit_code == 2 and message in " ".join(result.stderr.split()), (args, result.output)
    assert built.read_text() == manifest_text and source.read_text().startswith("file,task,label")
