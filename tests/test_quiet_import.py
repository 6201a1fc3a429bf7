"""The Python API loads the backend without TensorFlow's native start-up notices."""

import importlib.util
import subprocess
import sys

import pytest


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="TensorFlow prints the notices; not installed")
def test_the_first_model_name_loads_keras_without_native_notices(tmp_path):
    code = "import keras_covidcxr\nkeras_covidcxr.Pipeline\nimport sys\nprint('keras' in sys.modules)\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "KERAS_BACKEND": "tensorflow"}, timeout=300)
    assert done.stdout.strip() == "True"
    assert "absl::InitializeLog" not in done.stderr and "oneDNN" not in done.stderr and "cpu_feature_guard" not in done.stderr


def test_what_was_printed_is_shown_when_the_import_fails_not_when_it_is_interrupted():
    code = (
        "import os, sys\n"
        "from keras_covidcxr.quiet_import import muted_native_stderr\n"
        "for error in (KeyboardInterrupt, RuntimeError):\n"
        "    try:\n"
        "        with muted_native_stderr():\n"
        "            os.write(2, f'notice before {error.__name__}\\n'.encode())\n"
        "            raise error\n"
        "    except BaseException:\n"
        "        pass\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stderr == "notice before RuntimeError\n"  # Ctrl-C is no failure of the import: nothing replayed


def test_a_missing_backend_names_the_backend_installed_here(monkeypatch, tmp_path):
    from keras_covidcxr.quiet_import import missing_dependency

    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # no keras.json: Keras's default, tensorflow
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "jax" else
                        None if name == "torch" else find_spec(name, *a))
    message = str(missing_dependency(ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")))
    assert "Keras cannot load its tensorflow backend" in message and "set KERAS_BACKEND=jax to use the jax" in message
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    message = str(missing_dependency(ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")))
    assert "KERAS_BACKEND" not in message and "install one: pip install" in message


def test_a_backend_name_keras_does_not_know_is_named_with_where_it_was_set(monkeypatch, tmp_path):
    from keras_covidcxr.quiet_import import missing_dependency

    unknown = ValueError("Unable to import backend : JAX")  # what Keras raises
    monkeypatch.delitem(sys.modules, "keras", raising=False)  # as when its import failed: read from the settings
    monkeypatch.setenv("KERAS_BACKEND", "JAX")
    assert str(missing_dependency(unknown)) == ("KERAS_BACKEND='JAX' names no Keras backend: use tensorflow, jax or "
                                                "torch (lower case)")
    monkeypatch.delenv("KERAS_BACKEND")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "keras.json").write_text('{"backend": "torch"}')
    message = str(missing_dependency(ModuleNotFoundError("No module named 'torch'", name="torch")))
    assert message.startswith("Keras cannot load its torch backend")  # keras.json's, not "tensorflow"
    (tmp_path / "keras.json").write_text('{"backend": "Jax"}')
    assert f"the backend 'Jax' of {tmp_path / 'keras.json'} names no Keras backend" in str(missing_dependency(unknown))
    assert missing_dependency(ValueError("another problem")) is None
