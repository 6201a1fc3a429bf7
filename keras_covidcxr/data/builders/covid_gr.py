"""Build a classification manifest from COVID-GR-1.0 (Tabik et al. 2020): folders `P/` and `N/`.

`P` holds RT-PCR-positive films (covid) and `N` negative ones (normal); one film per patient,
so each file is its own patient (`covid-gr:P/<file stem>`: a name in both folders is two patients). The paper used 426 + 426 images, split 80/20.

Example:
    >>> manifest, report = from_covid_gr("COVID-GR-1.0")  # doctest: +SKIP
"""

from keras_covidcxr.data.build_report import BuiltManifest
from keras_covidcxr.data.builders.class_folders import from_class_folders

COVID_GR_CLASSES = {"P": "covid", "N": "normal"}


def from_covid_gr(root, progress=None):
    """Cls rows for `root/P/*` (covid) and `root/N/*` (normal); patient ids `covid-gr:<P or N>/<file stem>`."""
    manifest, report = from_class_folders(
        root,
        class_map=COVID_GR_CLASSES,
        source="covid-gr",
        progress=progress,
    )
    report.builder = "covid-gr"
    return BuiltManifest(manifest, report)
