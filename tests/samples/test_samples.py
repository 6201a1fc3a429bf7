import numpy as np

from keras_covidcxr import load_image, sample_images
from keras_covidcxr.samples import SAMPLES_DIR


def test_samples_are_readable_chest_xrays_with_a_licence_note():
    samples = sample_images()
    assert [p.name for p in samples] == ["chest_xray_covid_pa.png"]
    for path in samples:
        image = load_image(path)
        assert image.pixels.ndim == 2 and min(image.pixels.shape) >= 256
        assert 0.0 <= image.pixels.min() < image.pixels.max() <= 1.0
        with_mask = path.with_name(f"{path.stem}_lung_mask.png")
        mask = np.asarray(load_image(with_mask).pixels) > 0.5
        assert mask.shape == image.pixels.shape and 0.1 < mask.mean() < 0.6
    readme = (SAMPLES_DIR / "README.md").read_text()
    assert "chest_xray_covid_pa.png" in readme and "licen" in readme.lower()
