"""Sound in, numbers out: decoding and resampling recordings, and log-mel features (no
TensorFlow)."""
