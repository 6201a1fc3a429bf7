"""The source-only shortcut measure: a label that only one collection holds is flagged, mixed sources are not."""

import pytest

from keras_covidcxr.data import Manifest, ManifestRow, audit_manifest, source_shortcut


def manifest_of(rows):
    """rows: (source, label, count) -> a manifest of that many cls rows, one patient each."""
    return Manifest([ManifestRow(f"{source}_{label}_{i}.png", "cls", f"{source}:{label}{i}", label=label,
                                 source=source)
                     for source, label, count in rows for i in range(count)], ".")


def test_a_label_from_its_own_collection_is_flagged():
    # the merged shared folders in small: COVID-19 only from one hospital, normals only from another
    shortcut = source_shortcut(manifest_of([("hannover", "covid", 8), ("nih", "normal", 6),
                                            ("nih", "pneumonia", 6), ("ieee8023", "covid", 4),
                                            ("ieee8023", "pneumonia", 4)]))
    assert shortcut.counts == {"hannover": {"covid": 8}, "ieee8023": {"covid": 4, "pneumonia": 4},
                               "nih": {"normal": 6, "pneumonia": 6}}
    # covid: scored 1 (hannover), 0.5 (ieee8023), 0 (nih): 8 of 12 covid above every non-covid, 4 tied with 4
    assert shortcut.auc["covid"] == pytest.approx((8 * 16 + 4 * (4 * 0.5 + 12)) / (12 * 16), abs=1e-4)
    assert "covid" in shortcut.risky_labels
    text = "\n".join(shortcut.summary_lines())
    assert "[caution]" in text and "hannover" in text and f"covid (AUC {shortcut.auc['covid']:.2f})" in text


def test_sources_holding_every_label_in_the_same_shares_say_nothing():
    shortcut = source_shortcut(manifest_of([("a", "covid", 6), ("a", "normal", 3), ("b", "covid", 4),
                                            ("b", "normal", 2)]))
    assert shortcut.auc == {"covid": 0.5, "normal": 0.5}
    assert shortcut.risky_labels == [] and "[caution]" not in "\n".join(shortcut.summary_lines())


def test_nothing_to_compare_gives_none():
    assert source_shortcut(manifest_of([("a", "covid", 3), ("a", "normal", 3)])) is None  # one source
    assert source_shortcut(manifest_of([("a", "covid", 3), ("b", "covid", 3)])) is None  # one label
    unnamed = Manifest([ManifestRow(f"{i}.png", "cls", f"p{i}", label=("covid", "normal")[i % 2]) for i in range(6)],
                       ".")
    assert source_shortcut(unnamed) is None


def test_the_audit_reports_it_without_failing(tmp_path, chest_like, write_png):
    rows = manifest_of([("hannover", "covid", 3), ("nih", "normal", 3)])
    for seed, row in enumerate(rows):
        write_png(tmp_path / row.path, chest_like(seed))
    report = audit_manifest(Manifest([row.replace(split="train") for row in rows], tmp_path))
    assert report.passed and report.findings == []  # a caution about the mix, not a finding about a row
    assert report.source_shortcut.risky_labels == ["covid", "normal"]
    assert report.to_dict()["source_shortcut"]["source_only_auc"] == {"covid": 1.0, "normal": 1.0}
    assert "source alone tells apart covid (AUC 1.00), normal (AUC 1.00)" in report.summary()


def test_the_clean_manifest_has_no_source_section(clean_manifest):
    report = audit_manifest(clean_manifest)
    assert report.source_shortcut is None and report.to_dict()["source_shortcut"] is None
    assert "source" not in report.summary().split("\n", 2)[-1]
