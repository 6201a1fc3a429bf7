"""Map the spellings public datasets use onto the manifest's vocabulary (views, labels, sex, age).

Example:
    >>> normalize_view("AP supine"), normalize_view("Lateral"), normalize_view("")
    ('AP Supine', 'L', 'unknown')
    >>> normalize_label("Pneumonia/Viral/COVID-19"), normalize_label("No Finding"), normalize_label("Non-COVID")
    ('covid', 'normal', None)
"""

import math
import re

_VIEW_ALIASES = {
    "pa": "PA",
    "posteroanterior": "PA",
    "ap": "AP",
    "anteroposterior": "AP",
    "ap erect": "AP",
    "ap upright": "AP",
    "ap semi erect": "AP",
    "ap supine": "AP Supine",
    "ap-supine": "AP Supine",
    "supine ap": "AP Supine",
    "supine": "AP Supine",
    "l": "L",
    "ll": "L",
    "lat": "L",
    "lateral": "L",
    "left lateral": "L",
    "right lateral": "L",
    "rl": "L",
    "lateral decubitus": "L",
}

# Findings that are a pneumonia of another cause (ieee8023's `finding` taxonomy, COVIDx labels).
_PNEUMONIA_WORDS = (
    "pneumonia",
    "bacterial",
    "viral",
    "fungal",
    "streptococcus",
    "klebsiella",
    "mycoplasma",
    "legionella",
    "chlamydophila",
    "e.coli",
    "pneumocystis",
    "sars",
    "mers",
    "influenza",
    "varicella",
    "lipoid",
    "aspergillosis",
    "nocardia",
    "herpes",
    "staphylococcus",
)


# COVID-19 named with a negation, a time or a doubt: "Non-COVID", "NormalNonCovid", "COVID-negative", "COVID -ve",
# "COVID(-)", "covid19-", "Pre-COVID" / "PreCovid" (pre-pandemic controls), "post-covid", "COVID-free",
# "COVID ruled out", "COVID-19 excluded", "COVID not detected", "no evidence of covid", "COVID suspected",
# "covid pending", "COVID?": none of them says the film shows COVID-19.
_COVID_WORD = r"(covid|sars[\s_-]*cov[\s_-]*2)[\s_-]*(19)?[\s_-]*"
_NOT_PLAINLY_COVID = re.compile(
    rf"(non|not|no|pre|post)[\s_-]*covid|{_COVID_WORD}(neg|free)|\(\s*-\s*\)|-\s*ve\b|-\s*$|\?"
    r"|\b(negative|excluded?|ruled|rule out|r/o|not detected|no evidence|suspect(ed)?|suspicion|probable|possible"
    r"|unlikely|pending)\b"
)


# Views of CT slices (ieee8023 lists them beside its X-rays): no chest X-ray view at all.
CT_VIEWS = ("axial", "coronal", "sagittal", "ct")


def normalize_view(text):
    """`PA`, `AP`, `AP Supine`, `L` or `unknown` for a view written any common way."""
    key = re.sub(r"[\s_]+", " ", str(text or "")).strip().lower()
    if not key:
        return "unknown"
    if key in _VIEW_ALIASES:
        return _VIEW_ALIASES[key]
    if "lat" in key.split() or "lateral" in key:
        return "L"
    if "supine" in key:
        return "AP Supine"
    if key.startswith("ap"):
        return "AP"
    if key.startswith("pa"):
        return "PA"
    return "unknown"


def normalize_label(text):
    """`covid`, `normal`, `pneumonia`, or None for findings that are none of these (ARDS, "todo", ...).

    COVID-19 counts only when named plainly: with a negation, a time or a doubt ("Non-COVID", "Pre-COVID",
    "COVID suspected") the name cannot say which class the film is, so it gets None (dropped and reported).
    """
    key = str(text or "").strip().lower()
    if not key:
        return None
    if "covid" in key or "sars-cov-2" in key:
        return None if _NOT_PLAINLY_COVID.search(key) else "covid"
    if key in ("normal", "no finding", "no findings", "healthy"):
        return "normal"
    if any(word in key for word in _PNEUMONIA_WORDS):
        return "pneumonia"
    return None


def normalize_sex(text):
    """`M`, `F` or None."""
    key = str(text or "").strip().lower()
    if key in ("m", "male", "man"):
        return "M"
    if key in ("f", "female", "woman"):
        return "F"
    return None


def parse_age(text):
    """Years as a float from "54", "54.0", "050Y" (DICOM), "50+", "early 40s", "18 months", "3 wk" or "10 days";
    None when absent. A number with any other word after it ("45 M", "17 Jahre") is read as years."""
    text = str(text or "").strip()
    dicom_age = re.fullmatch(r"(\d{3})([DWMY])", text.upper())  # DICOM AS: "006M" = 6 months
    if dicom_age:
        return round(int(dicom_age.group(1)) * _DAYS_PER_UNIT[dicom_age.group(2)] / 365.25, 2)
    match = re.search(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text.lower())
    if not match or text.startswith(("-", "\u2212", "\u2013")):  # "-1" (any minus) means unknown, not one year old
        return None
    age = float(match.group(1)) * _DAYS_PER_UNIT[_AGE_UNITS.get(match.group(2), "Y")] / 365.25
    return round(age, 2) if math.isfinite(age) and 0 <= age < 150 else None


_DAYS_PER_UNIT = {"H": 1 / 24, "D": 1, "W": 7, "M": 365.25 / 12, "Y": 365.25}
# units other than years, spelled out: a lone "m" after an age is as often "male" as "months"
_AGE_UNITS = {
    **dict.fromkeys(("mo", "mos", "mth", "mths", "month", "months"), "M"),
    **dict.fromkeys(("w", "wk", "wks", "week", "weeks"), "W"),
    **dict.fromkeys(("d", "day", "days"), "D"),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), "H"),
}
