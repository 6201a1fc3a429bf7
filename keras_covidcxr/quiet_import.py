"""Import Keras without TensorFlow's native start-up notices on the terminal.

TensorFlow 2.2x prints absl and oneDNN notices from C++ while it loads ("All log messages before
absl::InitializeLog() ...", "oneDNN custom operations are on ..."), and no environment variable
silences them all. The package's lazy names and the CLI import through `muted_native_stderr`.

Example:
    >>> with muted_native_stderr():
    ...     import json
"""

import contextlib
import importlib.util
import json
import os
import sys
import tempfile

from keras_covidcxr.errors import ConfigError, MissingDependencyError

BACKEND_PACKAGES = ("keras", "tensorflow", "jax", "jaxlib", "torch")
# The [keras] extra besides Keras itself (pyproject.toml), imported where they are used.
FULL_INSTALL_PACKAGES = ("sklearn", "matplotlib", "huggingface_hub", "safetensors")


@contextlib.contextmanager
def captured_native_stderr():
    """Send the process's native stderr (fd 2) to a temporary file inside the block; yield that file.

    For notices that C++ libraries print straight to fd 2 (TensorFlow's start-up, LiteRT's
    "Created TensorFlow Lite XNNPACK delegate"); Python-level stderr is untouched.
    """
    sys.stderr.flush()
    saved_fd = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved_fd, 2)
            os.close(saved_fd)


@contextlib.contextmanager
def muted_native_stderr():
    """Mute the process's native stderr (fd 2) while Keras is first imported inside the block.

    Python-level stderr is untouched. If the block fails, what was printed meanwhile is shown (not on
    Ctrl-C or a kill: that is no failure of the import); a Keras backend that cannot load becomes a
    `MissingDependencyError` that says what to install. Once Keras is imported this does nothing.
    """
    if "keras" in sys.modules:
        yield
        return
    with captured_native_stderr() as captured:
        try:
            yield
            return
        except BaseException as error:
            failure = error
            captured.seek(0)
            said = captured.read()
    if not isinstance(failure, KeyboardInterrupt):  # the CLI's SIGTERM is a KeyboardInterrupt too
        sys.stderr.write(said.decode(errors="replace"))
    missing = missing_dependency(failure)
    if missing is not None:
        raise missing from failure
    raise failure


def missing_dependency(failure):
    """The `MissingDependencyError` (saying what to install) for an ImportError of a Keras-path package, a
    `ConfigError` for a backend name Keras does not know, else None.

    The base install has only the light runtime; Keras, its backend and the packages of training,
    evaluation and figures come with `[tensorflow-cpu]` (or `[tensorflow]`, `[jax]`).
    """
    if isinstance(failure, ValueError) and "Unable to import backend" in str(failure):
        return ConfigError(
            f"{_backend_setting()} names no Keras backend: use tensorflow, jax or torch (lower case)")
    if not isinstance(failure, ImportError):
        return None
    package = (failure.name or "").split(".")[0]
    install = "pip install 'keras-covidcxr[tensorflow-cpu]' (or [tensorflow], [jax])"
    if package == "keras" or package in FULL_INSTALL_PACKAGES:
        return MissingDependencyError(
            f"this needs the full install ({package} is missing; the base install runs only exported "
            f"models, `covidcxr predict --exported FOLDER`): {install}"
        )
    if package in BACKEND_PACKAGES:
        backend = configured_backend()
        installed = [name for name in ("jax", "torch") if name != backend and importlib.util.find_spec(name)]
        fix = (f"set KERAS_BACKEND={installed[0]} to use the {installed[0]} installed here, or install one: {install}"
               if installed else f"install one: {install}")
        return MissingDependencyError(f"Keras cannot load its {backend} backend ({failure}); {fix}")
    return None


def configured_backend():
    """The backend Keras loads, decided as Keras decides: a non-empty KERAS_BACKEND, else keras.json's, else
    tensorflow (the one loaded, once Keras is imported)."""
    if "keras" in sys.modules and hasattr(sys.modules["keras"], "backend"):
        return sys.modules["keras"].backend.backend()
    return os.environ.get("KERAS_BACKEND") or _keras_json().get("backend", "tensorflow")


def _backend_setting():
    if os.environ.get("KERAS_BACKEND"):
        return f"KERAS_BACKEND={os.environ['KERAS_BACKEND']!r}"
    return f"the backend {configured_backend()!r} of {_keras_json_path()}"


def _keras_json_path():
    """Where Keras reads keras.json: KERAS_HOME if set, else ~/.keras, or /tmp/.keras when ~ is not writable."""
    if "KERAS_HOME" in os.environ:
        return os.path.join(os.environ["KERAS_HOME"], "keras.json")
    home = os.path.expanduser("~")
    return os.path.join(home if os.access(home, os.W_OK) else "/tmp", ".keras", "keras.json")


def _keras_json():
    try:
        with open(_keras_json_path()) as file:
            settings = json.load(file)
    except (OSError, ValueError):
        return {}
    return settings if isinstance(settings, dict) else {}


def import_keras_quietly():
    """Import Keras and its backend with the native start-up notices muted."""
    with muted_native_stderr():
        import keras  # noqa: F401
