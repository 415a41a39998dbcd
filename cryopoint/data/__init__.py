"""Training data: normalisation, heatmap targets, augmentations, crop datasets."""
