import csv
import json
import os

import pytest

from keras_covidcxr import ConfigError
from keras_covidcxr.inference import ResultsFile, csv_columns
from keras_covidcxr.inference.results_file import meta_path

CLASSES = ["non_covid", "covid"]
DECISION = {"rule": "threshold", "positive_class": "covid", "threshold": 0.7, "origin": "preset"}


def _row(source, sha256="aa", error=None, covid=0.25):
    if error:
        return {"source": source, "sha256": sha256, "error": error}
    return {
        "source": source,
        "sha256": sha256,
        "label": "non_covid",
        "probabilities": {"non_covid": 1 - covid, "covid": covid},
        "decision": DECISION,
        "members": {"alpha": {"probabilities": {"non_covid": 0.5, "covid": 0.5}, "label": "covid"}},
        "crop_box": [1, 2, 30, 40],
        "lung_fraction": 0.3,
        "lung_components": 2,
        "warnings": [{"code": "lateral_view", "message": "lateral"}],
        "error": None,
    }


def _open(path, **kwargs):
    kwargs.setdefault("decision", DECISION)
    return ResultsFile(path, kwargs.pop("class_names", CLASSES), kwargs.pop("model_sha256", "m1"), **kwargs)


def _data_lines(path):
    lines = path.read_text().splitlines()
    return lines[1:] if path.suffix == ".csv" else lines


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_rows_are_appended_and_remembered_across_opens(tmp_path, suffix):
    path = tmp_path / f"results{suffix}"
    with _open(path) as results:
        assert results.earlier_row("/a.png", "aa") is None
        results.append([_row("/a.png"), _row("/b.png", "bb", error="/b.png: empty file (0 bytes)")])
    with _open(path) as results:
        assert results.earlier_row("/a.png", "aa") == "ok"
        assert results.earlier_row("/b.png", "bb") == "failed"
        assert results.earlier_row("/a.png", "changed") is None
    assert json.loads(meta_path(path).read_text()) == {
        "covidcxr_results": 2,
        "model_sha256": "m1",
        "class_names": CLASSES,
        "decision": DECISION,
        "strict": False,
        "check_view": False,
        "untrained": False,
        "format": suffix[1:],
    }
    lines = path.read_text().splitlines()
    if suffix == ".csv":
        rows = list(csv.DictReader(lines))
        assert list(rows[0]) == csv_columns(CLASSES)
        assert rows[0]["prob_covid"] == "0.25" and json.loads(rows[0]["members"])["alpha"]["label"] == "covid"
        assert rows[0]["decision_rule"] == "threshold" and rows[0]["threshold"] == "0.7"
        assert (
            json.loads(rows[0]["crop_box"]) == [1, 2, 30, 40]
            and json.loads(rows[0]["warnings"])[0]["code"] == "lateral_view"
        )
        assert rows[1]["label"] == "" and rows[1]["error"] == "/b.png: empty file (0 bytes)"
    else:
        rows = [json.loads(line) for line in lines]
        assert rows[0] == _row("/a.png") and rows[1]["error"].endswith("(0 bytes)")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_standard_readers_read_the_results_with_default_arguments(tmp_path, suffix):
    pandas = pytest.importorskip("pandas", reason="pandas is in the test extra")
    path = tmp_path / f"results{suffix}"
    with _open(path) as results:
        results.append([_row("/a.png"), _row("/b,odd \"name\".png", "bb", error="/b.png: empty file")])
    table = pandas.read_csv(path) if suffix == ".csv" else pandas.read_json(path, lines=True)
    assert list(table["source"]) == ["/a.png", '/b,odd "name".png']
    assert table["sha256"].tolist() == ["aa", "bb"]
    if suffix == ".csv":
        assert list(table.columns) == csv_columns(CLASSES)
        assert table["threshold"].tolist()[0] == 0.7
        with path.open(newline="") as handle:
            assert [row["label"] for row in csv.DictReader(handle)] == ["non_covid", ""]
    else:
        assert table["decision"][0] == pytest.approx(DECISION)  # pandas' JSON parser rounds in the last digit


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_file_name_that_is_not_utf8_keeps_the_results_readable(tmp_path, suffix):
    pandas = pytest.importorskip("pandas", reason="pandas is in the test extra")
    path = tmp_path / f"results{suffix}"
    source = os.fsdecode(b"/films/lat\xe9.png")  # a Latin-1 name: its byte 0xE9 is held as a surrogate
    with _open(path) as results:
        results.append([_row(source, error=f"{source}: empty file")])
    table = pandas.read_csv(path) if suffix == ".csv" else pandas.read_json(path, lines=True)
    assert table["source"].tolist() == (["/films/lat\\udce9.png"] if suffix == ".csv" else [source])
    with _open(path) as results:
        assert results.earlier_row(source, "aa") == "failed"  # and a rerun knows the film


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_row_cut_short_by_a_kill_is_removed_on_reopen(tmp_path, suffix):
    path = tmp_path / f"results{suffix}"
    with _open(path) as results:
        results.append([_row("/a.png"), _row("/b.png", "bb")])
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - 20])  # the last row lost its tail (and newline)
    with _open(path) as results:
        assert results.earlier_row("/a.png", "aa") == "ok"
        assert results.earlier_row("/b.png", "bb") is None  # predicted again
        results.append([_row("/b.png", "bb")])
    assert path.read_bytes() == whole


