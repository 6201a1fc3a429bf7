import csv
import json

import pytest

from keras_covidcxr import ConfigError, InputError, PredictionSummary, load_image, predict_to_file


def read_rows(path):
    lines = path.read_text().splitlines()
    if path.suffix == ".csv":
        return list(csv.DictReader(lines))
    return [json.loads(line) for line in lines]


BATCH_SIZE = 4  # the same in every tests/inference module: one traced shape per session


def run(pipeline, inputs, out, **kwargs):
    return predict_to_file(pipeline, inputs, out, batch_size=BATCH_SIZE, **kwargs)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_mixed_folder_gives_one_row_per_file_and_a_rerun_adds_nothing(
    loaded_pipeline, mixed_folder, tmp_path, suffix
):
    folder, expected = mixed_folder
    out = tmp_path / f"results{suffix}"
    summary = run(loaded_pipeline, [folder], out)
    assert summary == PredictionSummary(total=6, done=3, failed=3)
    assert not summary.all_ok
    rows = read_rows(out)
    assert sorted(row["source"] for row in rows) == sorted(expected)
    for row in rows:
        assert len(row["sha256"]) == 64
        if expected[row["source"]]:
            assert not row["error"] and row["label"] in loaded_pipeline.class_names
            probability = float(row["prob_covid"]) if suffix == ".csv" else row["probabilities"]["covid"]
            assert 0 <= probability <= 1
        else:
            assert row["error"].startswith(row["source"]) and not row["label"]

    before = out.read_bytes()
    again = run(loaded_pipeline, [folder], out)
    assert again == PredictionSummary(total=6, skipped=6, skipped_failed=3)
    assert out.read_bytes() == before


def test_a_changed_file_is_predicted_again_and_keeps_one_row(
    loaded_pipeline, mixed_folder, tmp_path, write_png
):
    folder, expected = mixed_folder
    out = tmp_path / "results.jsonl"
    run(loaded_pipeline, [folder], out)
    old = {row["source"]: row["sha256"] for row in read_rows(out)}
    changed = write_png(folder / "good1.png", seed=99)
    (folder / "empty.png").write_bytes(changed.read_bytes())  # a failed file, now fixed
    summary = run(loaded_pipeline, [folder], out)
    assert summary == PredictionSummary(total=6, done=2, failed=0, skipped=4, skipped_failed=2)
    rows = read_rows(out)
    assert sorted(row["source"] for row in rows) == sorted(expected)  # every file exactly once
    new = {row["source"]: row for row in rows}
    for name in ("good1.png", "empty.png"):
        source = str((folder / name).absolute())
        assert new[source]["sha256"] != old[source] and new[source]["error"] is None


def test_retry_failed_predicts_error_rows_again(loaded_pipeline, mixed_folder, tmp_path):
    folder, expected = mixed_folder
    out = tmp_path / "results.csv"
    run(loaded_pipeline, [folder], out)
    summary = run(loaded_pipeline, [folder], out, retry_failed=True)
    assert summary == PredictionSummary(total=6, failed=3, skipped=3)
    assert sorted(row["source"] for row in read_rows(out)) == sorted(expected)


def test_rows_reach_the_disk_batch_by_batch(loaded_pipeline, tmp_path, write_png):
    folder = tmp_path / "scans"
    for i in range(2 * BATCH_SIZE + 1):
        write_png(folder / f"{i:02d}.png", seed=i)
    out = tmp_path / "results.csv"
    on_disk = []

    def progress(summary):
        on_disk.append((summary.done, len(read_rows(out))))

    summary = run(loaded_pipeline, [folder], out, progress=progress)
    assert summary.done == 2 * BATCH_SIZE + 1
    assert on_disk == [(0, 0), (BATCH_SIZE, BATCH_SIZE), (2 * BATCH_SIZE, 2 * BATCH_SIZE), (9, 9)]


def test_a_batch_of_large_films_is_predicted_before_it_is_full(loaded_pipeline, tmp_path, write_png, monkeypatch):
    from keras_covidcxr.inference import batch_prediction

    folder = tmp_path / "scans"
    for i in range(5):
        write_png(folder / f"{i:02d}.png", seed=i)
    pixels = load_image(folder / "00.png").pixels.size
    monkeypatch.setattr(batch_prediction, "BATCH_PIXELS", 2 * pixels)  # two of these films fill the budget
    out, on_disk = tmp_path / "results.csv", []
    summary = run(loaded_pipeline, [folder], out, progress=lambda s: on_disk.append(len(read_rows(out))))
    assert summary.done == 5 and on_disk == [0, 2, 4, 5]  # not one batch of BATCH_SIZE = 4, then 1


def test_results_of_another_model_are_refused(loaded_pipeline, pipeline, tmp_path, write_png):
    image = write_png(tmp_path / "a.png")
    out = tmp_path / "results.jsonl"
    run(loaded_pipeline, [image], out)
    before = out.read_bytes()
    # same architecture, identified differently: an in-memory pipeline has no preset checksums
    with pytest.raises(ConfigError, match="another run"):
        run(pipeline, [image], out)
    assert out.read_bytes() == before


def test_nothing_to_predict_is_an_input_error(loaded_pipeline, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image files"):
        run(loaded_pipeline, [tmp_path / "empty"], tmp_path / "results.csv")
    assert not (tmp_path / "results.csv").exists()
    with pytest.raises(ConfigError, match="workers"):
        run(loaded_pipeline, [tmp_path], tmp_path / "results.csv", workers=0)


def test_uncertainty_columns_are_written_and_a_resume_keeps_the_tta_setting(loaded_pipeline, tmp_path, write_png):
    import pandas

    image = write_png(tmp_path / "a.png")
    out = tmp_path / "results.csv"
    run(loaded_pipeline, [image], out, tta=2)
    row = pandas.read_csv(out).iloc[0]
    result = loaded_pipeline.predict([str(image)], tta=2)[0]
    assert row["member_spread"] == pytest.approx(result.uncertainty["member_spread"], abs=1e-6)
    assert row["tta"] == 2 and row["tta_spread"] == pytest.approx(result.uncertainty["tta_spread"], abs=1e-6)
    assert row["raw_prob_covid"] == pytest.approx(result.raw_probabilities["covid"], abs=1e-6)
    assert row["members_disagree"] == result.uncertainty["members_disagree"]
    assert json.loads((tmp_path / "results.csv.meta.json").read_text())["tta"] == 2
    with pytest.raises(ConfigError, match="tta"):
        run(loaded_pipeline, [image], out)  # plain prediction would mix with TTA rows
