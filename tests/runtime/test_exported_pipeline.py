"""Export to ONNX / LiteRT / SavedModel and the light runtime: the same results as the Keras pipeline, without Keras."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the light runtime's tests need onnxruntime (the onnx extra)")
pytest.importorskip("tf2onnx", reason="ONNX export with the TensorFlow backend needs tf2onnx (the export extra)")

from keras_covidcxr import ConfigError, PresetError  # noqa: E402


@pytest.fixture
def varied_images(chest_images):
    return [np.clip(image * scale, 0, 1) for image in chest_images for scale in (1.0, 0.8, 1.2)]


def test_the_light_runtime_gives_the_keras_results(small_pipeline, exported_folder, varied_images):
    from keras_covidcxr.runtime import ExportedPipeline

    exported = ExportedPipeline(exported_folder)
    assert exported.decision_rule == small_pipeline.decision_rule
    for tta in (1, 3):
        expected = small_pipeline.predict(varied_images, tta=tta)
        got = exported.predict(varied_images, tta=tta)
        for a, b in zip(expected, got):
            assert b.label == a.label and b.would_be_label == a.would_be_label
            assert b.vote_thresholds == pytest.approx(a.vote_thresholds)  # what the overlay captions show
            for name in a.probabilities:
                assert b.probabilities[name] == pytest.approx(a.probabilities[name], abs=1e-4)
                assert b.raw_probabilities[name] == pytest.approx(a.raw_probabilities[name], abs=1e-4)
            assert np.mean(a.mask == b.mask) >= 0.999
            assert b.out_of_distribution["distance"] == pytest.approx(a.out_of_distribution["distance"], abs=1e-4)
            assert [code for code, _ in b.warnings] == [code for code, _ in a.warnings]
            assert b.uncertainty["member_spread"] == pytest.approx(a.uncertainty["member_spread"], abs=1e-4)
    manifest = json.loads((exported_folder / "export.json").read_text())
    assert manifest["class_names"] == ["non_covid", "covid"] and manifest["config"]["calibration"]["slope"] == 3.0
    with pytest.raises(ConfigError, match="Grad-CAM"):
        exported.predict(varied_images[:1], explain=True)


def test_the_runtime_never_imports_keras_or_tensorflow(exported_folder, chest_images, tmp_path):
    from PIL import Image

    image = tmp_path / "chest.png"
    Image.fromarray((chest_images[0] * 255).astype(np.uint8)).save(image)
    code = (
        "import sys\n"
        "from keras_covidcxr.runtime import ExportedPipeline\n"
        f"result = ExportedPipeline({str(exported_folder)!r}).predict([{str(image)!r}])[0]\n"
        "assert result.error is None and result.label, result\n"
        "heavy = [m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "XNNPACK" not in run.stderr  # LiteRT's start-up notice stays off the terminal


def test_a_saved_model_export_reloads_with_tensorflow_and_matches(small_pipeline, tmp_path):
    tf = pytest.importorskip("tensorflow")
    from keras_covidcxr.models.pipeline.export import export_pipeline

    folder = export_pipeline(small_pipeline, tmp_path / "saved", format="tf_saved_model")
    batch = np.random.default_rng(1).random((2, 32, 32, 1)).astype("float32")
    reloaded = tf.saved_model.load(str(folder / "ensemble"))
    got = reloaded.serve(tf.constant(batch))
    want = small_pipeline.ensemble.predict_on_batch(batch)
    np.testing.assert_allclose(np.asarray(got["probabilities"]), np.asarray(want["probabilities"]), atol=1e-5)


def test_export_refuses_what_it_cannot_do(small_pipeline, onnx_export, tmp_path, monkeypatch):
    from keras_covidcxr.models.pipeline.export import export_pipeline
    from keras_covidcxr.runtime import ExportedPipeline

    with pytest.raises(ConfigError, match="'png'.*onnx, litert, tf_saved_model"):
        export_pipeline(small_pipeline, tmp_path / "x", format="png")
    with monkeypatch.context() as patch:
        patch.setattr(keras.backend, "backend", lambda: "jax")
        for format in ("litert", "onnx"):  # jax2onnx names the ONNX graph's outputs otherwise: the runtime fails
            with pytest.raises(ConfigError, match=f"cannot export {format} from the jax backend: run the export with "
                                                  r"KERAS_BACKEND=tensorflow .*, or export tf_saved_model$"):
                export_pipeline(small_pipeline, tmp_path / "x", format=format)
    assert not (tmp_path / "x").exists()
    import importlib.util

    from keras_covidcxr.errors import MissingDependencyError

    find_spec = importlib.util.find_spec
    with monkeypatch.context() as patch:  # without TensorFlow no format can be written: said before any work
        patch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else find_spec(name, *a))
        for format in ("onnx", "tf_saved_model"):
            with pytest.raises(MissingDependencyError, match=f"exporting {format} needs TensorFlow, which writes every "
                                                             "format from any backend"):
                export_pipeline(small_pipeline, tmp_path / "x", format=format)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not an empty folder"):
        export_pipeline(small_pipeline, tmp_path / "mine", format="onnx")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(PresetError, match="export.json"):
        ExportedPipeline(tmp_path / "mine")
    older = tmp_path / "older"
    older.mkdir()
    (older / "export.json").write_text(json.dumps({"covidcxr_export": 1, "format": "onnx"}))
    with pytest.raises(PresetError, match="export format 1.*export the preset again"):
        ExportedPipeline(older)


def test_a_changed_or_missing_export_file_is_refused_by_name(exported_folder, tmp_path):
    import shutil

    from keras_covidcxr.runtime import ExportedPipeline

    manifest = json.loads((exported_folder / "export.json").read_text())
    graph = exported_folder / manifest["graphs"]["ensemble"]
    assert set(manifest["files"]) == {*manifest["graphs"].values(), "out_of_distribution.npz"}
    changed = shutil.copytree(exported_folder, tmp_path / "changed")
    data = bytearray((changed / graph.name).read_bytes())
    data[-100] ^= 0xFF  # one byte of a weight: the graph would still load, with a wrong number
    (changed / graph.name).write_bytes(bytes(data))
    with pytest.raises(PresetError, match=f"{graph.name}: its sha256 differs.*export the preset again"):
        ExportedPipeline(changed)
    (changed / graph.name).unlink()
    with pytest.raises(PresetError, match=f"{graph.name}: missing from the export"):
        ExportedPipeline(changed)


def test_edited_settings_a_graph_from_elsewhere_and_a_file_path_are_refused(exported_folder, tmp_path):
    import shutil

    from keras_covidcxr.runtime import ExportedPipeline

    edited = shutil.copytree(exported_folder, tmp_path / "edited")
    manifest = json.loads((edited / "export.json").read_text())
    manifest["config"]["ensemble"]["config"]["threshold"] = 0.01  # would label nearly every film covid
    (edited / "export.json").write_text(json.dumps(manifest))
    with pytest.raises(PresetError, match="settings were edited after export"):
        ExportedPipeline(edited)
    manifest = json.loads((exported_folder / "export.json").read_text())
    shutil.copy(exported_folder / manifest["graphs"]["segmenter"], tmp_path / "elsewhere.onnx")
    manifest["graphs"]["segmenter"] = str(tmp_path / "elsewhere.onnx")
    del manifest["settings_sha256"]
    (edited / "export.json").write_text(json.dumps(manifest))
    with pytest.raises(PresetError, match=r"settings fingerprint \(settings_sha256\) is missing"):
        ExportedPipeline(edited)
    manifest["package_version"] = "0.4.9"  # exported before the fingerprint: accepted without one
    (edited / "export.json").write_text(json.dumps(manifest))
    with pytest.raises(PresetError, match="elsewhere.onnx is not among its checksummed files"):
        ExportedPipeline(edited)
    for key in ("format", "graphs", "config"):
        broken = {k: v for k, v in json.loads((exported_folder / "export.json").read_text()).items()
                  if k not in (key, "settings_sha256")}
        broken["package_version"] = "0.4.9"
        (edited / "export.json").write_text(json.dumps(broken))
        with pytest.raises(PresetError, match=f"export.json: not a valid export \\(missing '{key}'\\)"):
            ExportedPipeline(edited)
    with pytest.raises(ConfigError, match="refer must be True or False, got 'no'"):
        ExportedPipeline(exported_folder, refer="no")
    with pytest.raises(PresetError, match="is a file; give the folder"):
        ExportedPipeline(exported_folder / "export.json")


def test_the_ensemble_graph_gives_the_out_of_distribution_features(small_pipeline, onnx_export):
    manifest = json.loads((onnx_export / "export.json").read_text())
    assert set(manifest["graphs"]) == {"segmenter", "ensemble"}  # no second pass of the member's backbone
    assert small_pipeline.out_of_distribution is not None


@pytest.mark.parametrize("ensemble, num_classes, export_format",
                         [("weighted_average", 3, "onnx"), ("majority_vote", 2, "litert")])
def test_argmax_rules_export_and_match(make_pipeline, varied_images, tmp_path, ensemble, num_classes, export_format,
                                       request):
    """Three classes and majority votes label by the largest value: Keras' argmax made ops neither engine has."""
    from keras_covidcxr import ReferRule
    from keras_covidcxr.runtime import ExportedPipeline

    if export_format == "litert":
        request.getfixturevalue("litert_available")
    pipeline = make_pipeline(ensemble=ensemble, num_classes=num_classes)._sharing_models(
        refer_rule=ReferRule(0.0, 0.0, input_checks=True))
    exported = ExportedPipeline(pipeline.export(tmp_path / "export", format=export_format))
    for a, b in zip(pipeline.predict(varied_images), exported.predict(varied_images)):
        assert (b.label, b.would_be_label) == (a.label, a.would_be_label)
        assert [m["label"] for m in b.members.values()] == [m["label"] for m in a.members.values()]
        for name in a.probabilities:
            assert b.probabilities[name] == pytest.approx(a.probabilities[name], abs=1e-4)


