"""The report writer: JSON, Markdown and PNG plots for several named score sets, written atomically."""

import json
import re

import numpy as np
import pytest
from PIL import Image

from keras_covidcxr import ConfigError
from keras_covidcxr.metrics import ReportSection, classification_metrics, evaluate_models, write_report

CLASSES = ["covid", "normal", "pneumonia"]


@pytest.fixture(scope="module")
def three_class_scores():
    rng = np.random.default_rng(0)
    n = 90
    truth = np.asarray(CLASSES)[rng.integers(0, 3, n)]
    onehot = np.eye(3)[[CLASSES.index(t) for t in truth]]
    members = {
        "densenet201": 0.5 * onehot + 0.5 * rng.dirichlet([1, 1, 1], n),
        "vgg19": 0.3 * onehot + 0.7 * rng.dirichlet([1, 1, 1], n),
    }
    members["weighted_average"] = (members["densenet201"] + members["vgg19"]) / 2
    members["majority_vote"] = np.eye(3)[members["weighted_average"].argmax(1)]  # hard votes as one-hot rows
    return {
        "scores": members,
        "truth": truth,
        "patients": np.arange(n) // 2,
        "sources": np.where(np.arange(n) % 3 == 0, "bimcv", "ieee8023"),
        "views": np.where(np.arange(n) % 2 == 0, "PA", "AP"),
    }


def test_writes_json_markdown_and_plots(tmp_path, three_class_scores):
    data = three_class_scores
    written = write_report(
        tmp_path / "report",
        data["scores"],
        data["truth"],
        CLASSES,
        groups=data["patients"],
        sources=data["sources"],
        views=data["views"],
        n_resamples=100,
        seed=0,
    )
    names = sorted(path.name for path in written.files)
    assert names == sorted(
        [
            "report.json",
            "report.md",
            "reliability.png",
            "roc_covid.png",
            "roc_normal.png",
            "roc_pneumonia.png",
            "confusion_densenet201.png",
            "confusion_vgg19.png",
            "confusion_weighted_average.png",
            "confusion_majority_vote.png",
        ]
    )
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == names  # no temporary files left
    for path in written.files:
        if path.suffix == ".png":
            with Image.open(path) as image:
                assert image.format == "PNG" and min(image.size) > 100

    content = json.loads((tmp_path / "report" / "report.json").read_text())
    assert content["n_images"] == 90 and content["n_patients"] == 45
    assert content["resampling_unit"] == "patient"
    point = classification_metrics(data["truth"], data["scores"]["densenet201"], CLASSES)
    dense = content["models"]["densenet201"]
    for metric, value in point.overall.items():
        cell = dense["overall"][metric]
        assert cell["value"] == pytest.approx(value)
        assert cell["ci"][0] <= cell["value"] <= cell["ci"][1]
    assert dense["per_class"]["covid"]["sensitivity"]["value"] == pytest.approx(
        point.per_class["covid"]["sensitivity"]
    )
    assert dense["confusion_matrix"] == point.confusion_matrix.tolist()
    assert set(dense["by_source"]) == {"bimcv", "ieee8023"} and set(dense["by_view"]) == {"AP", "PA"}
    assert dense["by_source"]["bimcv"]["n"] == 30
    assert 0 <= dense["calibration"]["expected_calibration_error"] <= 1
    assert "operating_points" not in dense  # three classes and no positive class chosen

    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| Model | Accuracy | Sensitivity | Specificity | PPV | NPV | F1 | AUC |" in markdown
    accuracy = point.overall["accuracy"] * 100
    assert f"| densenet201 | {accuracy:.2f}% [" in markdown
    for model in data["scores"]:
        assert f"### {model}" in markdown
    assert "![reliability](reliability.png)" in markdown and "## By source" in markdown


def test_binary_report_has_operating_points_for_the_positive_class(tmp_path):
    rng = np.random.default_rng(1)
    truth = rng.choice(["non-covid", "covid"], 60)
    p_covid = np.clip((truth == "covid") * 0.4 + rng.random(60) * 0.6, 0, 1)
    written = write_report(
        tmp_path / "binary", {"ensemble": p_covid}, truth, ["non-covid", "covid"], n_resamples=50
    )
    results = written.results
    assert results["averaging"] == "positive class covid"
    assert results["resampling_unit"].startswith("image")
    points = results["models"]["ensemble"]["operating_points"]
    assert points["sensitivity_0.95"]["sensitivity"] >= 0.95
    assert 0 <= points["youden"]["threshold"] <= 1
    assert sorted(p.name for p in written.files if p.name.startswith("roc_")) == ["roc_covid.png"]
    assert "## Operating thresholds (covid vs rest)" in (tmp_path / "binary" / "report.md").read_text()


