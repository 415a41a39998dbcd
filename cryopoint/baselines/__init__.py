"""Baseline detectors to compare against: a training-free blob detector (the 3D U-Net lives in cryopoint.model)."""