def test_a_graph_the_runtime_cannot_run_is_not_exported(tmp_path):
    from keras_covidcxr.models.pipeline.export import _check_graph_runs

    broken = tmp_path / "ensemble.onnx"
    broken.write_bytes(b"not an onnx graph")
    with pytest.raises(ConfigError, match=r"the exported ensemble graph does not run in the onnx runtime, so it was "
                                          r"not written: cannot load the ONNX graph"):
        _check_graph_runs(broken, (8, 8, 1), "onnx", "ensemble")


@pytest.mark.slow
@pytest.mark.parametrize("export_format", ["onnx", "litert"])
def test_the_bundled_preset_exports_and_matches(tmp_path, chest_images, export_format, request):
    """covidcxr_lite through ONNX Runtime and LiteRT: probabilities within 1e-4, masks on >= 99.9% of pixels (~1 min)."""
    import keras_covidcxr
    from keras_covidcxr import Pipeline, sample_images
    from keras_covidcxr.runtime import ExportedPipeline

    if export_format == "litert":
        request.getfixturevalue("litert_available")
    pipeline = Pipeline.from_preset(keras_covidcxr.DEFAULT_PRESET)
    exported = ExportedPipeline(pipeline.export(tmp_path / "lite", format=export_format))
    images = [str(path) for path in sample_images()] + chest_images
    for a, b in zip(pipeline.predict(images), exported.predict(images)):
        assert (a.label, a.would_be_label) == (b.label, b.would_be_label)
        assert b.probabilities["covid"] == pytest.approx(a.probabilities["covid"], abs=1e-4)
        assert b.raw_probabilities["covid"] == pytest.approx(a.raw_probabilities["covid"], abs=1e-4)
        assert np.mean(a.mask == b.mask) >= 0.999
        assert b.out_of_distribution["flagged"] == a.out_of_distribution["flagged"]