def test_a_read_only_check_changes_nothing_and_takes_a_file_the_user_made_read_only(tmp_path):
    path = tmp_path / "results.csv"
    with _open(path) as results:
        results.append([_row("/a.png"), _row("/b.png", "bb")])
    header, a_row, b_row = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(header + a_row + b_row + a_row + b"/c.png,cc,non_co")  # two rows of /a.png, one cut short
    before = path.read_bytes()
    for file in (path, meta_path(path)):
        file.chmod(0o444)
    with _open(path, read_only=True) as results:
        assert results.earlier_row("/a.png", "aa") == "ok" and results.earlier_row("/c.png", "cc") is None
        assert results.superseded == 1
    assert path.read_bytes() == before  # nothing cut, nothing compacted


@pytest.mark.parametrize(
    "name, content",
    [
        ("results.csv", b"patient,label\n1,covid\n"),
        ("results.csv", b'# {"covidcxr_results": 1}\nsource,sha256\n'),  # an older version's layout
        ("results.jsonl", b'{"id": 1}\n{"id": 2}\n'),
        ("results.jsonl", b"\x89PNG\r\n\x1a\n binary"),
        (
            "results.jsonl",
            b'{"covidcxr_results": 1, "model_sha256": "m1", "class_names"',
        ),  # no newline: not ours
    ],
)
def test_a_file_that_is_not_ours_is_refused_and_left_untouched(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="is not a covidcxr results file .*not overwriting it"):
        _open(path)
    assert path.read_bytes() == content
    assert not meta_path(path).exists()


@pytest.mark.skipif(os.name != "posix", reason="results files are locked on POSIX only")
def test_a_second_run_on_a_file_being_written_is_refused_not_mixed_in(tmp_path):
    path = tmp_path / "results.csv"
    with _open(path) as first:
        first.append([_row("/x/a.png")])
        with pytest.raises(ConfigError, match="another covidcxr run is writing this file"):
            _open(path)
        first.append([_row("/x/b.png")])
    with _open(path) as again:  # the first run ended: the file is free
        assert again.earlier_row("/x/b.png", "aa") == "ok"
    assert len(_data_lines(path)) == 2


def test_a_sidecar_that_is_not_ours_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "results.csv"
    meta_path(path).write_text('{"mine": true}')
    with pytest.raises(ConfigError, match="not ours") as error:
        _open(path)
    assert str(error.value).startswith(f"{meta_path(path)}: exists and is not ours")  # the file that is there
    assert meta_path(path).read_text() == '{"mine": true}' and not path.exists()
    meta_path(path).write_text('{"covidcxr_results": 1}')
    with pytest.raises(ConfigError, match=r"written by another version of keras-covidcxr \(results format 1, this"):
        _open(path)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model_sha256": "m2"}, "model_sha256"),
        ({"class_names": ["covid", "normal", "pneumonia"]}, "class_names"),
        ({"strict": True}, "strict"),
        ({"check_view": True}, "check_view"),
        ({"decision": {**DECISION, "threshold": 0.5, "origin": "user"}}, "decision.threshold"),
        ({"decision": {**DECISION, "refer": {"low": 0.4, "high": 0.6}}}, "decision.refer null there"),
    ],
)
def test_results_of_another_model_or_setting_are_refused(tmp_path, change, message):
    path = tmp_path / "results.jsonl"
    with _open(path) as results:
        results.append([_row("/a.png")])
    before = path.read_bytes()
    with pytest.raises(ConfigError, match=f"another run.*{message}"):
        _open(path, **change)
    assert path.read_bytes() == before


def test_check_view_is_recorded_and_must_match_on_resume(tmp_path):
    path = tmp_path / "results.csv"
    with _open(path, check_view=True) as results:
        results.append([_row("/a.png")])
    assert json.loads(meta_path(path).read_text())["check_view"] is True
    with _open(path, check_view=True) as results:
        assert results.earlier_row("/a.png", "aa") == "ok"
    with pytest.raises(ConfigError, match="another run.*check_view true there, false here"):
        _open(path)


def test_results_of_another_package_version_are_refused(tmp_path):
    path = tmp_path / "results.csv"
    with _open(path, about={"package_version": "0.4.12"}) as results:
        results.append([_row("/a.png")])
    with pytest.raises(ConfigError, match='another run \\(package_version "0.4.12" there, "0.4.14" here\\)'):
        _open(path, about={"package_version": "0.4.14"})  # its decoding may differ: not mixed in
    with _open(path) as results:  # a check that records no version (finished_run) reads it
        assert results.earlier_row("/a.png", "aa") == "ok"


