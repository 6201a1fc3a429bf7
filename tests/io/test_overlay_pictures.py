"""Overlays a radiologist can read: film kept whole, lung edge drawn, colour bar and caption beside it."""

import os

import numpy as np
import pytest
from PIL import Image

from keras_covidcxr.io.overlay_captions import DISCLAIMER, gradcam_caption, mask_caption
from keras_covidcxr.io.overlay_figure import (
    COLORBAR_WIDTH,
    MIN_FIGURE_WIDTH,
    caption_rows,
    panel_size,
    render_overlay,
)
from keras_covidcxr.io.overlays import EDGE_COLOR, mask_edge, save_overlays
from keras_covidcxr.models.pipeline.pipeline_result import PipelineResult
from keras_covidcxr.models.pipeline.refer_rule import ReferRule

FILM = (64, 48)  # enlarged 8x to the smallest panel, 512 x 384


def fake_result(**changes):
    """A two-member ensemble's result on a small gradient film with a rectangular lung mask."""
    image = np.linspace(0.2, 0.8, FILM[0] * FILM[1], dtype="float32").reshape(FILM)
    mask = np.zeros(FILM, bool)
    mask[16:48, 8:40] = True
    yy, xx = np.mgrid[0 : FILM[0], 0 : FILM[1]]
    fields = {
        "source": "/data/chest.png",
        "label": "covid",
        "probabilities": {"non_covid": 0.028, "covid": 0.972},
        "decision": {"rule": "threshold", "positive_class": "covid", "threshold": 0.714, "origin": "preset"},
        "members": {
            "alpha": {"probabilities": {"non_covid": 0.05, "covid": 0.95}, "label": "covid"},
            "beta": {"probabilities": {"non_covid": 0.4, "covid": 0.6}, "label": "non_covid"},
        },
        "image": image,
        "mask": mask,
        "lung_fraction": float(mask.mean()),
        "lung_components": 1,
        "heatmap": np.exp(-((yy - 32) ** 2 + (xx - 24) ** 2) / 200.0).astype("float32"),
        "heatmap_class": "covid",
    }
    return PipelineResult(**{**fields, **changes})


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    folder = tmp_path_factory.mktemp("overlays")
    result = fake_result()
    paths = save_overlays(result, folder, "chest")
    pictures = [np.asarray(Image.open(path).convert("RGB")) for path in paths]
    return result, paths, pictures


def test_panels_keep_the_film_aspect_and_cap_large_films():
    assert panel_size(FILM) == (512, 384)  # small films are enlarged to be readable
    assert panel_size((512, 400)) == (512, 400)  # a film in range is shown 1:1
    assert panel_size((4000, 3000)) == (1024, 768)  # a huge film does not make a huge file
    assert panel_size((300, 1200)) == (256, 1024)


def test_both_overlays_are_pngs_with_a_caption_below_and_a_colour_bar_beside_the_film(written):
    _, paths, (mask_picture, gradcam_picture) = written
    assert [p.name for p in paths] == ["chest_mask.png", "chest_gradcam.png"]
    height, width = panel_size(FILM)
    assert mask_picture.shape[1] == width and mask_picture.shape[0] > height + 60  # several caption rows
    assert gradcam_picture.shape[1] == width + COLORBAR_WIDTH
    assert gradcam_picture.shape[0] > height + 60
    for picture in (mask_picture, gradcam_picture):
        caption = picture[height:, :width]
        assert caption.max() > 200 and (caption < 50).mean() > 0.5  # white text on black
    # the colour bar runs from jet's dark blue at the bottom to its dark red at the top
    bar = gradcam_picture[:height, width + 16 : width + 32].astype(int)
    assert (bar[..., 2] - bar[..., 0] > 100).any() and (bar[..., 0] - bar[..., 2] > 100).any()
    blue_rows = np.flatnonzero((bar[..., 2] - bar[..., 0] > 100).any(axis=1))
    red_rows = np.flatnonzero((bar[..., 0] - bar[..., 2] > 100).any(axis=1))
    assert red_rows.mean() < blue_rows.mean()


