"""Orthoslice figures: panels, circles at the section radius, status line styles, atomic PNG output."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.patches import Ellipse

from cryopoint.errors import InvalidVolumeError, PicksFormatError, UnknownParticleError
from cryopoint.particles import get_particle
from cryopoint.viz.slices import STATUS_STYLES, class_color, plot_orthoslices

VS = 10.0


def _ellipses(ax):
    return [p for p in ax.patches if isinstance(p, Ellipse)]


def _picks():
    # centre slices of a (40, 60, 80) volume: z = 20, y = 30, x = 40 (voxels) = 200, 300, 400 Å
    return pd.DataFrame(
        {
            "particle_type": ["ribosome", "apo-ferritin", "apo-ferritin"],
            "x": [400.0, 100.0, 600.0],
            "y": [300.0, 100.0, 500.0],
            "z": [200.0 + 90.0, 200.0, 200.0 + 70.0],  # ribosome 90 Å off the xy plane; last ferritin misses it
        }
    )


def test_panels_and_section_radii(tmp_path):
    vol = np.random.default_rng(0).standard_normal((40, 60, 80)).astype(np.float32)
    out = tmp_path / "fig.png"
    fig = plot_orthoslices(vol, VS, _picks(), title="t", out=out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    axes = {ax.get_title().split()[0]: ax for ax in fig.axes}
    assert set(axes) == {"xy", "xz", "yz"}
    xy = _ellipses(axes["xy"])
    assert len(xy) == 2  # the ferritin 70 Å away (radius 60) is not cut by the plane
    ribo = next(e for e in xy if e.get_edgecolor()[:3] == pytest.approx(_rgb(class_color("ribosome"))))
    assert ribo.center == pytest.approx((40.0, 30.0))
    assert ribo.width == pytest.approx(2 * np.sqrt(150.0**2 - 90.0**2) / VS)
    assert axes["xy"].images[0].get_array().shape == (60, 80)
    assert axes["xz"].images[0].get_array().shape == (40, 80)
    assert axes["yz"].images[0].get_array().shape == (60, 40)  # z runs horizontally beside the xy panel
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["apo-ferritin", "ribosome"]


def _rgb(hex_color):
    return tuple(int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5))


def test_status_styles_distinct():
    vol = np.zeros((40, 60, 80), dtype=np.float32)
    picks = _picks().iloc[:2].assign(status=["fn", "fp"])
    picks = pd.concat([picks, picks.iloc[[1]].assign(status="tp", x=300.0)])
    fig = plot_orthoslices(vol, VS, picks)
    xy = next(ax for ax in fig.axes if ax.get_title().startswith("xy"))
    styles = sorted(e.get_linestyle() for e in _ellipses(xy))
    assert len(set(styles)) == 3
    assert len(set(STATUS_STYLES.values())) == 3
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[-3:] == ["tp", "fp", "fn"]


def test_center_and_anisotropic_voxels():
    vol = np.zeros((10, 20, 30), dtype=np.float32)
    picks = pd.DataFrame({"particle_type": ["beta-amylase"], "x": [100.0], "y": [100.0], "z": [30.0]})
    fig = plot_orthoslices(vol, (20.0, 10.0, 10.0), picks, center=(1, 10, 10))
    xz = next(ax for ax in fig.axes if ax.get_title().startswith("xz"))
    (e,) = _ellipses(xz)
    r = get_particle("beta-amylase").radius
    assert e.width == pytest.approx(2 * r / 10.0) and e.height == pytest.approx(2 * r / 20.0)
    assert e.center == pytest.approx((10.0, 1.5))


def test_errors():
    with pytest.raises(InvalidVolumeError):
        plot_orthoslices(np.zeros((4, 4)), VS)
    with pytest.raises(PicksFormatError, match="particle_type"):
        plot_orthoslices(np.zeros((4, 4, 4)), VS, pd.DataFrame({"x": [0.0]}))
    bad = pd.DataFrame({"particle_type": ["ribosomes"], "x": [0.0], "y": [0.0], "z": [0.0]})
    with pytest.raises(UnknownParticleError):
        plot_orthoslices(np.zeros((4, 4, 4)), VS, bad)
