from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from support import DatasetBuilder, tone, truncated_ogg

from dawnchorus.data.manifest import (
    ManifestError,
    build_manifest,
    class_names,
    format_label_list,
    label_matrix,
    parse_label_list,
    read_classes,
    read_manifest,
    shard_for,
    stratified_subsample,
    write_manifest,
)


def manifest_of(root, **kwargs):
    defaults = dict(sample_rate=32000, n_fft=1024, n_shards=4, seed=0)
    return build_manifest(root, **{**defaults, **kwargs})


@pytest.fixture
def messy_dataset(tmp_path):
    """Every kind of bad row next to good ones; returns (root, {name: train.csv row})."""
    data = DatasetBuilder(tmp_path / "data")
    rows = {
        "good": data.add_recording("zebfin1/XC1.ogg"),
        "good_stereo_48k_flac": data.add_recording(
            "amerob/XC2.flac", tone(3, 48000, channels=2), 48000, primary="amerob"
        ),
        "numeric_label": data.add_recording("1139490/iNat3.ogg", primary="1139490"),
        "ten_minutes": data.add_recording("zebfin1/XC4.ogg", tone(600, 8000), 8000),
        "all_zero": data.add_recording("zebfin1/XC5.wav", np.zeros((32000, 1), np.float32)),
        "nan_audio": data.add_recording("zebfin1/XC6.wav", np.full((32000, 1), np.nan, np.float32)),
        "secondary_ok": data.add_recording(
            "amerob/XC7.ogg", primary="amerob", secondary="['zebfin1', 'unknownbird']"
        ),
        "secondary_empty_list": data.add_recording(
            "amerob/XC8.ogg", primary="amerob", secondary="[]"
        ),
        "zero_byte": data.add_raw_file("zebfin1/XC10.ogg", b""),
        "truncated": data.add_raw_file("zebfin1/XC11.ogg", truncated_ogg(5, 0.02)),
        "text_as_ogg": data.add_raw_file("zebfin1/XC12.ogg", b"hello, I am text\n" * 10),
        "missing": data.add_row("zebfin1/XC13.ogg"),
        "too_short": data.add_recording("zebfin1/XC14.wav", tone(0.01, 32000)),
        "bad_secondary_unclosed": data.add_recording("zebfin1/XC15.ogg", secondary="['a'"),
        "bad_secondary_bare": data.add_recording("zebfin1/XC16.ogg", secondary="a, b"),
        "bad_secondary_dict": data.add_recording("zebfin1/XC17.ogg", secondary="{'a': 1}"),
        "unknown_primary": data.add_recording("zebfin1/XC18.ogg", primary="dodo"),
        "escape": data.add_row("../../etc/passwd"),
        "absolute": data.add_row("/etc/passwd"),
        "duplicate": data.add_row("zebfin1/XC1.ogg"),
        "empty_filename": data.add_row(""),
    }
    return data.write(), rows


EXPECTED_REJECTIONS = {
    "zero_byte": "empty file",
    "truncated": "unreadable audio header",
    "text_as_ogg": "not an audio file",
    "missing": "file not found",
    "too_short": "shorter than one FFT window",
    "bad_secondary_unclosed": "malformed secondary_labels",
    "bad_secondary_bare": "malformed secondary_labels",
    "bad_secondary_dict": "malformed secondary_labels",
    "unknown_primary": "unknown primary_label 'dodo'",
    "escape": "unsafe filename",
    "absolute": "unsafe filename: absolute path",
    "duplicate": "duplicate filename (first at train.csv row 0)",
    "empty_filename": "missing filename",
}


def test_every_row_ends_in_exactly_one_output_with_a_reason(messy_dataset):
    root, rows = messy_dataset
    result = manifest_of(root)
    accepted = set(result.manifest["source_row"])
    rejected = dict(zip(result.rejected["source_row"], result.rejected["reason"], strict=True))
    assert accepted.isdisjoint(rejected)
    assert accepted | set(rejected) == set(range(len(rows)))
    for name, expected in EXPECTED_REJECTIONS.items():
        assert expected in rejected[rows[name]], (name, rejected.get(rows[name]))
    # decodable headers are accepted here; NaN and silence are caught when decoding (shards)
    for name in (
        "good",
        "good_stereo_48k_flac",
        "numeric_label",
        "ten_minutes",
        "all_zero",
        "nan_audio",
        "secondary_ok",
        "secondary_empty_list",
    ):
        assert rows[name] in accepted, (name, rejected.get(rows[name]))


def test_manifest_records_audio_facts_and_labels(messy_dataset):
    root, rows = messy_dataset
    manifest = manifest_of(root).manifest.set_index("source_row")
    stereo = manifest.loc[rows["good_stereo_48k_flac"]]
    assert (stereo["sample_rate"], stereo["channels"]) == (48000, 2)
    assert manifest.loc[rows["ten_minutes"], "duration_s"] == pytest.approx(600)
    secondary = manifest.loc[rows["secondary_ok"]]
    assert parse_label_list(secondary["secondary_labels"]) == ["zebfin1"]
    assert parse_label_list(secondary["dropped_secondary_labels"]) == ["unknownbird"]
    assert manifest["shard"].between(0, 3).all()


