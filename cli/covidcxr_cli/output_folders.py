"""Output targets checked before any work: a run that fails to write after minutes of reading is refused first."""

import tempfile

import keras_covidcxr


def check_writable_folder(folder, problem):
    """`folder`, or the nearest existing folder above it (where it would be created), must be writable."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise keras_covidcxr.ConfigError(f"{problem}: {existing} is not a folder")
    try:  # a file made there, not os.access: a read-only or special file system refuses even root
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise keras_covidcxr.ConfigError(f"{problem}: {existing} is not writable ({error.strerror})") from error