def test_printed_operating_thresholds_give_the_figures_printed_beside_them(tmp_path):
    # the Youden threshold is a score; rounded to 3 decimals (0.95664 as 0.957) it passed that score
    truth = np.array(["covid"] * 7 + ["non-covid"] * 5)
    p_covid = np.array([0.99, 0.98, 0.97, 0.96, 0.95664, 0.9, 0.3, 0.9562, 0.5, 0.4, 0.2, 0.1])
    write_report(tmp_path / "r", {"ensemble": p_covid}, truth, ["non-covid", "covid"], n_resamples=10)
    row = next(line for line in (tmp_path / "r" / "report.md").read_text().splitlines()
               if re.match(r"\| ensemble \| 0\.\d+ \| \d+\.\d%", line))
    for text, sensitivity, specificity in (row.split(" | ")[1:4], row.split(" | ")[4:7]):
        called = p_covid >= float(text)
        assert f"{np.mean(called[truth == 'covid']):.1%}" == sensitivity
        assert f"{np.mean(~called[truth == 'non-covid']):.1%}" == specificity.rstrip(" |")
    assert row.startswith("| ensemble | 0.9566 | 71.4% | 100.0% |")  # not 0.957 (57.1%)


def test_each_confusion_matrix_says_how_its_labels_were_decided(tmp_path, monkeypatch):
    import keras_covidcxr.metrics.plots as plots

    titles = []
    draw = plots.plot_confusion_matrix
    monkeypatch.setattr(plots, "plot_confusion_matrix", lambda m, names, title: titles.append(title) or draw(m, names, title))
    truth = np.array(["covid"] * 6 + ["non-covid"] * 6)
    p_covid = np.linspace(0.05, 0.95, 12)
    write_report(tmp_path / "r", {"ensemble": p_covid, "member": p_covid[::-1]}, truth, ["non-covid", "covid"],
                 n_resamples=10, decision_thresholds={"ensemble": 0.7})
    assert titles == ["ensemble\ncovid when p(covid) >= 0.700", "member\nlabels: the most probable class"]


def test_a_majority_vote_is_described_as_one_with_its_ties_counted(tmp_path):
    from keras_covidcxr.evaluation.evaluate_pipeline import _vote_shares

    votes = np.array([[1, 1], [0, 0], [1, 0], [0, 1], [1, 0], [0, 0]])  # films 2-4: one vote each way
    member_p = np.stack([1 - votes * 0.8 - 0.1, votes * 0.8 + 0.1], axis=-1)
    truth = np.array(["covid", "non_covid", "covid", "non_covid", "non_covid", "non_covid"])
    written = write_report(tmp_path / "r", {"majority_vote": _vote_shares(votes, member_p)}, truth,
                           ["non_covid", "covid"], n_resamples=10, decision_thresholds={"majority_vote": 0.5},
                           vote_sets=("majority_vote",))
    assert written.results["models"]["majority_vote"]["vote_ties"] == 3
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert "| majority_vote | most of the members' votes go to it (each member votes at its own threshold); 3 of " \
           "the 6 films were ties" in markdown and "p(covid) >= 0.500" not in markdown


def test_a_one_class_group_shows_no_ppv_npv_or_f1(tmp_path):
    # An outside-hospital evaluation often has sources of one class only (e.g. COVID-19 from one
    # hospital, normals from another): their PPV / NPV would read 100% / 0% by construction.
    truth = np.asarray(["covid"] * 10 + ["non-covid"] * 10 + ["covid", "non-covid"] * 5)
    p_covid = np.where(truth == "covid", 0.7, 0.3)
    p_covid[[0, 10]] = 0.4, 0.6  # one miss in each one-class source
    sources = ["hannover"] * 10 + ["nih"] * 10 + ["ieee8023"] * 10
    written = write_report(
        tmp_path / "r", {"ensemble": p_covid}, truth, ["non-covid", "covid"], sources=sources, n_resamples=20
    )
    rows = {
        line.split(" | ")[1]: line.split(" | ")[3:]
        for line in (tmp_path / "r" / "report.md").read_text().splitlines()
        if line.startswith("| ensemble | ")
    }
    accuracy, sensitivity, specificity, ppv, npv, f1, auc = rows["hannover"]
    assert sensitivity != "n/a" and (specificity, ppv, npv, f1) == ("n/a",) * 4 and auc == "n/a |"
    assert rows["nih"][3:6] == ["n/a"] * 3 and rows["nih"][2] != "n/a"
    assert "n/a" not in rows["ieee8023"][:6]
    assert written.results["models"]["ensemble"]["by_source"]["nih"]["overall"]["ppv"] == 0.0  # JSON: as computed


