"""Model card figure docs/images/class_averages.png: how each generator draws each class.

The mean of up to 60 labelled particles per class (central 3 slices of a 37-voxel box, each tomogram normalised as
``detect`` normalises it) from 16 runs of 96 x 256 x 256 of our ``randomized`` preset and of the blind simulators D,
E, F, G and H (seed 61 of each, used for nothing else). Random orientations average an elongated particle into a blob; a
ring means a hollow model.

Run from the repository root: ``PYTHONPATH=. python docs/images/class_averages.py`` (a few minutes; the runs go to
the cache).
"""

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from benchmarks.blind_source import dataset
from cryopoint.coords import angstrom_to_voxel
from cryopoint.data.cache import ensure_synthetic_dataset
from cryopoint.data.normalize import normalize_volume
from cryopoint.io import list_runs, read_tomogram, read_truth, tomogram_path
from cryopoint.particles import PARTICLE_NAMES

HALF, PER_CLASS, SHAPE = 18, 60, (96, 256, 256)


def averages(root):
    """{class: (mean box, count)} over the runs of ``root``."""
    boxes = {c: [] for c in PARTICLE_NAMES}
    truth = read_truth(root)
    for run in sorted(list_runs(root)):
        tomo = read_tomogram(tomogram_path(root, run))
        vol = normalize_volume(np.asarray(tomo.data, dtype=np.float32))
        picks = truth[truth.experiment == run]
        centres = np.round(angstrom_to_voxel(picks[["x", "y", "z"]].to_numpy(), tomo.voxel_size)).astype(int)
        for particle, c in zip(picks.particle_type, centres):
            if len(boxes[particle]) >= PER_CLASS:
                continue
            if (c - HALF < 0).any() or (c + HALF + 1 > np.array(vol.shape)).any():
                continue
            boxes[particle].append(vol[tuple(slice(k - HALF, k + HALF + 1) for k in c)])
    return {c: (np.mean(b, axis=0) if b else np.zeros((2 * HALF + 1,) * 3), len(b)) for c, b in boxes.items()}


sources = {
    "ours (randomized)": ensure_synthetic_dataset("randomized", runs=16, shape=SHAPE, seed=61),
    "D (blind)": dataset(61, 1, 16, SHAPE, source="D"),
    "E (blind)": dataset(61, 1, 16, SHAPE, source="E"),
    "F (blind)": dataset(61, 1, 16, SHAPE, source="F"),
    "G (blind)": dataset(61, 1, 16, SHAPE, source="G"),
    "H (blind)": dataset(61, 1, 16, SHAPE, source="H"),
}
fig, axes = plt.subplots(len(sources), len(PARTICLE_NAMES), figsize=(13, 2.27 * len(sources)))
for i, (label, root) in enumerate(sources.items()):
    for j, (name, (mean, n)) in enumerate(averages(root).items()):
        ax = axes[i, j]
        ax.imshow(mean[HALF - 1 : HALF + 2].mean(axis=0), cmap="gray")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(1, 4, f"n={n}", color="yellow", fontsize=7)
        if i == 0:
            ax.set_title(name, fontsize=9)
        if j == 0:
            ax.set_ylabel(label)
fig.suptitle("Mean of up to 60 labelled particles per class: central 3 slices of 37 x 37 voxels (10 Å), dark = protein")
fig.tight_layout()
fig.savefig("docs/images/class_averages.png", dpi=80)
print("wrote docs/images/class_averages.png")
