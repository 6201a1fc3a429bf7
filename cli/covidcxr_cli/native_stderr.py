"""Import Keras without TensorFlow's native start-up notices on the terminal."""

import os
import sys
import tempfile

import keras_covidcxr


def import_keras_quietly():
    """Import Keras and its backend with the process's native stderr (fd 2) muted.

    TensorFlow 2.2x prints absl and oneDNN notices from C++ while it loads, and no environment variable
    silences them all. Python-level stderr is untouched; if the import fails, what it printed is shown,
    and a missing backend becomes a MissingDependencyError that says what to install.
    """
    if "keras" in sys.modules:
        return
    sys.stderr.flush()
    saved_fd = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras  # noqa: F401
        except BaseException as error:
            os.dup2(saved_fd, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            if isinstance(error, ImportError):
                backend = os.environ.get("KERAS_BACKEND", "tensorflow")
                raise keras_covidcxr.MissingDependencyError(
                    f"Keras cannot load its {backend} backend ({error}); install one: "
                    "pip install 'keras-covidcxr[tensorflow-cpu]' (or [tensorflow], [jax])"
                ) from error
            raise
        finally:
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