def test_a_folder_reached_by_another_path_is_done_already(tmp_path):
    (tmp_path / "films").mkdir()
    (tmp_path / "films" / "a.png").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "films")
    path = tmp_path / "results.csv"
    with _open(path) as results:
        results.append([_row(str(tmp_path / "films" / "a.png"))])
    with _open(path) as results:
        assert results.earlier_row(str(tmp_path / "link" / "a.png"), "aa") == "ok"  # not a second row
        assert results.earlier_row(str(tmp_path / "link" / "a.png"), "bb") is None  # changed since: redone


def test_an_empty_file_is_adopted(tmp_path):
    path = tmp_path / "results.csv"
    path.write_bytes(b"")  # e.g. made by `touch` or a shell redirection
    with _open(path) as results:
        results.append([_row("/a.png")])
    assert len(_data_lines(path)) == 1


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_the_last_row_of_a_source_wins_and_close_keeps_only_it(tmp_path, suffix):
    path = tmp_path / f"results{suffix}"
    with _open(path) as results:
        results.append([_row("/a.png", "v1"), _row("/b.png")])
    os.chmod(path, 0o644)
    with _open(path) as results:
        results.append([_row("/a.png", "v2", covid=0.75)])
        assert results.earlier_row("/a.png", "v2") == "ok" and results.earlier_row("/a.png", "v1") is None
    lines = _data_lines(path)
    assert len(lines) == 2 and "v1" not in path.read_text() and "v2" in lines[1]
    assert os.stat(path).st_mode & 0o777 == 0o644


def test_a_killed_run_that_left_two_rows_for_a_source_is_compacted_next_time(tmp_path):
    path = tmp_path / "results.jsonl"
    with _open(path) as results:
        results.append([_row("/a.png", "v1")])
    with path.open("a") as f:  # as if killed after appending the new row but before compacting
        f.write(json.dumps(_row("/a.png", "v2")) + "\n")
    with _open(path) as results:
        assert results.earlier_row("/a.png", "v2") == "ok"
    assert [json.loads(line)["sha256"] for line in _data_lines(path)] == ["v2"]


def test_csv_rows_stay_on_one_line(tmp_path):
    path = tmp_path / "results.csv"
    source = "/odd\nname.png"
    with _open(path) as results:
        results.append([_row(source, error="decoder said:\nline two\r\n")])
    assert len(path.read_text().splitlines()) == 2
    with _open(path) as results:
        assert results.earlier_row(source, "aa") == "failed"


def test_names_that_differ_by_a_line_break_or_a_backslash_keep_their_own_rows(tmp_path):
    names = ["/f/a\nb.png", "/f/a b.png", "/f/a\\nb.png", "/f/a\rb.png", os.fsdecode(b"/f/a\xe9.png"), "/f/a\\udce9.png"]
    path = tmp_path / "results.csv"
    with _open(path) as results:
        results.append([_row(name, sha256=f"s{i}") for i, name in enumerate(names)])
    with path.open(newline="") as handle:
        sources = [row["source"] for row in csv.DictReader(handle)]
    assert len(set(sources)) == len(names) == 6  # a line break was folded into a space: two names, one row
    assert sources[:3] == ["/f/a\\nb.png", "/f/a b.png", "/f/a\\\\nb.png"]
    with _open(path) as results:  # a rerun finds each film's own row
        assert [results.earlier_row(name, f"s{i}") for i, name in enumerate(names)] == ["ok"] * 6


def test_a_damaged_row_in_the_middle_is_reported_with_its_line(tmp_path):
    path = tmp_path / "results.jsonl"
    with _open(path) as results:
        results.append([_row("/a.png")])
    with path.open("a") as f:
        f.write("not json\n")
    with pytest.raises(ConfigError, match=r"line 2 is not a results row"):
        _open(path)


@pytest.mark.parametrize("name", ["results.txt", "results", "folder.csv"])
def test_unusable_paths_are_refused(tmp_path, name):
    if name == "folder.csv":
        (tmp_path / name).mkdir()
    with pytest.raises(ConfigError, match=r"\.csv or \.jsonl"):
        _open(tmp_path / name)


def test_a_full_disk_names_the_file_and_says_its_rows_are_kept(tmp_path):
    import errno

    from keras_covidcxr import CovidCXRError

    class FullDisk:
        def __init__(self, real):
            self.real = real

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.real, name)

    path = tmp_path / "results.csv"
    with _open(path) as results:
        results.append([_row("a.png", "s1")])
        results._file = FullDisk(results._file)
        with pytest.raises(CovidCXRError, match=r"results.csv: No space left on device; the rows written before are "
                                                r"kept: make room and rerun the same command to go on"):
            results.append([_row("b.png", "s2")])
        results._file = results._file.real
    assert len(_data_lines(path)) == 1