def test_a_very_narrow_film_still_gets_a_readable_caption():
    panel = np.zeros(panel_size((4096, 128)) + (3,), "uint8")  # a 32 px wide panel
    picture = render_overlay(panel, ["Lung mask (tinted, magenta edge): 31.0% of the image in 2 piece(s)"])
    assert picture.shape[1] == MIN_FIGURE_WIDTH
    assert len(caption_rows(["Lung mask (tinted, magenta edge): 31.0% of the image"], picture.shape[1])) <= 2


def test_a_file_name_wider_than_the_picture_is_cut_into_rows_not_off_its_edge():
    name = "actualmed_" + "1234567890" * 12 + ".png"
    rows = caption_rows([f"Film: {name}"], MIN_FIGURE_WIDTH)
    assert len(rows) > 2 and "".join(text for text, _ in rows[1:]) == name and rows[0] == ("Film:", True)
    assert all(len(caption_rows([text], MIN_FIGURE_WIDTH)) == 1 for text, _ in rows)  # each row fits


def test_a_file_name_s_line_break_or_undecodable_byte_is_written_out_in_the_caption(recwarn):
    name = "scan\n" + os.fsdecode(b"lat\xe9.png")
    rows = caption_rows([f"Lung mask of {name}"], MIN_FIGURE_WIDTH)
    assert rows == [("Lung mask of scan\\nlat\\udce9.png", True)]
    render_overlay(np.zeros((32, 32, 3), "uint8"), [f"Lung mask of {name}"])
    assert not [w for w in recwarn if "Glyph" in str(w.message)]  # matplotlib warned "Glyph 10 missing"


def test_the_lung_mask_edge_is_drawn_where_the_mask_ends(written):
    _, _, pictures = written
    height, width = panel_size(FILM)
    scale = height // FILM[0]
    for picture in pictures:
        panel = picture[:height, :width]
        is_edge = np.all(panel == EDGE_COLOR, axis=-1)
        # the mask's rows 16:48 and columns 8:40, at 8x: its border pixels are magenta
        top, bottom, left, right = 16 * scale, 48 * scale - 1, 8 * scale, 40 * scale - 1
        assert is_edge[top, left + 20 : right - 20].all() and is_edge[bottom, left + 20 : right - 20].all()
        assert is_edge[top + 20 : bottom - 20, left].all() and is_edge[top + 20 : bottom - 20, right].all()
        assert not is_edge[top + 10 : bottom - 10, left + 10 : right - 10].any()  # inside stays the film
        assert not is_edge[: top - 2].any() and not is_edge[bottom + 3 :].any()