def test_three_class_report_with_covid_thresholds_and_an_extra_section(tmp_path, three_class_scores):
    data = three_class_scores
    section = ReportSection("Shortcut probe", {"n_images": 90}, ["No score set reaches AUC 0.70 without the lungs."])
    written = write_report(
        tmp_path / "r", data["scores"], data["truth"], CLASSES, groups=data["patients"], n_resamples=20,
        operating_class="covid", sections={"shortcut_probe": section},
    )
    results = written.results
    assert results["averaging"] == "macro"  # the summary stays macro-averaged
    points = results["models"]["vgg19"]["operating_points"]
    assert points["sensitivity_0.95"]["sensitivity"] >= 0.95
    is_covid = np.asarray(data["truth"]) == "covid"
    predicted = data["scores"]["vgg19"][:, 0] >= points["youden"]["threshold"]
    assert points["youden"]["sensitivity"] == pytest.approx(predicted[is_covid].mean())
    assert json.loads((tmp_path / "r" / "report.json").read_text())["shortcut_probe"] == {"n_images": 90}
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert "## Operating thresholds (covid vs rest)" in markdown
    assert markdown.rstrip().endswith("## Shortcut probe\n\nNo score set reaches AUC 0.70 without the lungs.")


def test_never_overwrites_what_the_user_had(tmp_path, three_class_scores):
    data = three_class_scores
    args = ({"m": data["scores"]["vgg19"]}, data["truth"], CLASSES)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not an empty folder or an earlier report"):
        write_report(mine, *args, n_resamples=10)
    assert (mine / "notes.txt").read_text() == "keep me" and len(list(mine.iterdir())) == 1

    earlier = tmp_path / "earlier"
    write_report(earlier, *args, n_resamples=10)
    with pytest.raises(ConfigError, match=r"with overwrite=True \(covidcxr evaluate --overwrite\)"):
        write_report(earlier, *args, n_resamples=10)
    write_report(
        earlier,
        {"other": data["scores"]["densenet201"]},
        data["truth"],
        CLASSES,
        n_resamples=10,
        overwrite=True,
    )
    assert list(json.loads((earlier / "report.json").read_text())["models"]) == ["other"]
    assert not (earlier / "confusion_m.png").exists()
    # an earlier report folder where the user keeps notes: --overwrite would delete them, so it is refused
    (earlier / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match=r"files that are not part of it \(notes.txt\)"):
        write_report(earlier, *args, n_resamples=10, overwrite=True)
    assert (earlier / "notes.txt").read_text() == "keep me"

    empty = tmp_path / "empty"
    empty.mkdir()
    write_report(empty, *args, n_resamples=10)
    assert (empty / "report.md").is_file()


def test_an_earlier_report_is_replaced_whole_or_not_at_all(three_class_scores, tmp_path):
    data = three_class_scores
    args = ({"m": data["scores"]["vgg19"]}, data["truth"], CLASSES)

    def scores_file(folder, results):
        (folder / "scores.csv").write_text(f"{results['n_images']} images\n")

    written = write_report(tmp_path / "r", *args, n_resamples=10, also_write=scores_file)
    assert (tmp_path / "r" / "scores.csv").read_text() == f"{len(data['truth'])} images\n"
    assert tmp_path / "r" / "scores.csv" in written.files
    before = {path.name: path.read_bytes() for path in (tmp_path / "r").iterdir()}

    def interrupted(folder, results):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_report(tmp_path / "r", {"other": data["scores"]["densenet201"]}, data["truth"], CLASSES,
                     n_resamples=10, overwrite=True, also_write=interrupted)
    assert {path.name: path.read_bytes() for path in (tmp_path / "r").iterdir()} == before
    assert list(tmp_path.iterdir()) == [tmp_path / "r"]  # no half-written folder left beside it


def test_rejects_mismatched_inputs(tmp_path):
    with pytest.raises(ConfigError, match="no score sets"):
        evaluate_models({}, ["covid"], CLASSES)
    with pytest.raises(ConfigError, match="2 labels but y_prob has 3 rows"):
        evaluate_models({"m": np.full((3, 3), 1 / 3)}, ["covid", "normal"], CLASSES)
    with pytest.raises(ConfigError, match="clashing plot file names"):
        write_report(
            tmp_path / "never",
            {"a b": np.full((2, 3), 1 / 3), "a_b": np.full((2, 3), 1 / 3)},
            ["covid", "normal"],
            CLASSES,
            n_resamples=5,
        )


