"""The data stage: manifest, folds, HDF5 spectrogram shards, soundscape shards and the pseudo-label
file format (no TensorFlow, no models)."""