def test_the_heatmap_is_smooth_on_the_overlay(written):
    _, _, (_, gradcam_picture) = written
    height, width = panel_size(FILM)
    red = gradcam_picture[:height, :width, 0].astype(int)
    row = red[height // 2, 80:300]  # across the heat peak, inside the mask's edge (columns 64 to 319)
    assert np.abs(np.diff(row)).max() <= 6  # no 8 px blocks from the 64 px film


def test_mask_edge_is_the_inner_border_only():
    mask = np.zeros((10, 10), bool)
    mask[2:8, 2:8] = True
    edge = mask_edge(mask, width=1)
    assert edge.sum() == 20 and not edge[3:7, 3:7].any() and not edge[~mask].any()


def test_the_gradcam_caption_names_class_model_probability_and_rule():
    text = "\n".join(gradcam_caption(fake_result()))
    assert "Grad-CAM of the ensemble of alpha, beta for class covid, on chest.png" in text
    assert "p(covid) = 0.972; label covid (rule: covid if p(covid) >= 0.714)" in text
    assert "Member alpha: p(covid) = 0.950, votes covid" in text
    assert "Member beta: p(covid) = 0.600, votes non_covid" in text
    assert DISCLAIMER in text
    other = "\n".join(gradcam_caption(fake_result(heatmap_class="non_covid", decision=None)))
    assert "for class non_covid" in other and "p(non_covid) = 0.028; label covid" in other
    assert "rule:" not in other  # no decision rule recorded: none claimed
    calibrated = "\n".join(gradcam_caption(fake_result(raw_probabilities={"non_covid": 0.1, "covid": 0.9})))
    assert "p(covid) = 0.972 (calibrated; 0.900 before); label covid" in calibrated
    assert "Member beta: p(covid) = 0.600 uncalibrated, votes non_covid" in calibrated
    assert ("Calibrated to the share of covid among the preset's own films: where covid is rarer, a film's chance of "
            "it is lower than shown.") in calibrated  # the picture travels without the terminal's footer
    assert "it shows what drove this score, not where disease is" in text
    same = "\n".join(gradcam_caption(fake_result(raw_probabilities={"non_covid": 0.028, "covid": 0.972})))
    assert "calibrated" not in same  # a preset without calibration keeps raw = calibrated


def test_the_gradcam_caption_says_where_the_relevance_lies_and_what_its_colours_mean():
    centred = "\n".join(gradcam_caption(fake_result()))  # the heatmap peaks in the middle of the lung mask
    assert "Relevance inside the lung mask: 81% of the map's total (the mask covers 33% of the image)." in centred
    assert "relevance relative to this film's hottest point (maps of different films are not comparable)" in centred
    assert "lung box" not in centred  # no crop box: nothing to say about one
    yy, xx = np.mgrid[0 : FILM[0], 0 : FILM[1]]
    shoulder = np.exp(-((yy - 4) ** 2 + (xx - 44) ** 2) / 20.0).astype("float32")  # hot outside the lungs
    boxed = "\n".join(gradcam_caption(fake_result(heatmap=shoulder, crop_box=(0, 0, 48, 64))))
    assert ("of the lung box); it does not single out the lungs and its hottest spot lies outside them: read the "
            "map with care.") in boxed
    assert "nothing is computed outside the lung box the model reads" in boxed
    averaged = "\n".join(gradcam_caption(fake_result(uncertainty={"tta": 4, "tta_spread": 0.02})))
    assert "Probabilities averaged over 4 test-time views (spread 0.020); the heatmap is of the film as given." in averaged
    votes = {**fake_result().decision, "rule": "majority_vote", "member_thresholds": {"alpha": 0.7, "beta": 0.65}}
    assert "votes non_covid (it votes covid at p(covid) >= 0.650)" in "\n".join(gradcam_caption(fake_result(decision=votes)))
    own = fake_result(vote_thresholds={"alpha": 0.72, "beta": 0.72})  # a weighted average's members, as results carry
    assert "Member alpha: p(covid) = 0.950, votes covid (it votes covid at p(covid) >= 0.720)" in "\n".join(
        gradcam_caption(own))


def test_a_referred_film_s_caption_says_why_it_was_referred():
    decision = {"rule": "threshold", "positive_class": "covid", "threshold": 0.761, "origin": "preset",
                "refer": {"low": 0.616, "high": 0.846, "out_of_distribution": True, "input_checks": True}}
    rule = ReferRule(0.616, 0.846, out_of_distribution=True, input_checks=True)
    in_band = "\n".join(gradcam_caption(fake_result(
        label="refer", would_be_label="covid", decision=decision, probabilities={"non_covid": 0.225, "covid": 0.775},
        refer_reasons=rule.reasons(0.775, positive_class="covid"),
    )))
    assert ("label refer (would be covid) (rule: covid if p(covid) >= 0.761; referred: p(covid) 0.775 in the refer "
            "band [0.616, 0.846))" in in_band)
    unusual = "\n".join(gradcam_caption(fake_result(
        label="refer", would_be_label="covid", decision=decision,
        out_of_distribution={"distance": 0.2, "threshold": 0.03, "flagged": True},
        refer_reasons=rule.reasons(0.972, out_of_distribution=True, failed_checks=["view"]),
    )))
    assert "(rule: covid if p(covid) >= 0.761; referred: out of distribution; input check failed: view)" in unusual
    assert unusual.startswith("NOT AN ANSWER (referred: out of distribution; input check failed: view): have a "
                              "person read this film")  # first: a picture passed around alone is no answer
    answered = "\n".join(gradcam_caption(fake_result(decision=decision)))
    assert "referred" not in answered and "NOT AN ANSWER" not in answered  # answered: no reason


def test_the_mask_caption_gives_the_lung_fraction_and_the_qc_verdict():
    ok = mask_caption(fake_result(lung_fraction=0.3125, lung_components=2))
    assert ok[0] == "Lung mask (tinted, magenta edge): 31.2% of the image in 2 piece(s)"
    assert ok[1] == "Mask QC: ok"
    warned = mask_caption(
        fake_result(
            warnings=[
                ("mask_below_diaphragm", "lung mask has 1 piece(s) below the lungs"),
                ("view", "view LL is not one of PA, AP"),
            ]
        )
    )
    assert warned[1] == "Mask QC: check the mask: lung mask has 1 piece(s) below the lungs"
    assert warned[2] == "Notes: view LL is not one of PA, AP" and warned[-1] == f"Film: chest.png. {DISCLAIMER}"
    # the view check that reads the mask is about the mask: its QC line is not "ok" beside it
    from_mask = mask_caption(fake_result(warnings=[("view", "lung mask looks like a lateral view (...), or one lung "
                                                            "is mostly missing from it")]))
    assert from_mask[1].startswith("Mask QC: check the mask: lung mask looks like a lateral view")
    speck = fake_result().mask.copy()
    speck[2, 2] = True  # a speck the piece count leaves out
    assert mask_caption(fake_result(mask=speck, lung_components=1))[0].endswith(
        "in 1 piece(s) (smaller specks are drawn, not counted)")


def test_an_overlay_of_another_film_is_not_replaced_and_long_names_are_cut_to_fit(tmp_path):
    from keras_covidcxr import OutputExistsError

    films = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        films.append(tmp_path / folder / "x.png")
        Image.new("L", (4, 4)).save(films[-1])
    Image.new("L", (4, 4), 255).save(films[1])  # another film of the same name
    first = save_overlays(fake_result(source=str(films[0])), tmp_path / "overlays", "x")
    (tmp_path / "link").symlink_to(tmp_path / "a")
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "x.png").write_bytes(films[0].read_bytes())
    for same in (films[0], tmp_path / "link" / "x.png", tmp_path / "copy" / "x.png"):  # the same film, any path
        assert save_overlays(fake_result(source=str(same)), tmp_path / "overlays", "x") == first
    with pytest.raises(OutputExistsError, match=r"x_mask.png: exists and shows another film \(.*/x.png\)"):
        save_overlays(fake_result(source=str(films[1])), tmp_path / "overlays", "x")
    long_stem = "L" * 250  # with "_gradcam.png" 262 bytes: more than file systems allow
    written = save_overlays(fake_result(source=str(films[1])), tmp_path / "overlays", long_stem)
    assert [len(path.name) for path in written] == [len(written[1].name) - 3, 255]
    assert all(path.name.startswith("L" * 200) for path in written)


def test_a_failed_result_gets_a_named_error_not_a_crash(tmp_path):
    from keras_covidcxr.errors import CovidCXRError

    failed = PipelineResult(source="/data/missing.png", label=None, probabilities=None,
                            error="/data/missing.png: file not found")
    with pytest.raises(CovidCXRError, match=r"^/data/missing.png: no overlays for a film that failed \("):
        save_overlays(failed, tmp_path, "missing")
    assert list(tmp_path.iterdir()) == []
