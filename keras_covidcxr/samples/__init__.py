"""Chest X-rays bundled with the package (licences in README.md beside this file)."""

from pathlib import Path

SAMPLES_DIR = Path(__file__).parent


def sample_images():
    """Paths of the bundled sample chest X-rays (masks excluded), sorted.

    Example:
        >>> [p.name for p in sample_images()]
        ['chest_xray_covid_pa.png', 'chest_xray_normal_pa.png']
    """
    return sorted(p for p in SAMPLES_DIR.glob("*.png") if not p.stem.endswith("_lung_mask"))