def test_check_view_and_no_refer_work_as_in_the_keras_pipeline(small_pipeline, onnx_export, varied_images):
    from keras_covidcxr.runtime import ExportedPipeline

    exported = ExportedPipeline(onnx_export, refer=False, check_view=True)
    assert exported.input_contract.check_view_from_mask and exported.decision_rule.refer is None
    keras_pipeline = small_pipeline.with_input_contract(check_view_from_mask=True).without_refer()
    for a, b in zip(keras_pipeline.predict(varied_images), exported.predict(varied_images)):
        assert b.label == a.label and b.would_be_label is None
        assert [code for code, _ in b.warnings] == [code for code, _ in a.warnings]


def test_a_threshold_and_no_refer_set_after_loading_work_as_in_the_keras_pipeline(small_pipeline, onnx_export,
                                                                                 varied_images):
    from keras_covidcxr.runtime import ExportedPipeline

    exported = ExportedPipeline(onnx_export)
    exported.predict(varied_images[:1])  # the refer rule in force is cached by then: the copies must not keep it
    for keras_pipeline, other in [(small_pipeline.with_decision_threshold(0.2), exported.with_decision_threshold(0.2)),
                                  (small_pipeline.without_refer(), exported.without_refer()),
                                  (small_pipeline, exported.with_decision_threshold(0.2).with_decision_threshold(None))]:
        assert other.decision_rule == keras_pipeline.decision_rule
        assert [r.label for r in other.predict(varied_images)] == [r.label for r in keras_pipeline.predict(varied_images)]
    assert exported.decision_rule == small_pipeline.decision_rule  # the original is unchanged
    with pytest.raises(ConfigError, match="decision threshold must be a number strictly between 0 and 1, got 1.5"):
        ExportedPipeline(onnx_export, decision_threshold=1.5)  # the user's value, not a broken export.json


