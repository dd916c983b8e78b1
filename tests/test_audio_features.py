from __future__ import annotations

import warnings

import librosa
import numpy as np
import pytest
from support import tone, truncated_ogg, write_audio

from dawnchorus.config import AudioParams, load_config
from dawnchorus.signal.audio import (
    AudioError,
    _ogg_crc,
    check_usable,
    load_audio,
    ogg_stream_unfinished,
    peak_dbfs,
    probe_audio,
    stream_audio,
)
from dawnchorus.signal.features import log_mel, mel_filterbank, n_frames_for


@pytest.fixture(scope="module")
def params() -> AudioParams:
    return AudioParams.from_config(load_config(overrides={"data_dir": "x"}))


def dominant_frequency(samples: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / sample_rate)[np.argmax(spectrum)])


@pytest.mark.parametrize("suffix", [".ogg", ".flac", ".wav", ".mp3"])
@pytest.mark.parametrize(("rate", "channels"), [(8000, 1), (22050, 2), (44100, 1), (48000, 2)])
def test_any_format_rate_and_channels_decode_to_mono_at_the_working_rate(
    tmp_path, suffix, rate, channels
):
    freq = 1500.0
    path = write_audio(tmp_path / f"clip{suffix}", tone(3.0, rate, freq, channels), rate)
    info = probe_audio(path)
    assert info.sample_rate == rate and info.channels == channels
    samples = load_audio(path, 32000)
    assert samples.ndim == 1 and samples.dtype == np.float32
    # mp3 encoders add priming samples; others must be exact to the sample
    assert abs(len(samples) - 3 * 32000) <= (3000 if suffix == ".mp3" else 2)
    assert dominant_frequency(samples, 32000) == pytest.approx(freq, rel=0.01)


def test_stereo_is_downmixed_by_averaging(tmp_path):
    stereo = tone(1.0, 32000, channels=2)
    stereo[:, 1] = 0.0
    path = write_audio(tmp_path / "half.wav", stereo, 32000)
    samples = load_audio(path, 32000)
    np.testing.assert_allclose(samples, stereo[:, 0] / 2, atol=1e-6)


def test_max_duration_decodes_only_the_beginning(tmp_path):
    path = write_audio(tmp_path / "ten_minutes.flac", tone(600, 8000), 8000)
    assert probe_audio(path).duration_s == pytest.approx(600)
    samples = load_audio(path, 32000, max_duration_s=60)
    assert len(samples) == 60 * 32000


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("this is not audio\n" * 20), "not an audio file"),
        (lambda p: p.write_bytes(truncated_ogg(10, 0.02)), "unreadable audio header"),
        (lambda p: p.mkdir(), "not a regular file"),
        (lambda p: None, "file not found"),
    ],
    ids=["zero-byte", "text-named-ogg", "truncated-header", "directory", "missing"],
)
def test_unreadable_files_give_a_reason(tmp_path, make, reason):
    path = tmp_path / "bad.ogg"
    make(path)
    with pytest.raises(AudioError, match=reason):
        probe_audio(path)


def test_truncated_ogg_body_decodes_what_is_there(tmp_path):
    """A cut OGG's header gives only the pages there (libsndfile counts them): decoding stops
    at the cut and says so; the blocks before it are streamed first."""
    path = tmp_path / "half.ogg"
    path.write_bytes(truncated_ogg(10, 0.5))
    info = probe_audio(path)
    assert 2 < info.duration_s < 8
    with pytest.raises(AudioError, match="truncated: the Ogg stream stops without its end"):
        load_audio(path, 32000)
    blocks = []
    with pytest.raises(AudioError, match=r"after \d\.\d s"):
        for block in stream_audio(path, 32000):
            blocks.append(block)
    assert len(np.concatenate(blocks)) == pytest.approx(info.frames, abs=1)


