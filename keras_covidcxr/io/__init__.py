"""Reading chest X-rays and writing outputs safely.

The names below are imported on first use, so `keras_covidcxr.io.atomic` (used by
the CLI's fast paths) does not pull in Pillow or NumPy; none of them imports Keras.

Example:
    >>> from keras_covidcxr.io import load_image
    >>> image = load_image("chest.png")  # doctest: +SKIP
    >>> image.pixels.shape, image.metadata["format"]  # doctest: +SKIP
"""

from keras_covidcxr._lazy_exports import lazy_exports

# public name -> module that defines it
_LAZY = {
    "load_image": "keras_covidcxr.io.image_loader",
    "LoadedImage": "keras_covidcxr.io.image_loader",
    "file_being_decoded": "keras_covidcxr.io.image_loader",
    "pixels_from_array": "keras_covidcxr.io.array_input",
    "save_overlays": "keras_covidcxr.io.overlays",
    "printable_text": "keras_covidcxr.io.overlay_captions",
    "atomic_write": "keras_covidcxr.io.atomic",
    "atomic_directory": "keras_covidcxr.io.atomic",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(globals(), _LAZY)
