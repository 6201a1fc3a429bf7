import numpy as np

from keras_covidcxr import load_image, sample_images
from keras_covidcxr.samples import SAMPLES_DIR


def test_samples_are_readable_chest_xrays_with_a_licence_note():
    samples = sample_images()
    assert [p.name for p in samples] == ["chest_xray_covid_pa.png", "chest_xray_normal_pa.png"]
    for path in samples:
        image = load_image(path)
        assert image.pixels.ndim == 2 and min(image.pixels.shape) >= 256
        assert 0.0 <= image.pixels.min() < image.pixels.max() <= 1.0
    covid = sample_images()[0]
    mask = np.asarray(load_image(covid.with_name(f"{covid.stem}_lung_mask.png")).pixels) > 0.5
    assert mask.shape == load_image(covid).pixels.shape and 0.1 < mask.mean() < 0.6
    readme = (SAMPLES_DIR / "README.md").read_text()
    assert "licen" in readme.lower()
    for path in samples:
        row = next(line for line in readme.splitlines() if f"`{path.name}`" in line)
        assert "CC BY" in row and "NC" not in row  # a licence that allows bundling
