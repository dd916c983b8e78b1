from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pandas as pd
import pytest
from support import tone, truncated_ogg, write_audio

from dawnchorus.config import AudioParams, load_config
from dawnchorus.data.shards import FORMAT_VERSION, ClipStore, ShardError, build_shard, open_shard
from dawnchorus.data.spectrograms import index_stage, shard_table
from dawnchorus.signal.audio import load_audio
from dawnchorus.signal.features import log_mel


@pytest.fixture(scope="module")
def params() -> AudioParams:
    return AudioParams.from_config(load_config(overrides={"data_dir": "x"}))


@pytest.fixture
def recordings(tmp_path):
    """Good recordings in several formats plus ones that must be quarantined."""
    audio = tmp_path / "audio"
    files = {
        "b/good.ogg": write_audio(audio / "good.ogg", tone(3, 32000, 2500), 32000),
        "a/stereo48k.flac": write_audio(audio / "s.flac", tone(2, 48000, 4000, 2), 48000),
        "c/long.flac": write_audio(audio / "long.flac", tone(600, 8000, 1000), 8000),
        "d/nan.wav": write_audio(audio / "nan.wav", np.full((32000, 1), np.nan, np.float32), 32000),
        "e/silent.wav": write_audio(audio / "silent.wav", np.zeros((32000, 1), np.float32), 32000),
        "f/corrupt.ogg": audio / "corrupt.ogg",
    }
    files["f/corrupt.ogg"].write_bytes(truncated_ogg(3, 0.02))
    return [(name, path) for name, path in files.items()]


def test_shard_holds_whole_clips_in_filename_order(tmp_path, params, recordings):
    out = tmp_path / "shard_000.h5"
    summary = build_shard(recordings, out, params)
    assert summary.stored == 3
    with open_shard(out, params) as shard:
        assert list(shard.filenames) == ["a/stereo48k.flac", "b/good.ogg", "c/long.flac"]
        assert shard.mel.dtype == np.float16 and shard.mel.shape[1] == params.n_mels
        assert shard.offsets[0] == 0
        np.testing.assert_array_equal(shard.offsets[1:], np.cumsum(shard.n_frames)[:-1])
        assert shard.mel.shape[0] == shard.n_frames.sum()
        expected = log_mel(load_audio(recordings[0][1], params.sample_rate), params)
        np.testing.assert_allclose(shard.clip(1), expected, atol=0.05)
        # the ten-minute clip is stored up to max_duration_s
        assert shard.n_frames[2] == 1 + params.max_samples // params.hop_length
        attrs = dict(shard.file.attrs)
    assert attrs["format_version"] == FORMAT_VERSION
    for key, value in params.feature_attrs().items():
        assert attrs[key] == value


def test_bad_audio_is_quarantined_with_a_reason(tmp_path, params, recordings):
    out = tmp_path / "shard_000.h5"
    build_shard(recordings, out, params)
    table = shard_table([out]).set_index("filename")
    assert (table["status"] == "quarantined").sum() == 3
    assert "NaN" in table.loc["d/nan.wav", "reason"]
    assert "silent" in table.loc["e/silent.wav", "reason"]
    assert "cannot decode" in table.loc["f/corrupt.ogg", "reason"]


def test_same_input_gives_a_byte_identical_shard(tmp_path, params, recordings):
    first, second = tmp_path / "one" / "shard_000.h5", tmp_path / "two" / "shard_000.h5"
    build_shard(recordings, first, params)
    build_shard(list(reversed(recordings)), second, params)
    assert first.read_bytes() == second.read_bytes()


def test_a_shard_with_no_recordings_is_valid(tmp_path, params):
    out = tmp_path / "shard_000.h5"
    build_shard([], out, params)
    with open_shard(out, params) as shard:
        assert len(shard.filenames) == 0 and shard.mel.shape == (0, params.n_mels)
        assert len(shard.offsets) == len(shard.n_frames) == 0
    # and a training job can open it beside others (its clip table once had one offset too many)
    store = ClipStore([out], params, ["not/stored.ogg"], ram_budget_mb=64)
    assert store.missing == ["not/stored.ogg"]
    store.close()


def test_other_feature_parameters_are_refused_by_name(tmp_path, params, recordings):
    out = tmp_path / "shard_000.h5"
    build_shard(recordings[:1], out, params)
    other = dataclasses.replace(params, n_mels=64)
    with pytest.raises(ShardError, match=r"shard_000\.h5.*n_mels 128 in shard vs 64 in config"):
        open_shard(out, other)
    with pytest.raises(ShardError, match="missing"):
        open_shard(tmp_path / "shard_999.h5", params)
    with h5py.File(out, "a") as handle:
        handle.attrs["format_version"] = 99
    with pytest.raises(ShardError, match="format version 99"):
        open_shard(out, params)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(ShardError, match="not a readable HDF5"):
        open_shard(tmp_path / "junk.h5", params)


KILLABLE_WRITER = """
import json, sys
from dawnchorus.config import AudioParams
from dawnchorus.data.shards import build_shard
recordings, out, params = json.loads(sys.argv[1])
build_shard([tuple(r) for r in recordings], out, AudioParams(**params))
"""


def test_kill_9_mid_write_leaves_no_shard_and_rebuild_is_identical(tmp_path, params):
    audio = tmp_path / "audio"
    recordings = [
        (
            f"sp/{i:02d}.flac",
            str(write_audio(audio / f"{i:02d}.flac", tone(60, 32000, 500 + 97 * i), 32000)),
        )
        for i in range(40)
    ]
    reference = tmp_path / "reference" / "shard_000.h5"
    build_shard(recordings, reference, params)

    out = tmp_path / "run" / "shard_000.h5"
    job = subprocess.Popen(
        [
            sys.executable,
            "-c",
            KILLABLE_WRITER,
            json.dumps([recordings, str(out), dataclasses.asdict(params)]),
        ]
    )
    deadline = time.monotonic() + 120
    while not list(out.parent.glob("shard_000.h5.tmp-*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # well into writing
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert job.returncode == -signal.SIGKILL
    assert not out.exists(), "a killed writer must not leave a file under the final name"
    assert list(out.parent.glob("shard_000.h5.tmp-*")), "the test did not kill mid-write"

    build_shard(recordings, out, params)
    assert not list(out.parent.glob("shard_000.h5.tmp-*"))
    assert out.read_bytes() == reference.read_bytes()


def test_index_refuses_shards_that_do_not_match_the_manifest(tmp_path, params, recordings):
    out = tmp_path / "shard_000.h5"
    build_shard(recordings[:2], out, params)
    manifest = pd.DataFrame({"filename": [name for name, _ in recordings[:3]], "shard": 0})
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    with pytest.raises(ShardError, match=r"1 manifest recording.*in no shard.*c/long\.flac"):
        index_stage(tmp_path / "manifest.csv", [out], tmp_path / "index.csv")
    manifest.iloc[:2].to_csv(tmp_path / "manifest.csv", index=False)
    index = index_stage(tmp_path / "manifest.csv", [out], tmp_path / "index.csv")
    assert set(index["status"]) == {"stored"} and len(index) == 2