def test_outputs_round_trip_and_classes_follow_taxonomy_order(messy_dataset, tmp_path):
    root, _ = messy_dataset
    result = manifest_of(root)
    out = tmp_path / "out"
    write_manifest(result, out / "manifest.csv", out / "rejected.csv", out / "classes.txt")
    assert read_classes(out / "classes.txt") == ["zebfin1", "amerob", "1139490"]
    manifest = read_manifest(out / "manifest.csv")
    assert manifest["primary_label"].tolist() == result.manifest["primary_label"].tolist()
    labels = label_matrix(manifest, read_classes(out / "classes.txt"))
    assert labels.sum(axis=1).min() >= 1
    secondary_row = manifest.index[manifest["filename"] == "amerob/XC7.ogg"][0]
    assert labels[secondary_row].tolist() == [1, 1, 0]
    rejected = pd.read_csv(out / "rejected.csv", keep_default_na=False)
    assert {"source_row", "reason", "filename", "primary_label"} <= set(rejected.columns)


@pytest.mark.parametrize("column", ["filename", "secondary_labels"])
def test_missing_column_is_one_clear_error(tmp_path, column):
    data = DatasetBuilder(tmp_path)
    data.add_recording("zebfin1/XC1.ogg")
    data.write(drop_columns=(column,))
    with pytest.raises(ManifestError, match=f"lacks required column.*{column}"):
        manifest_of(tmp_path)


def test_empty_and_header_only_train_csv(tmp_path):
    data = DatasetBuilder(tmp_path)
    data.write()
    with pytest.raises(ManifestError, match="no rows"):
        manifest_of(tmp_path)
    (tmp_path / "train.csv").write_bytes(b"")
    with pytest.raises(ManifestError, match="empty"):
        manifest_of(tmp_path)


def test_taxonomy_with_duplicates_is_refused(tmp_path):
    data = DatasetBuilder(tmp_path, classes=["a", "b", "a"])
    data.add_recording("a/1.ogg", primary="a")
    data.write()
    with pytest.raises(ManifestError, match="duplicate primary_label"):
        manifest_of(tmp_path)


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        ("['']", []),
        ("[]", []),
        ("", []),
        ("['a', 'b', 'a']", ["a", "b"]),
        ("[1139490, 'x']", ["1139490", "x"]),
        (" [ 'a' ] ", ["a"]),
    ],
)
def test_parse_label_list_accepts_birdclef_forms(text, labels):
    assert parse_label_list(text) == labels
    assert parse_label_list(format_label_list(labels)) == labels


@pytest.mark.parametrize("text", ["['a'", "a, b", "{'a': 1}", "[['a']]", "[True]", "'a'"])
def test_parse_label_list_rejects_malformed(text):
    with pytest.raises(ValueError):
        parse_label_list(text)


def test_labels_are_never_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(ValueError):
        parse_label_list(f"__import__('pathlib').Path('{marker}').touch()")
    assert not marker.exists()


def test_shard_assignment_is_stable_across_processes():
    names = [f"sp{i % 7}/XC{i}.ogg" for i in range(200)]
    here = [shard_for(name, 16) for name in names]
    code = (
        "import json,sys; from dawnchorus.data.manifest import shard_for; "
        "print(json.dumps([shard_for(n, 16) for n in json.loads(sys.argv[1])]))"
    )
    import json

    for hash_seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code, json.dumps(names)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
        ).stdout
        assert json.loads(out) == here


def test_shards_are_evenly_filled():
    counts = Counter(shard_for(f"label{i % 50}/XC{i}.ogg", 16) for i in range(16000))
    assert len(counts) == 16
    assert max(counts.values()) < 1.1 * 1000 and min(counts.values()) > 0.9 * 1000


def test_stratified_subsample_keeps_every_class_and_proportions():
    rng = np.random.default_rng(0)
    labels = np.array([f"c{int(i)}" for i in rng.zipf(1.5, 20000) % 40])
    keep = stratified_subsample(labels, 1000, seed=3)
    assert keep.sum() == 1000
    assert set(labels[keep]) == set(labels)
    full, sub = Counter(labels), Counter(labels[keep])
    biggest = full.most_common(1)[0][0]
    assert sub[biggest] / 1000 == pytest.approx(full[biggest] / len(labels), abs=0.05)
    np.testing.assert_array_equal(keep, stratified_subsample(labels, 1000, seed=3))
    assert not np.array_equal(keep, stratified_subsample(labels, 1000, seed=4))


def test_debug_subsampling_traces_the_rows_it_leaves_out(tmp_path, caplog):
    data = DatasetBuilder(tmp_path)
    for i in range(12):
        data.add_recording(f"zebfin1/XC{i}.ogg", primary=["zebfin1", "amerob"][i % 2])
    data.write()
    with caplog.at_level(logging.INFO):
        result = manifest_of(tmp_path, max_samples=5)
    assert len(result.manifest) == 5
    assert set(result.manifest["primary_label"]) == {"zebfin1", "amerob"}
    assert len(result.rejected) == 7
    assert result.rejected["reason"].str.contains("debug subsampling").all()


def test_class_names_come_from_the_taxonomy(tmp_path):
    taxonomy = tmp_path / "taxonomy.csv"
    taxonomy.write_text(
        "primary_label,inat_taxon_id,scientific_name,common_name,class_name\n"
        "amerob,1,Turdus migratorius,American Robin,Aves\n"
        "1139490,2,Ragoderma tango,,Insecta\n"
    )
    assert class_names(taxonomy, ["1139490", "amerob", "nosuch"]) == {
        "1139490": {"common": "", "scientific": "Ragoderma tango"},
        "amerob": {"common": "American Robin", "scientific": "Turdus migratorius"},
    }
    (tmp_path / "codes.csv").write_text("primary_label\namerob\n")
    assert class_names(tmp_path / "codes.csv", ["amerob"]) == {}
