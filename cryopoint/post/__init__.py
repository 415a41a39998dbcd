"""Post-processing: peak extraction (NMS) and per-class thresholds."""
