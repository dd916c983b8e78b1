"""What users read first: the README's length, the licence, and what prediction costs said the
same way in the README and in `dawnchorus predict --help`."""

from __future__ import annotations

import re

from support import REPO_ROOT

from dawnchorus.cli import build_parser

README = REPO_ROOT / "README.md"


def _archive_hours(text: str) -> tuple[float, float, float]:
    """(as shipped, BirdNET's own analyzer, --cnn-only): hours for a 1,000-hour archive."""
    text = re.sub(r"[\s*`]+", " ", text)
    shipped = re.search(r"1,000-hour archive takes about ([\d.]+) h as shipped", text)
    birdnet = re.search(r"BirdNET\S*(?: own)? (?:analyzer|model) alone: ([\d.]+) h", text)
    cnn = re.search(r"([\d.]+) h with --cnn-only", text)
    assert shipped and birdnet and cnn, text
    return float(shipped[1]), float(birdnet[1]), float(cnn[1])


def test_predict_help_and_the_readme_give_the_same_archive_hours():
    subparsers = next(
        action for action in build_parser()._actions if action.dest == "command"
    ).choices
    help_text = subparsers["predict"].format_help()
    from_help = _archive_hours(help_text)
    assert from_help == _archive_hours(README.read_text(encoding="utf-8"))
    shipped, _, cnn_only = from_help
    assert shipped > cnn_only, "the default (the blend) costs more than the CNN alone"


def test_the_readme_stays_short_and_the_code_has_a_licence():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 250
    assert "Permission is hereby granted" in (REPO_ROOT / "LICENSE").read_text(encoding="utf-8")
