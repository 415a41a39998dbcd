"""README figure docs/images/synth_looks.png: one specimen, four looks.

Run from the repository root: ``python docs/images/synth_looks.py``.
"""

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from cryopoint.synth import get_preset
from cryopoint.synth.simulate import simulate_kinds
from cryopoint.viz.common import display_limits

shape = (96, 320, 320)
rs = get_preset(
    "realistic", imaging="realspace", kinds=("wbp", "ctfdeconvolved", "denoised"), denoiser="tv", shape_model="assembly"
)
vols, picks = simulate_kinds(shape, rs, np.random.default_rng(11))
four, _ = simulate_kinds(shape, get_preset("realistic", shape_model="assembly"), np.random.default_rng(11))
panels = {
    "real-space: wbp": vols["wbp"],
    "real-space: ctfdeconvolved": vols["ctfdeconvolved"],
    "real-space: denoised (TV)": vols["denoised"],
    "Fourier path: denoised (Wiener)": four["denoised"],
}
fig, axes = plt.subplots(2, 4, figsize=(16, 6.2), gridspec_kw={"height_ratios": [320, 96 * 1.6]})
for j, (title, v) in enumerate(panels.items()):
    lo, hi = display_limits(v)
    axes[0, j].imshow(v[48], cmap="gray", vmin=lo, vmax=hi)
    axes[0, j].set_title(title, fontsize=10)
    axes[1, j].imshow(v[:, 160], cmap="gray", vmin=lo, vmax=hi, aspect="auto")
    for ax in axes[:, j]:
        ax.set_xticks([])
        ax.set_yticks([])
axes[0, 0].set_ylabel("xy slice (z = 48)")
axes[1, 0].set_ylabel("xz slice (y = 160)")
fig.suptitle("One assembly-model specimen, 96 x 320 x 320 voxels of 10 Å: the looks the simulator writes", fontsize=11)
fig.tight_layout()
fig.savefig("docs/images/synth_looks.png", dpi=70)
