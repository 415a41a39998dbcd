"""Model card figure docs/images/class_designs.png: what a random class design looks like.

Per class (rows): the analytic model, then five random designs (``cryopoint.synth.designs.class_design``, seeded
``(row, k)``), each as a projection of its density along the particle frame's z axis (sum over z, 4 Å grid, 400 Å
square, one grey scale per row). Every design keeps the class's protein volume (to within the drawn 0.7-1.4
factor) and its kind: hollow for the two cages, solid lobes for the others.

Run from the repository root: ``PYTHONPATH=. python docs/images/class_designs.py`` (a few seconds).
"""

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from cryopoint.particles import PARTICLE_NAMES
from cryopoint.synth.designs import class_design
from cryopoint.synth.shapes import particle_shape

HALF, STEP, DESIGNS = 200.0, 4.0, 5


def projection(shape):
    axis = np.arange(-HALF, HALF + STEP, STEP, dtype=np.float32)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij", sparse=True)
    return shape((x, y, z)).sum(axis=2).T * STEP  # rows y, columns x


def main(out="docs/images/class_designs.png"):
    fig, axes = plt.subplots(len(PARTICLE_NAMES), DESIGNS + 1, figsize=(2.0 * (DESIGNS + 1), 2.0 * len(PARTICLE_NAMES)))
    for row, name in enumerate(PARTICLE_NAMES):
        images = [projection(particle_shape(name))]
        images += [projection(class_design(name, np.random.default_rng((row, seed)))) for seed in range(DESIGNS)]
        top = max(float(im.max()) for im in images)
        for col, image in enumerate(images):
            ax = axes[row, col]
            ax.imshow(image, cmap="gray_r", vmin=0.0, vmax=top, extent=(-HALF, HALF, -HALF, HALF), origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title("analytic model" if col == 0 else f"design {col}", fontsize=10)
            if col == 0:
                ax.set_ylabel(name, fontsize=10)
    fig.suptitle("Random class designs: projections along z (400 Å boxes; darker = more protein)", fontsize=12)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
