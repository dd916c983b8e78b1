"""The per-recording files of `dawnchorus predict`: CSV, Raven selection table, Audacity labels,
their names, filters and atomic writing (hand-made predictions, no model)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from dawnchorus.inference.outputs import (
    DEFAULT_MIN_CONFIDENCE,
    FORMATS,
    DetectionFilter,
    audacity_labels,
    combine_outputs,
    detections,
    is_complete,
    output_paths,
    plan_outputs,
    read_species_list,
    remove_partial,
    window_probabilities,
    write_outputs,
)
from dawnchorus.inference.recordings import FilePrediction

CLASSES = ["amerob", "norcar", "blujay", "houspa"]
LONG_COLUMNS = ["filename", "start_s", "end_s", "rank", "label", "probability"]
WINDOW_S = 5.0
RAVEN_COLUMNS = [
    "Selection",
    "View",
    "Channel",
    "Begin Time (s)",
    "End Time (s)",
    "Low Freq (Hz)",
    "High Freq (Hz)",
    "Species Code",
    "Confidence",
]


def dawn(path: Path = Path("recorder/site1/a.ogg"), **extra) -> FilePrediction:
    """Three 5-s windows, float32 as the model gives them."""
    probabilities = np.array(
        [
            [0.9, 0.05, 0.6, 0.3],  # 0-5 s
            [0.2, 0.8, 0.7, 0.05],  # 5-10 s
            [0.01, 0.02, 0.03, 0.5],  # 10-15 s
        ],
        dtype=np.float32,
    )
    return FilePrediction(path, [5, 10, 15], probabilities, **extra)


def pairs(rows: pd.DataFrame) -> list[tuple[float, str]]:
    return list(zip(rows["start_s"], rows["label"], strict=True))


def test_raven_table_reads_back_with_ravens_columns(tmp_path):
    paths = {"raven": tmp_path / "a.ogg.selections.txt"}
    keep = DetectionFilter(min_confidence=0.5)
    written = write_outputs(dawn(), CLASSES, WINDOW_S, keep, paths, 50, 15000)

    table = pd.read_csv(paths["raven"], sep="\t")
    assert table.columns.tolist() == RAVEN_COLUMNS
    assert written == len(table) == 5
    assert table["Selection"].tolist() == [1, 2, 3, 4, 5]
    assert (table["View"] == "Spectrogram 1").all() and (table["Channel"] == 1).all()
    assert (table["Begin Time (s)"] < table["End Time (s)"]).all()
    assert table["Begin Time (s)"].tolist() == [0, 0, 5, 5, 10]
    assert (table["Low Freq (Hz)"] == 50).all() and (table["High Freq (Hz)"] == 15000).all()
    assert table["Species Code"].tolist() == ["amerob", "blujay", "norcar", "blujay", "houspa"]
    np.testing.assert_allclose(table["Confidence"], [0.9, 0.6, 0.8, 0.7, 0.5], atol=1e-4)


def test_combined_raven_table_numbers_across_recordings_and_names_each(tmp_path):
    keep = DetectionFilter(top_k=1)
    first, second = dawn(tmp_path / "a.ogg", duration_s=14.5), dawn(tmp_path / "b.wav")
    jobs = []
    for prediction in (first, second):
        paths = output_paths(prediction.path, None, tmp_path / "out", ["csv", "raven"])
        write_outputs(prediction, CLASSES, WINDOW_S, keep, paths, 0, 12000)
        jobs.append(SimpleNamespace(recording=prediction.path, outputs=paths))
    durations = {first.path: 14.5, second.path: 15.0}  # a.ogg's last window: 10-14.5 s
    written = combine_outputs(jobs, tmp_path / "out", ["csv", "raven", "audacity"], durations)
    assert [path.name for path in written] == ["combined.csv", "combined.selections.txt"]
    table = pd.read_csv(written[1], sep="\t")
    assert table.columns.tolist() == [*RAVEN_COLUMNS, "Begin Path", "File Offset (s)"]
    assert table["Selection"].tolist() == [1, 2, 3, 4, 5, 6]
    assert table["Begin Path"].tolist() == [str(first.path)] * 3 + [str(second.path)] * 3
    # Raven's multi-file timeline: b.wav starts where a.ogg ends (14.5 s)
    assert table["Begin Time (s)"].tolist() == [0, 5, 10, 14.5, 19.5, 24.5]
    assert table["End Time (s)"].tolist() == [5, 10, 14.5, 19.5, 24.5, 29.5]
    assert table["File Offset (s)"].tolist() == [0, 5, 10, 0, 5, 10]
    csv = pd.read_csv(written[0])
    assert csv["filename"].tolist() == [str(first.path)] * 3 + [str(second.path)] * 3


def test_audacity_labels_are_three_tab_separated_fields(tmp_path):
    paths = {"audacity": tmp_path / "a.ogg.labels.txt"}
    write_outputs(dawn(), CLASSES, WINDOW_S, DetectionFilter(top_k=2), paths, 0, 12000)

    lines = paths["audacity"].read_text(encoding="utf-8").splitlines()
    assert len(lines) == 6  # no header: two labels for each of three windows
    fields = [line.split("\t") for line in lines]
    assert all(len(parts) == 3 for parts in fields)
    spans = [(float(start), float(end)) for start, end, _ in fields]
    assert spans == [(0, 5), (0, 5), (5, 10), (5, 10), (10, 15), (10, 15)]
    assert fields[0] == ["0.000000", "5.000000", "amerob 0.9000"]
    assert [text for *_, text in fields[2:4]] == ["norcar 0.8000", "blujay 0.7000"]


NAMES = {
    "amerob": {"common": "American Robin", "scientific": "Turdus migratorius"},
    "norcar": {"common": "Northern Cardinal", "scientific": "Cardinalis cardinalis"},
    "blujay": {"common": "Blue Jay", "scientific": "Cyanocitta cristata"},
}  # houspa has none: its name stays empty


def test_names_go_beside_the_codes_in_every_detection_format(tmp_path):
    """An export's names: Raven's Common Name before Species Code (BirdNET-Analyzer's order),
    the long CSV's common_name after label, Audacity's label `code (name) confidence`."""
    paths = output_paths("a.ogg", None, tmp_path, ["csv", "raven", "audacity"])
    keep = DetectionFilter(top_k=2)
    write_outputs(dawn(), CLASSES, WINDOW_S, keep, paths, 0, 12000, NAMES)
    raven = pd.read_csv(paths["raven"], sep="\t", keep_default_na=False)
    assert raven.columns.tolist() == [*RAVEN_COLUMNS[:7], "Common Name", *RAVEN_COLUMNS[7:]]
    assert raven["Common Name"].tolist()[:4] == [
        "American Robin",
        "Blue Jay",
        "Northern Cardinal",
        "Blue Jay",
    ]
    long = pd.read_csv(paths["csv"], keep_default_na=False)
    assert long.columns.tolist() == [*LONG_COLUMNS[:5], "common_name", "probability"]
    assert long.loc[long["label"] == "houspa", "common_name"].tolist() == [""]
    labels = paths["audacity"].read_text(encoding="utf-8").splitlines()
    assert labels[0].split("\t")[2] == "amerob (American Robin) 0.9000"
    assert labels[-2].split("\t")[2] == "houspa 0.5000"


def test_audacity_labels_of_no_detections_is_an_empty_file():
    nothing = detections(dawn(), CLASSES, WINDOW_S, DetectionFilter(min_confidence=1.0))
    assert nothing.empty and audacity_labels(nothing) == ""


def test_species_filter_applies_before_top_k():
    everyone = detections(dawn(), CLASSES, WINDOW_S, DetectionFilter(top_k=1))
    assert everyone["label"].tolist() == ["amerob", "norcar", "houspa"]

    # the listed species' best in each window, even where an unlisted one is more probable
    listed = DetectionFilter(top_k=1, species=("houspa", "norcar"))
    rows = detections(dawn(), CLASSES, WINDOW_S, listed)
    assert pairs(rows) == [(0, "houspa"), (5, "norcar"), (10, "houspa")]
    assert rows["rank"].tolist() == [1, 1, 1]
    np.testing.assert_allclose(rows["probability"], [0.3, 0.8, 0.5])
    assert rows.columns.tolist() == LONG_COLUMNS


def test_min_confidence_keeps_probabilities_at_or_above_it():
    rows = detections(dawn(), CLASSES, WINDOW_S, DetectionFilter(min_confidence=0.5))
    # 0.5 itself is kept; ranks count among all species, so blujay is 2nd in its windows
    assert pairs(rows) == [
        (0, "amerob"),
        (0, "blujay"),
        (5, "norcar"),
        (5, "blujay"),
        (10, "houspa"),
    ]
    assert rows["rank"].tolist() == [1, 2, 1, 2, 1]
    assert (rows["probability"] >= 0.5).all()

    both = DetectionFilter(min_confidence=0.75, top_k=1)
    assert pairs(detections(dawn(), CLASSES, WINDOW_S, both)) == [(0, "amerob"), (5, "norcar")]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"top_k": 0}, "top-k must be at least 1"),
        ({"min_confidence": 1.5}, "between 0 and 1"),
        ({"min_confidence": -0.1}, "between 0 and 1"),
        ({"species": ()}, "species list is empty"),
    ],
)
def test_detection_filter_rejects_bad_values(arguments, message):
    with pytest.raises(ValueError, match=message):
        DetectionFilter(**arguments)


def test_read_species_list_keeps_the_models_order(tmp_path):
    listed = tmp_path / "species.txt"
    listed.write_text("# my site\n\n  houspa  \nnorcar # cardinal\nhouspa\n\t\n", encoding="utf-8")
    assert read_species_list(listed, CLASSES) == ("norcar", "houspa")


def test_read_species_list_names_unknown_codes_and_the_file(tmp_path):
    listed = tmp_path / "species.txt"
    listed.write_text("norcar\nnorcrd\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"species\.txt.*'norcrd'") as raised:
        read_species_list(listed, CLASSES)
    assert "'norcar'" not in str(raised.value)

    listed.write_text("".join(f"bird{i:02d}\n" for i in range(12)), encoding="utf-8")
    with pytest.raises(ValueError, match="'bird09' and 2 more") as raised:
        read_species_list(listed, CLASSES)
    assert "bird10" not in str(raised.value)


def test_read_species_list_rejects_an_empty_or_missing_file(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"empty\.txt' lists no species"):
        read_species_list(empty, CLASSES)
    with pytest.raises(ValueError, match=r"missing\.txt"):
        read_species_list(tmp_path / "missing.txt", CLASSES)


def test_unknown_species_in_a_filter_is_an_error():
    with pytest.raises(ValueError, match="'dodo'"):
        detections(dawn(), CLASSES, WINDOW_S, DetectionFilter(top_k=1, species=("dodo",)))


def test_output_paths_mirror_the_input_folder(tmp_path):
    root, out = tmp_path / "recorder", tmp_path / "out"
    paths = output_paths(root / "site1" / "a.ogg", root, out, FORMATS)
    assert paths == {
        "csv": out / "site1" / "a.ogg.csv",
        "raven": out / "site1" / "a.ogg.selections.txt",
        "audacity": out / "site1" / "a.ogg.labels.txt",
    }
    # a recording given as a file: beside the others, by its name alone
    assert output_paths(root / "site1" / "a.ogg", None, out, ["csv"]) == {"csv": out / "a.ogg.csv"}
    with pytest.raises(ValueError, match="not under the input folder"):
        output_paths(tmp_path / "elsewhere" / "a.ogg", root, out, ["csv"])
    with pytest.raises(ValueError, match="unknown output format"):
        output_paths(root / "a.ogg", root, out, ["kaleidoscope"])


def test_recordings_differing_only_in_audio_suffix_do_not_collide(tmp_path):
    root, out = tmp_path / "recorder", tmp_path / "out"
    plan = plan_outputs([(root / "a.ogg", root), (root / "a.wav", root)], out, FORMATS)
    ogg, wav = (set(plan[root / name].values()) for name in ("a.ogg", "a.wav"))
    assert len(ogg) == len(wav) == 3 and not ogg & wav

    # the same name given as files from two folders would write one file twice
    with pytest.raises(ValueError, match="would both write"):
        plan_outputs([(root / "x" / "a.ogg", None), (root / "y" / "a.ogg", None)], out, ["csv"])


def test_writes_are_atomic_and_completeness_needs_every_format(tmp_path):
    paths = output_paths(Path("recorder/site1/a.ogg"), Path("recorder"), tmp_path, FORMATS)
    assert not is_complete(paths)
    write_outputs(dawn(), CLASSES, WINDOW_S, DetectionFilter(top_k=3), paths, 0, 12000)
    assert is_complete(paths)
    assert not list(tmp_path.rglob("*.part"))

    # a killed run: one output missing, its partial file left behind
    paths["audacity"].unlink()
    partial = paths["audacity"].with_name(".a.ogg.labels.txt.part")
    partial.write_text("0.0\t5.0\tamer", encoding="utf-8")
    mine = tmp_path / "site1" / ".notes.part"  # not one of ours: left alone
    mine.write_text("keep me", encoding="utf-8")
    assert not is_complete(paths)
    assert remove_partial(tmp_path) == [partial]
    assert mine.exists() and not partial.exists()


def test_a_failed_write_leaves_neither_outputs_nor_partial_files(tmp_path):
    (tmp_path / "blocked").write_text("a file where a folder should be", encoding="utf-8")
    paths = {"csv": tmp_path / "a.ogg.csv", "audacity": tmp_path / "blocked" / "a.ogg.labels.txt"}
    with pytest.raises(OSError):
        write_outputs(dawn(), CLASSES, WINDOW_S, DetectionFilter(), paths, 0, 12000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocked"]

    # a bad band is found before any file is written
    with pytest.raises(ValueError, match="band"):
        write_outputs(
            dawn(),
            CLASSES,
            WINDOW_S,
            DetectionFilter(),
            {"csv": paths["csv"], "raven": tmp_path / "a.ogg.selections.txt"},
            12000,
            50,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocked"]


def test_wide_csv_holds_the_listed_species_only(tmp_path):
    paths = {"csv": tmp_path / "a.ogg.csv"}
    keep = DetectionFilter(species=("norcar", "amerob"))
    assert write_outputs(dawn(), CLASSES, WINDOW_S, keep, paths, 0, 12000) == 3  # windows

    table = pd.read_csv(paths["csv"])
    assert table.columns.tolist() == ["filename", "start_s", "end_s", "amerob", "norcar"]
    assert table["end_s"].tolist() == [5, 10, 15]
    np.testing.assert_allclose(table[["amerob", "norcar"]], dawn().probabilities[:, [0, 1]])

    # with a top-k the CSV lists detections instead, one row each
    write_outputs(
        dawn(), CLASSES, WINDOW_S, DetectionFilter(top_k=1, species=keep.species), paths, 0, 12000
    )
    table = pd.read_csv(paths["csv"])
    assert table.columns.tolist() == LONG_COLUMNS
    assert table["label"].tolist() == ["amerob", "norcar", "norcar"]


def test_csv_times_are_exact_to_the_millisecond(tmp_path):
    paths = {"csv": tmp_path / "a.ogg.csv"}
    late = FilePrediction(Path("a.ogg"), [1001.667], np.full((1, 4), 0.25, dtype=np.float32))
    write_outputs(late, CLASSES, WINDOW_S, DetectionFilter(), paths, 0, 12000)
    assert paths["csv"].read_text().splitlines()[1].startswith("a.ogg,996.667,1001.667,0.25,")


def test_label_formats_default_to_a_min_confidence_and_keep_a_failed_recordings_windows(tmp_path):
    failed = dawn(error="decoding stopped at 15 s")
    paths = output_paths(Path("a.ogg"), None, tmp_path, FORMATS)
    written = write_outputs(failed, CLASSES, WINDOW_S, DetectionFilter(), paths, 0, 12000)

    assert len(pd.read_csv(paths["csv"])) == 3  # wide: every window
    raven = pd.read_csv(paths["raven"], sep="\t")
    probabilities = failed.probabilities
    assert written == len(raven) == (probabilities >= DEFAULT_MIN_CONFIDENCE).sum() == 7
    assert (raven["Confidence"] >= DEFAULT_MIN_CONFIDENCE).all()
    assert len(paths["audacity"].read_text().splitlines()) == 7

    # failed before its first window: the files exist, with no rows
    nothing = FilePrediction(Path("b.ogg"), [], np.zeros((0, 4), dtype=np.float32), "bad header")
    empty = output_paths(Path("b.ogg"), None, tmp_path, FORMATS)
    assert write_outputs(nothing, CLASSES, WINDOW_S, DetectionFilter(), empty, 0, 12000) == 0
    assert is_complete(empty)
    assert pd.read_csv(empty["raven"], sep="\t").columns.tolist() == RAVEN_COLUMNS
    assert empty["audacity"].read_text() == ""


def test_wide_rows_top_k_and_min_confidence(tmp_path):
    prediction = FilePrediction(
        tmp_path / "a.wav", [5, 10], np.array([[0.1, 0.9, 0.5], [0.7, 0.2, 0.3]])
    )
    classes = ["a", "b", "c"]
    wide = window_probabilities(prediction, classes, 5.0)
    assert wide.columns.tolist() == ["filename", "start_s", "end_s", "a", "b", "c"]
    top = detections(prediction, classes, 5.0, DetectionFilter(top_k=2))
    assert top["label"].tolist() == ["b", "c", "a", "c"] and top["rank"].tolist() == [1, 2, 1, 2]
    sure = detections(prediction, classes, 5.0, DetectionFilter(min_confidence=0.5))
    assert list(zip(sure["end_s"], sure["label"], strict=True)) == [(5, "b"), (5, "c"), (10, "a")]
    both = detections(prediction, classes, 5.0, DetectionFilter(min_confidence=0.8, top_k=1))
    assert both["label"].tolist() == ["b"]
