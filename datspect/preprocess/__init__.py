"""Per-image preprocessing: smoothing, spatial normalization to MNI and its quality control."""