def test_a_perfect_rate_gets_a_wilson_interval_not_a_collapsed_percentile_one():
    # 15 covid films all found, 5 non-COVID all cleared: every resample agrees, so a percentile interval would
    # claim [100%, 100%]; the Wilson score interval on 15 films is about [79.6%, 100%].
    truth = ["covid"] * 15 + ["non_covid"] * 5
    p_covid = np.r_[np.full(15, 0.9), np.full(5, 0.1)]
    results = evaluate_models({"m": np.stack([1 - p_covid, p_covid], 1)}, truth, ["non_covid", "covid"],
                              groups=np.arange(20), n_resamples=50)
    overall = results["models"]["m"]["overall"]
    assert overall["sensitivity"]["value"] == 1.0
    assert overall["sensitivity"]["ci"] == pytest.approx([0.796, 1.0], abs=1e-3)
    assert overall["specificity"]["ci"] == pytest.approx([0.566, 1.0], abs=1e-3)  # on 5 films: wider
    assert overall["accuracy"]["ci"][0] == pytest.approx(0.839, abs=1e-3)
    assert overall["auc"]["ci"] == [1.0, 1.0]  # not a proportion of films: left as the bootstrap gives it


def test_a_perfect_rate_s_wilson_interval_counts_patients_not_images():
    # the 15 COVID-19 films of one patient all found: as sure as one patient makes it, not as fifteen
    truth = ["covid"] * 15 + ["non_covid"] * 10
    p_covid = np.r_[np.full(15, 0.9), np.linspace(0.1, 0.6, 10)]
    groups = ["p0"] * 15 + [f"q{i}" for i in range(10)]
    results = evaluate_models({"m": np.stack([1 - p_covid, p_covid], 1)}, truth, ["non_covid", "covid"],
                              groups=groups, n_resamples=50)
    sensitivity = results["models"]["m"]["overall"]["sensitivity"]
    assert sensitivity["value"] == 1.0 and sensitivity["ci"] == pytest.approx([0.2065, 1.0], abs=1e-4)


def test_a_perfect_auc_is_not_shown_with_a_collapsed_interval(tmp_path):
    truth = ["covid"] * 6 + ["non_covid"] * 4
    p_covid = np.r_[np.full(6, 0.9), np.full(4, 0.1)]
    write_report(tmp_path / "r", {"m": p_covid}, truth, ["non_covid", "covid"], groups=np.arange(10), n_resamples=20)
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert "1.000 [no interval: the same on every resample, as for a perfect score or a class from one patient]" in markdown
    assert "100.00% [no interval: the same on every resample, as for a perfect score or a class from one patient]" in markdown  # F1
    assert "[1.000, 1.000]" not in markdown and "[100.0, 100.0]" not in markdown


def test_a_class_from_one_patient_gets_no_collapsed_interval(tmp_path):
    # all six COVID-19 films of one patient: every patient resample holds the same six, sensitivity stays 5/6
    truth = ["covid"] * 6 + ["non_covid"] * 6
    p_covid = np.r_[[0.9, 0.8, 0.7, 0.9, 0.6, 0.2], np.linspace(0.1, 0.7, 6)]
    written = write_report(tmp_path / "r", {"m": p_covid}, truth, ["non_covid", "covid"],
                           groups=["p0"] * 6 + [f"q{i}" for i in range(6)], n_resamples=30)
    assert written.results["models"]["m"]["overall"]["sensitivity"]["ci"] == pytest.approx([5 / 6, 5 / 6])
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert "83.33% [no interval: the same on every resample, as for a perfect score or a class from one patient]" in markdown
    assert "[83.3, 83.3]" not in markdown


def test_only_the_rows_of_a_class_without_images_show_ppv_and_npv_as_undefined(tmp_path):
    # three classes, no pneumonia: covid vs rest keeps its PPV and NPV; pneumonia vs rest has none of its own
    rng = np.random.default_rng(1)
    truth = np.array(["covid"] * 20 + ["normal"] * 20)
    scores = rng.dirichlet([1, 1, 1], size=40)
    scores[:20, 0] += 1.0  # covid films score higher for covid
    scores /= scores.sum(axis=1, keepdims=True)
    write_report(tmp_path / "r", {"m": scores}, truth, CLASSES, n_resamples=10)
    markdown = (tmp_path / "r" / "report.md").read_text()

    def row(heading):
        return next(line for line in markdown.split(f"## {heading}")[1].splitlines() if line.startswith("| m |"))

    columns = ["Sensitivity", "Specificity", "PPV", "NPV", "F1", "AUC"]
    covid = dict(zip(columns, [cell.strip() for cell in row("covid vs rest").split("|")[2:-1]]))
    pneumonia = dict(zip(columns, [cell.strip() for cell in row("pneumonia vs rest").split("|")[2:-1]]))
    assert all(covid[name] != "n/a" for name in ("PPV", "NPV", "F1"))
    assert [pneumonia[name] for name in ("PPV", "NPV", "F1")] == ["n/a"] * 3
    assert "n/a" not in row("Summary").split("|")[5]  # the macro PPV stays: a three-class summary
