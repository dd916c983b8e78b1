"""What a training epoch draws: which recordings, and which crop of each.

Weak labels make both choices matter. A recording labelled with a species may hold it in a few
seconds out of a minute; a crop drawn uniformly then mostly shows background under the label,
which teaches nothing. And a long-tailed class list makes a uniform draw of recordings show the
commonest species a hundred times for each time it shows the rarest.

- Activity-aware crops (`activity_power` > 0): each frame's activity is how far it rises above the
  recording's own background (the per-band median level, plus a margin), averaged over the
  bands; a crop is drawn with probability proportional to its mean activity to the power
  `activity_power`. Crops with sound in the band (the labelled species, or another sound) are
  drawn more often; quiet stretches still can be. 0 = every start equally likely.
- Class-balanced recordings (`class_power` > 0): an epoch draws crops_per_recording x (the fold's
  recordings) recordings, with replacement, each with weight (recordings of its primary
  class)^-class_power; 0.5 is the square-root balancing BirdCLEF 2025's second place used.
  0 = every recording crops_per_recording times per epoch.

Both are pure functions of the stored spectrograms and labels, so the same seed gives the same
crops.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from dawnchorus.signal.features import cut_window

# A band counts as active this far above its median level: a noise floor's own fluctuations
# (a few dB in a log-mel band) are not sound worth drawing a crop for.
ACTIVITY_MARGIN_DB = 6.0


def frame_activity(frames_db: np.ndarray) -> np.ndarray:
    """(frames,) float32: mean over mel bands of how far the level rises above the band's median
    plus ACTIVITY_MARGIN_DB, in dB (0 where it does not)."""
    frames = np.asarray(frames_db, dtype=np.float32)
    background = np.median(frames, axis=0) + ACTIVITY_MARGIN_DB
    return np.maximum(frames - background, 0.0).mean(axis=1)


def crop_start_weights(activity: np.ndarray, crop_frames: int, power: float) -> np.ndarray:
    """Unnormalised probability of each crop start 0 .. len - crop_frames (one start if shorter)."""
    n_starts = max(1, len(activity) - crop_frames + 1)
    if power == 0 or len(activity) <= crop_frames:
        return np.ones(n_starts)
    totals = np.concatenate([[0.0], np.cumsum(activity, dtype=np.float64)])
    mean_activity = (totals[crop_frames:] - totals[:-crop_frames]) / crop_frames
    # a floor keeps every crop possible (a recording with one loud click still shows the rest)
    floor = 0.05 * max(float(mean_activity.mean()), 1e-3)
    return (mean_activity + floor) ** power


def pick_start(weights: np.ndarray, position: float) -> int:
    """The crop start at quantile `position` (in [0, 1)) of the distribution `weights`."""
    cumulative = np.cumsum(weights)
    index = int(np.searchsorted(cumulative, position * cumulative[-1], side="right"))
    return min(index, len(weights) - 1)


class CropSampler:
    """Crops of `crop_frames` frames from a ClipStore's recordings, activity-weighted.

    Each recording's start distribution is computed the first time it is drawn and kept (a few
    bytes per frame); the lock makes it safe from tf.data's parallel map threads.
    """

    def __init__(self, store, crop_frames: int, activity_power: float):
        self.store = store
        self.crop_frames = crop_frames
        self.activity_power = activity_power
        self._weights: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def _start_weights(self, row: int) -> np.ndarray:
        with self._lock:
            weights = self._weights.get(row)
        if weights is None:
            # the whole recording is read once, for its activity; crops then read only themselves
            # (what matters when the shards are streamed from disk)
            n_frames = int(self.store.n_frames[row])
            activity = (
                frame_activity(self.store.frames(row))
                if self.activity_power
                else np.zeros(n_frames)
            )
            weights = crop_start_weights(activity, self.crop_frames, self.activity_power)
            with self._lock:
                self._weights[row] = weights
        return weights

    def crop(self, row: int, position: float) -> np.ndarray:
        """The crop of recording `row` at quantile `position` of its start distribution; a
        recording shorter than a crop is repeated end to end from a `position`-dependent phase."""
        n_frames = int(self.store.n_frames[row])
        if n_frames <= self.crop_frames:
            frames = self.store.frames(row)
            phase = min(int(position * n_frames), n_frames - 1)
            return cut_window(frames, phase, self.crop_frames)
        start = pick_start(self._start_weights(row), position)
        return self.store.frames(row, start, self.crop_frames)


def class_balanced_weights(primary: Sequence[int], class_power: float) -> np.ndarray:
    """Per recording, (recordings of its primary class)^-class_power, normalised to sum to 1."""
    primary = np.asarray(primary, dtype=np.int64)
    counts = np.bincount(primary)
    weights = counts[primary].astype(np.float64) ** -class_power
    return weights / weights.sum()