@pytest.mark.parametrize("suffix", [".ogg", ".flac", ".mp3", ".wav"])
def test_a_recording_cut_in_half_is_truncated_not_shorter(tmp_path, suffix):
    """`head -c` half of a 60-s file: every format says how much of what was decoded, the
    windows before the cut are still streamed, and the whole file passes."""
    whole = write_audio(tmp_path / f"whole{suffix}", tone(60.0, 32000), 32000)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert len(load_audio(whole, 32000)) == 60 * 32000
    assert sum(map(len, stream_audio(whole, 32000))) == 60 * 32000

    decoded = []
    with pytest.raises(AudioError, match="truncated") as raised:
        for block in stream_audio(cut, 32000):
            decoded.append(block)
    seconds = sum(map(len, decoded)) / 32000
    assert 20 < seconds < 40
    if suffix != ".ogg":  # the others' headers keep the full length
        assert f"truncated: {seconds:.1f} of 60.0 s decoded" in str(raised.value)
    with pytest.raises(AudioError, match="truncated"):
        load_audio(cut, 32000)
    # the first 10 s are whole: a caller that reads no further is not stopped
    assert len(load_audio(cut, 32000, max_duration_s=10)) == 10 * 32000


def test_ogg_end_check_reads_the_last_page_only_when_whole(tmp_path):
    whole = write_audio(tmp_path / "whole.ogg", tone(20.0, 32000), 32000)
    assert not ogg_stream_unfinished(whole)
    data = whole.read_bytes()
    for cut in (1, 100, len(data) // 3):
        (tmp_path / "cut.ogg").write_bytes(data[:-cut])
        assert ogg_stream_unfinished(tmp_path / "cut.ogg"), cut
    # the last page whole, its checksum right, but without the end-of-stream flag: a stream
    # whose writer stopped before its end
    last = data.rfind(b"OggS")
    page = bytearray(data[last:])
    page[5] &= ~0x04
    page[22:26] = bytes(4)
    page[22:26] = _ogg_crc(bytes(page)).to_bytes(4, "little")
    (tmp_path / "open.ogg").write_bytes(data[:last] + bytes(page))
    assert ogg_stream_unfinished(tmp_path / "open.ogg")
    page[5] |= 0x04  # the same page flagged: whole again
    page[22:26] = bytes(4)
    page[22:26] = _ogg_crc(bytes(page)).to_bytes(4, "little")
    (tmp_path / "closed.ogg").write_bytes(data[:last] + bytes(page))
    assert (tmp_path / "closed.ogg").read_bytes() == data
    assert not ogg_stream_unfinished(write_audio(tmp_path / "a.flac", tone(1.0, 32000), 32000))


def test_nan_and_silence_are_unusable():
    with pytest.raises(AudioError, match="NaN"):
        check_usable(np.array([0.1, np.nan, 0.2], dtype=np.float32), -90)
    with pytest.raises(AudioError, match="silent"):
        check_usable(np.zeros(1000, dtype=np.float32), -90)
    quiet = (10 ** (-60 / 20) * np.sin(np.linspace(0, 2000, 32000))).astype(np.float32)
    check_usable(quiet, -90)
    assert peak_dbfs(quiet) == pytest.approx(-60, abs=0.5)


def test_mel_filterbank_matches_librosa():
    expected = librosa.filters.mel(sr=32000, n_fft=1024, n_mels=128, fmin=50, fmax=14000)
    np.testing.assert_allclose(mel_filterbank(32000, 1024, 128, 50, 14000), expected.T, atol=1e-7)


@pytest.mark.parametrize("n_samples", [100, 511, 512, 1024, 32000 * 5, 32000 * 3 + 17])
def test_log_mel_matches_librosa(params, n_samples):
    samples = (0.1 * np.random.default_rng(n_samples).standard_normal(n_samples)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns that n_fft exceeds short inputs
        reference = librosa.power_to_db(
            librosa.feature.melspectrogram(
                y=samples,
                sr=params.sample_rate,
                n_fft=params.n_fft,
                hop_length=params.hop_length,
                n_mels=params.n_mels,
                fmin=params.fmin,
                fmax=params.fmax,
            ),
            ref=1.0,
            top_db=None,
        ).T
    ours = log_mel(samples, params)
    assert (
        ours.shape == reference.shape == (n_frames_for(n_samples, params.hop_length), params.n_mels)
    )
    np.testing.assert_allclose(ours, reference, atol=1e-3)


def test_log_mel_has_a_fixed_reference(params):
    samples = tone(2.0, params.sample_rate)[:, 0]
    quiet, loud = log_mel(samples, params), log_mel(4 * samples, params)
    above_floor = quiet > -90
    np.testing.assert_allclose((loud - quiet)[above_floor], 20 * np.log10(4), atol=1e-3)


def test_one_window_of_audio_gives_window_frames(params):
    samples = np.zeros(params.window_samples, dtype=np.float32)
    assert log_mel(samples, params).shape[0] == params.window_frames
