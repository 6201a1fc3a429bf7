"""Every error that keras-covidcxr raises on purpose, and its one warning.

All derive from `CovidCXRError`, so a caller (or the CLI) can catch one class
and report the message, which always names the file or preset and the reason.
"""


class CovidCXRError(Exception):
    """Base class of every error raised on purpose by keras-covidcxr."""


class InputError(CovidCXRError):
    """An input image could not be read or is outside the input contract."""


class ImageDecodeError(InputError):
    """A file is missing, truncated, corrupt or not an image we can decode."""


class UnsupportedImageError(InputError):
    """A readable file that holds something we refuse (multi-frame, 3-D, too large, ...)."""


class MissingDependencyError(CovidCXRError):
    """An optional dependency (an extra) is needed for this input or feature."""


class InputContractError(InputError):
    """An image that decodes fine but is outside what the models were made for."""


class PresetError(CovidCXRError):
    """A preset is missing, incomplete, tampered with or incompatible."""


class ConfigError(CovidCXRError):
    """A component or pipeline was configured with invalid arguments."""


class OutputExistsError(CovidCXRError, FileExistsError):
    """An output would replace a file or folder that is not ours; nothing was written."""


class DatasetError(CovidCXRError):
    """A manifest, dataset folder or annotation file is missing, malformed or leaks data.

    `problems` holds every "file:line: reason" found; the message shows the first few.
    """

    def __init__(self, message, problems=()):
        super().__init__(message)
        self.problems = list(problems)


class UntrainedPresetWarning(UserWarning):
    """A preset that records no training was loaded: its outputs mean nothing."""