def test_a_pipeline_exported_with_a_threshold_of_its_own_labels_by_it(small_pipeline, varied_images, tmp_path):
    from keras_covidcxr.runtime import ExportedPipeline

    chosen = small_pipeline.with_decision_threshold(0.2)
    expected = [r.label for r in chosen.predict(varied_images)]
    assert expected != [r.label for r in small_pipeline.predict(varied_images)]  # the threshold matters here
    exported = ExportedPipeline(chosen.export(tmp_path / "chosen", format="onnx"))
    assert exported.decision_rule.threshold == pytest.approx(0.2)
    assert exported.decision_rule.origin == chosen.decision_rule.origin == "user"  # as the pipeline exported says
    assert "(threshold given by the user)" in exported.decision_rule.describe()
    assert [r.label for r in exported.predict(varied_images)] == expected  # not the graph's own threshold's


def test_the_runtime_threads_do_not_spin_between_graphs(onnx_export):
    from keras_covidcxr.runtime import ExportedPipeline

    # spinning threads took the 2 cores from the numpy steps: batch 1 ran at 0.83x Keras, 1.35x without
    for graph in ExportedPipeline(onnx_export)._graphs.values():
        assert graph._session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_export_json_says_how_to_feed_the_graphs_without_this_package(small_pipeline, onnx_export, chest_images):
    import onnxruntime
    from PIL import Image

    from keras_covidcxr.preprocessing.model_inputs import segmenter_input

    manifest = json.loads((onnx_export / "export.json").read_text())
    described = manifest["graph_inputs"]
    assert "standardised per image, (x - mean) / std" in described["segmenter"]
    assert "decision is decision_rule" in described["ensemble"]
    film = chest_images[0]
    size = manifest["segmenter_size"]
    # as described: resize, standardise, run; not as it was easy to guess (the [0, 1] film straight in)
    by_hand = np.asarray(Image.fromarray(film.astype("float32"), mode="F").resize((size, size), Image.BILINEAR))
    by_hand = ((by_hand - by_hand.mean()) / by_hand.std())[None, ..., None].astype("float32")
    np.testing.assert_allclose(by_hand[0], segmenter_input(film, size), atol=1e-5)
    session = onnxruntime.InferenceSession(str(onnx_export / manifest["graphs"]["segmenter"]))
    probabilities = np.squeeze(session.run(None, {session.get_inputs()[0].name: by_hand})[0])
    expected = np.squeeze(small_pipeline.segmenter.predict(by_hand, verbose=0))
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)
