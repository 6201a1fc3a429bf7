"""`keras_covidcxr.io` exports its reading and writing names, the same objects as the top-level package."""

import subprocess
import sys

import keras_covidcxr
import keras_covidcxr.io


def test_the_io_names_are_the_top_level_ones():
    from keras_covidcxr.io import LoadedImage, load_image, save_overlays

    assert load_image is keras_covidcxr.load_image
    assert LoadedImage is keras_covidcxr.LoadedImage
    assert save_overlays is keras_covidcxr.save_overlays
    for name in keras_covidcxr.io.__all__:
        assert getattr(keras_covidcxr.io, name).__module__.startswith("keras_covidcxr.io."), name
    assert set(keras_covidcxr.io.__all__) <= set(dir(keras_covidcxr.io))


def test_reading_an_image_through_io_imports_no_keras():
    code = (
        "import sys\n"
        "from keras_covidcxr.io import load_image\n"
        "from keras_covidcxr.samples import sample_images\n"
        "assert load_image(sample_images()[0]).pixels.ndim == 2\n"
        "heavy = [m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
