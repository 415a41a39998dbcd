#!/usr/bin/env python
# ruff: noqa
# A fourth simulator written blind (source G), for evaluation. A helper wrote this file on 2026-12-06 (session 51)
# without reading cryopoint's code, its documents or notes, sources D, E and F, or the reference documents: from a
# brief holding the CZII data contract, the six class names with their radii and real per-tomogram counts, and a
# physics brief that described no particle's look (each class is the helper's own conception of the real complex).
# It is kept as its author wrote it (formatting only). No cryopoint recipe trains on it; docs/preregistrations.md
# (session 51) says how it was first used.
#   python benchmarks/blind_sim_g.py --out ROOT --runs 48 --seed 2 --first 1 --shape 96 256 256
"""blind_sim_g.py - independent cryo-electron-tomogram simulator ("source G").

Writes CZII-style runs (OME-NGFF 0.4 / zarr v2 "denoised" tomogram at 10.012444 A
voxels plus copick-style pick JSONs for six protein classes).

PHYSICAL MODEL (all numbers drawn per run from plausible ranges)
-----------------------------------------------------------------
Specimen.  A slab of vitreous ice (mean inner potential ~4.3-4.9 V, thickness
~70-170 nm, slightly tilted, rough surfaces, optional thickness gradient) inside
a box of vacuum.  Macromolecules are point clouds of "pseudo-atoms" filling
their molecular envelope on a jittered lattice (4-6 A spacing), each point
carrying an excess Coulomb potential over ice (protein ~1.9-2.6 V per filled
volume, RNA ~1.6-1.9x protein per volume, glycans ~0.9x); clouds are splatted
trilinearly onto the 10 A grid and later blurred by an atomic/B-factor envelope.
Every copy is randomly oriented, flexes its rigid bodies (hinges, stalks,
subunit rotations), is slightly strained/scaled and jittered, and is re-centred
on its own centre of mass, which is the pick location.  Objects never overlap
(voxel-footprint occupancy test with one voxel of clearance; hollow particles
reserve their lumen).  A run-dependent fraction of particles adsorbs at the
air-water interfaces.

Particles (my own conception):
 * apo-ferritin: 24-mer cage, octahedral 432 symmetry, ~490 kDa, outer
   diameter ~125 A, empty 75-80 A cavity.  Each subunit is a curved 4-helix
   bundle (~55 A long) with a BC loop on the outside and a short E helix
   pointing into the 4-fold channel; antiparallel dimers lie on the 12
   rhombic-dodecahedron faces, leaving 3-fold and 4-fold pores.
 * beta-amylase: sweet-potato-like homotetramer (4 x 56 kDa, D2), each
   subunit a (beta/alpha)8 TIM barrel (~55x50x40 A ellipsoid with an active
   site pocket) plus two loop excursions; tetramer ~110x100x65 A; subunits
   wobble a few degrees.
 * beta-galactosidase: E. coli LacZ-like D2 tetramer (4 x 116 kDa, ~465 kDa),
   each monomer five domains (jelly-roll, two Ig/Fn3-like, central TIM barrel,
   C-terminal beta sandwich) plus an N-terminal arm, packed into a
   ~175x130x85 A block with a central hole; monomers wobble.
 * ribosome: eukaryotic 80S-like (~4.5 MDa, ~60 % RNA).  Large subunit with a
   flattened, slightly concave interface, RNA-rich core/protein-rich rim,
   central protuberance, exit tunnel, L1 stalk (flexible), P stalk (flexible,
   sometimes disordered) and peripheral RNA expansion segments; small subunit
   with body, platform, feet, head and beak; intersubunit gap with bridges,
   mRNA and 0-3 tRNAs.  Per copy: ratchet rotation of the small subunit, head
   swivel, L1/P stalk motions, tRNA occupancy.
 * thyroglobulin: ~660 kDa glycosylated homodimer (C2).  Central dimerising
   ChEL (cholinesterase-like) domains; each protomer's chain of ~20
   cysteine-rich Tg-type repeat domains forms a long arm that wraps from the
   core out along one side and back underneath, crossing to the partner;
   ~12 N-glycans per protomer; dimer ~270x110x95 A.  Arms flex at two hinges
   per copy.
 * virus-like particle: T=3 icosahedral capsid (180 x 13.7 kDa coat protein,
   MS2/PP7-like, ~27-28 nm across, 25-30 A thick shell with pentamers at the
   5-folds, hexamers at the 3-folds, surface loops and pores) packaging a
   variable amount of RNA (empty to ~1.2 MDa) as a dense layer under the
   shell plus a clumpy core, partially filled copies being lopsided.

Distractors: a pool of unlabelled "contaminant" proteins (monomers and C/D
symmetric oligomers, 40-900 kDa), a haze of small 15-70 kDa proteins,
amorphous aggregates, free ribosomal subunits, broken capsid fragments,
optional gold fiducials, lipid vesicles, crystalline-ice contamination on the
slab surface, a carbon-film edge, and denatured protein films at the
air-water interfaces.

Imaging.  Projection-slice formulation of a weighted back-projection: each tilt
(+-48..64 deg, 2-3 deg steps, dose-symmetric or bidirectional, 70-170 e/A^2
total) contributes a central slice of the specimen's 3-D Fourier transform,
spread by a Gaussian kernel of width ~1/box-depth (so high frequencies are
undersampled as in real WBP), multiplied by the weak-phase CTF (300 kV,
Cs 2.7 mm, 1.8-5 um underfocus with per-tilt focus error, 6-10 % amplitude
contrast), optional phase flipping with an imperfect defocus estimate, the
Grant & Grigorieff exposure-dependent damage filter (and optional dose
weighting), beam-induced-motion/alignment blur, pixel-binning MTF, zero-loss
(or unfiltered) transmission loss through the tilted slab, and a residual
alignment shift per tilt (phase ramp).  The missing wedge follows from the
tilt range.  Shot noise: per-tilt Poisson noise (counts = dose x pixel area
x transmission x DQE) propagated through the same kernels and weights
(ramp-R or exact weighting).  The "denoised" tomogram is a Wiener-like
estimate (what a noise2noise-trained denoiser approximates): per (|k|,
angle-to-beam) shell, H = S/(S + a N) with a run-dependent aggressiveness a,
plus a little residual raw noise, followed (in most runs) by a content-adaptive
local linear-MMSE (Lee) stage that smooths featureless ice more than structure,
as learned denoisers do; then a weak low-order background and an arbitrary
per-run scale (std ~2e-5..5e-4) and offset.  Protein is darker than ice.
Laterally uniform structure (the flat ice slab itself) only changes the mean of
each tilt image, which per-image normalisation removes, so it is not imaged.
"""

import argparse
import itertools
import json
import os
import shutil
import tempfile

import numpy as np
import scipy.fft as sfft
from scipy import ndimage
import zarr

VOX = 10.012444
REF_SHAPE = (184, 630, 630)
CLASSES = ("apo-ferritin", "beta-amylase", "beta-galactosidase", "ribosome", "thyroglobulin", "virus-like-particle")
COUNT_RANGES = {
    "apo-ferritin": (35, 95),
    "beta-amylase": (9, 21),
    "beta-galactosidase": (11, 24),
    "ribosome": (23, 74),
    "thyroglobulin": (28, 49),
    "virus-like-particle": (9, 29),
}
SIGMA_INT = 6.526e-4  # interaction constant at 300 kV, rad / (V A)
LAMBDA = 0.019687  # electron wavelength at 300 kV, A
CS = 2.7e7  # spherical aberration, A
PHI = (1 + 5**0.5) / 2


# ----------------------------------------------------------------------------
# geometry helpers
# ----------------------------------------------------------------------------
def unit(v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def rot_axis(axis, ang):
    a = unit(axis)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(ang) * K + (1 - np.cos(ang)) * (K @ K)


def random_rotation(rng):
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def group_octahedral():
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            M = np.zeros((3, 3))
            for i, j in enumerate(perm):
                M[i, j] = signs[i]
            if np.linalg.det(M) > 0:
                out.append(M)
    return np.array(out)


def group_closure(gens):
    mats = [np.eye(3)]
    keys = {tuple(np.round(np.eye(3), 5).ravel())}
    frontier = [np.eye(3)]
    while frontier:
        new = []
        for A in frontier:
            for g in gens:
                B = g @ A
                k = tuple(np.round(B, 5).ravel() + 0.0)
                if k not in keys:
                    keys.add(k)
                    mats.append(B)
                    new.append(B)
        frontier = new
    return np.array(mats)


def group_icosahedral():
    g5 = rot_axis([0, 1, PHI], 2 * np.pi / 5)
    g3 = rot_axis([1, 1, 1], 2 * np.pi / 3)
    G = group_closure([g5, g3])
    assert len(G) == 60
    return G


D2 = np.array([np.diag([1, 1, 1]), np.diag([1, -1, -1]), np.diag([-1, 1, -1]), np.diag([-1, -1, 1])], float)


class Ell:
    def __init__(self, c, ax, R=None):
        self.c = np.asarray(c, float)
        self.ax = np.asarray(ax, float)
        self.R = np.eye(3) if R is None else np.asarray(R, float)

    def inside(self, p):
        q = ((p - self.c) @ self.R) / self.ax
        return (q * q).sum(1) <= 1.0

    def bbox(self):
        e = np.sqrt(((self.R * self.ax) ** 2).sum(1))
        return self.c - e, self.c + e


class Cap:
    def __init__(self, a, b, r):
        self.a = np.asarray(a, float)
        self.b = np.asarray(b, float)
        self.r = float(r)

    def inside(self, p):
        d = self.b - self.a
        L2 = max(d @ d, 1e-9)
        t = np.clip(((p - self.a) @ d) / L2, 0, 1)
        q = p - self.a - t[:, None] * d
        return (q * q).sum(1) <= self.r**2

    def bbox(self):
        return np.minimum(self.a, self.b) - self.r, np.maximum(self.a, self.b) + self.r


class SuperEll(Ell):
    def __init__(self, c, ax, R=None, n=4.0):
        super().__init__(c, ax, R)
        self.n = n

    def inside(self, p):
        q = np.abs(((p - self.c) @ self.R) / self.ax)
        return (q**self.n).sum(1) <= 1.0

    def bbox(self):
        e = np.abs(self.R * self.ax).sum(1)
        return self.c - e, self.c + e


def fill(rng, prims, h, subs=(), extra=None):
    """Jittered-lattice sampling (spacing h, A) of the union of primitives."""
    lo = np.min([p.bbox()[0] for p in prims], 0)
    hi = np.max([p.bbox()[1] for p in prims], 0)
    axes = [np.arange(lo[i], hi[i] + h, h) for i in range(3)]
    G = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    G = G + rng.uniform(-0.5 * h, 0.5 * h, G.shape)
    m = np.zeros(len(G), bool)
    for p in prims:
        m |= p.inside(G)
    for s in subs:
        m &= ~s.inside(G)
    if extra is not None:
        m &= extra(G)
    return G[m]


# ----------------------------------------------------------------------------
# templates (point clouds with rigid bodies)
# ----------------------------------------------------------------------------
class Template:
    def __init__(self, name, mats):
        self.name = name
        self.mats = mats
        self._P, self._W, self._M, self._B = [], [], [], []
        self.bodies = []
        self.solid_r = 0.0
        self.strain = 0.008
        self.scale_sd = 0.01
        self.jitter = 0.7

    def body(self, pivot=(0, 0, 0), rot=0.0, shift=0.0, parent=-1, p=1.0, axis=None, fill=None):
        self.bodies.append(
            dict(pivot=np.asarray(pivot, float), rot=rot, shift=shift, parent=parent, p=p, axis=axis, fill=fill)
        )
        return len(self.bodies) - 1

    def add_mass(self, pts, comp, body, weights=None):
        """comp: material -> mass (kDa) distributed over pts."""
        n = len(pts)
        if n == 0:
            return
        wts = np.ones(n) if weights is None else np.asarray(weights, float) / np.mean(weights)
        vol = sum(m * 1000 * self.mats[k][1] for k, m in comp.items())
        dvvol = sum(m * 1000 * self.mats[k][1] * self.mats[k][0] for k, m in comp.items())
        mass = sum(m * 1000 for m in comp.values())
        self._P.append(np.asarray(pts, float))
        self._W.append(dvvol / n * wts)
        self._M.append(mass / n * wts)
        self._B.append(np.full(n, body, np.int16))

    def add_vol(self, pts, dV, vol_pt, body, dens=1.0):
        n = len(pts)
        if n == 0:
            return
        self._P.append(np.asarray(pts, float))
        self._W.append(np.full(n, dV * vol_pt))
        self._M.append(np.full(n, dens * vol_pt))
        self._B.append(np.full(n, body, np.int16))

    def finalize(self):
        self.P = np.concatenate(self._P)
        self.W = np.concatenate(self._W)
        self.M = np.concatenate(self._M)
        self.B = np.concatenate(self._B)
        self.bidx = [np.nonzero(self.B == b)[0] for b in range(len(self.bodies))]
        com = (self.M[:, None] * self.P).sum(0) / self.M.sum()
        self.radius = float(np.sqrt(((self.P - com) ** 2).sum(1).max()))
        return self

    def subset(self, mask, name):
        T = Template(name, self.mats)
        T.bodies = self.bodies
        T._P, T._W, T._M, T._B = [self.P[mask]], [self.W[mask]], [self.M[mask]], [self.B[mask]]
        T.strain, T.scale_sd, T.jitter = self.strain, self.scale_sd, self.jitter
        return T.finalize()


def instantiate(T, rng):
    """One flexible, strained, randomly rotated copy, centred on its COM (A)."""
    P = T.P.copy()
    W = T.W.copy()
    keep = np.ones(len(P), bool)
    nb = len(T.bodies)
    Ab, tb, pres = [None] * nb, [None] * nb, [True] * nb
    for b, bd in enumerate(T.bodies):
        if bd["rot"] > 0:
            ax = rng.standard_normal(3) if bd["axis"] is None else np.asarray(bd["axis"], float)
            R = rot_axis(ax, np.deg2rad(rng.normal(0, bd["rot"])))
        else:
            R = np.eye(3)
        s = rng.normal(0, bd["shift"], 3) if bd["shift"] > 0 else np.zeros(3)
        t = bd["pivot"] - R @ bd["pivot"] + s
        pr = rng.random() < bd["p"]
        if bd["parent"] >= 0:
            q = bd["parent"]
            R, t, pr = Ab[q] @ R, Ab[q] @ t + tb[q], pr and pres[q]
        Ab[b], tb[b], pres[b] = R, t, pr
        idx = T.bidx[b]
        if len(idx) == 0:
            continue
        P[idx] = P[idx] @ R.T + t
        if not pr:
            keep[idx] = False
        if bd["fill"] is not None and pr:
            p_empty, lo, hi = bd["fill"]
            f = 0.0 if rng.random() < p_empty else rng.uniform(lo, hi)
            q = min(f, 1.0)
            u = unit(rng.standard_normal(3))
            score = P[idx] @ u + rng.normal(0, 30.0, len(idx))
            if q <= 0:
                keep[idx] = False
            elif q < 1:
                thr = np.quantile(score, q)
                keep[idx[score > thr]] = False
            W[idx] *= max(f, 1.0)
    P, W, M = P[keep], W[keep], T.M[keep]
    S = rng.normal(0, T.strain, (3, 3))
    S = np.eye(3) + 0.5 * (S + S.T)
    P = (P @ S) * (1 + rng.normal(0, T.scale_sd))
    P += rng.normal(0, T.jitter, P.shape)
    P -= (M[:, None] * P).sum(0) / M.sum()
    P = P @ random_rotation(rng).T
    return P, W


# ----------------------------------------------------------------------------
# particle builders (coordinates in A)
# ----------------------------------------------------------------------------
def build_ferritin(rng, mats):
    T = Template("apo-ferritin", mats)
    R0 = 52.0
    d2, t, e = unit([1, 1, 0]), unit([1, -1, 0]), np.array([0, 0, 1.0])
    # subunit in local (s: along long diagonal, w: across, r: radial) coords
    prims = []
    for dw, dr in ((-5, -5), (5, -5), (-5, 5), (5, 5)):
        prims.append(Cap((-26, 12.5 + dw, R0 + dr), (26, 12.5 + dw, R0 + dr), 5.3))
    prims.append(Cap((-21, 12.5, R0 + 10.5), (21, 12.5, R0 + 10.5), 3.6))  # BC loop
    prims.append(Cap((29, 12.0, R0 - 2), (35, 6.0, R0 - 11), 4.5))  # E helix
    loc = fill(rng, prims, 3.5)
    s, w, r = loc[:, 0], loc[:, 1], loc[:, 2]
    v = d2[None] + (s / R0)[:, None] * t + (w / R0)[:, None] * e
    sub = v / np.linalg.norm(v, axis=1)[:, None] * r[:, None]
    for g in group_octahedral():
        b = T.body(rot=1.2, shift=0.4)
        T.add_mass(sub @ g.T, {"protein": 20.4}, b)
    T.solid_r = 42.0
    T.jitter = 0.5
    return T.finalize()


def build_beta_amylase(rng, mats):
    T = Template("beta-amylase", mats)
    prims = [
        Ell((0, 0, 0), (27, 24, 20)),
        Cap((-8, 20, 10), (6, 30, 16), 7.5),  # long loop
        Ell((22, -14, -6), (12, 10, 9)),
    ]  # C-terminal excursion
    subs = [Cap((0, 0, 6), (0, 0, 24), 6.5)]  # active-site funnel
    mono = fill(rng, prims, 4.0, subs=subs)
    Rm = rot_axis([1, 0.3, 0.2], np.deg2rad(20))
    c = np.array([26.0, 23.0, 8.0])
    mono = mono @ Rm.T + c
    for g in D2:
        b = T.body(pivot=g @ c, rot=2.5, shift=0.6)
        T.add_mass(mono @ g.T, {"protein": 55.9}, b)
    return T.finalize()


def build_beta_gal(rng, mats):
    T = Template("beta-galactosidase", mats)
    k = 1.15
    prims = [
        Cap((2, 5, 4), (24, 18, 9), 7.0),  # N-terminal arm
        Ell((16, 45, 22), (22 * k, 17 * k, 15 * k)),  # D1 jelly roll
        Ell((45, 18, 29), (17 * k, 13 * k, 11 * k)),  # D2 Fn3
        Ell((34, 30, 4), (24 * k, 22 * k, 19 * k)),  # D3 TIM barrel
        Ell((70, 14, 14), (16 * k, 13 * k, 11 * k)),  # D4 Fn3
        Ell((65, 41, -9), (21 * k, 18 * k, 16 * k)),
    ]  # D5 sandwich
    mono = fill(rng, prims, 5.0)
    c = mono.mean(0)
    for g in D2:
        b = T.body(pivot=g @ c, rot=2.0, shift=0.7)
        T.add_mass(mono @ g.T, {"protein": 116.3}, b)
    return T.finalize()


def build_ribosome(rng, mats):
    T = Template("ribosome", mats)
    h = 5.0
    b_lsu = T.body()
    b_ssu = T.body(pivot=(0, 30, 0), rot=4.0, axis=(0, 1, 0), shift=1.0)
    b_head = T.body(pivot=(-5, 45, 50), rot=6.0, axis=(0.2, 0.3, 1.0), parent=b_ssu)
    b_l1 = T.body(pivot=(92, -30, 52), rot=12.0, parent=b_lsu)
    b_p = T.body(pivot=(-98, -30, 36), rot=15.0, p=0.75, parent=b_lsu)
    b_es = T.body(pivot=(0, -60, 0), rot=3.0, shift=3.0, parent=b_lsu)
    b_t = [T.body(shift=2.0, p=pp, parent=b_ssu) for pp in (0.55, 0.8, 0.4)]
    T.lsu_bodies = (b_lsu, b_l1, b_p, b_es)
    T.ssu_bodies = (b_ssu, b_head)
    # large subunit
    lsu = Ell((0, -50, -5), (106, 72, 100))
    cp = Ell((0, -28, 100), (40, 30, 30))
    tunnel = Cap((0, -8, 18), (0, -135, -60), 8.0)
    pts = fill(
        rng, [lsu, cp], h, subs=[tunnel], extra=lambda G: G[:, 1] <= -12 + 0.0009 * (G[:, 0] ** 2 + G[:, 2] ** 2)
    )
    core = Ell((0, -52, -5), (76, 52, 72)).inside(pts)
    T.add_mass(pts[core], {"rna": 1100, "protein": 200}, b_lsu)
    T.add_mass(pts[~core], {"rna": 650, "protein": 800}, b_lsu)
    T.add_mass(fill(rng, [Cap((92, -30, 52), (126, -8, 84), 17)], h), {"rna": 55, "protein": 25}, b_l1)
    T.add_mass(fill(rng, [Cap((-98, -30, 36), (-136, -12, 60), 10)], h), {"protein": 60}, b_p)
    es = [
        Ell((-70, -100, -60), (20, 18, 20)),
        Ell((60, -105, -50), (18, 18, 18)),
        Ell((-20, -95, -100), (17, 16, 17)),
        Ell((98, -60, -62), (18, 16, 18)),
    ]
    T.add_mass(fill(rng, es, h), {"rna": 200}, b_es)
    # small subunit
    ssu = [
        Ell((5, 48, -28), (66, 40, 86)),
        Ell((58, 36, 8), (28, 24, 32)),
        Ell((-30, 45, -108), (22, 20, 22)),
        Ell((35, 40, -104), (20, 20, 20)),
        Ell((-30, -4, -20), (12, 8, 12)),
        Ell((35, -4, 10), (12, 8, 12)),
    ]
    pts = fill(rng, ssu, h, extra=lambda G: (G[:, 1] >= 1) | (np.abs(G[:, 1] + 4) < 8.5))
    T.add_mass(pts, {"rna": 460, "protein": 500}, b_ssu)
    T.add_mass(fill(rng, [Cap((-60, 14, 28), (60, 14, 28), 5)], h), {"rna": 30}, b_ssu)
    head = [Ell((-8, 52, 80), (48, 38, 40)), Ell((-50, 66, 98), (18, 14, 18))]
    T.add_mass(fill(rng, head, h, extra=lambda G: G[:, 1] >= 2), {"rna": 190, "protein": 240}, b_head)
    for xo, b in zip((-25, 0, 25), b_t):
        tr = [Cap((xo, 6, 18), (xo, -5, 68), 8.5), Cap((xo, -5, 68), (xo + 18, -9, 48), 7.5)]
        T.add_mass(fill(rng, tr, h), {"rna": 25}, b)
    T.scale_sd = 0.008
    return T.finalize()


def _resample_path(ctrl, n):
    ctrl = np.asarray(ctrl, float)
    seg = np.linalg.norm(np.diff(ctrl, axis=0), axis=1)
    s = np.concatenate([[0], np.cumsum(seg)])
    q = np.linspace(0, s[-1], n)
    return np.stack([np.interp(q, s, ctrl[:, i]) for i in range(3)], 1)


def build_thyroglobulin(rng, mats):
    T = Template("thyroglobulin", mats)
    h = 5.0
    ctrl = [
        (32, 14, 22),
        (56, 20, 26),
        (84, 20, 22),
        (106, 12, 13),
        (116, 0, 0),
        (106, -12, -13),
        (84, -20, -22),
        (56, -20, -26),
        (28, -18, -30),
        (2, -26, -25),
        (-20, -32, -14),
        (-34, -30, -2),
    ]
    beads = _resample_path(ctrl, 20)
    beads[1:-1] = 0.5 * beads[1:-1] + 0.25 * (beads[:-2] + beads[2:])
    glyc_rng_dirs = rng.standard_normal((12, 3))
    gly_beads = np.sort(rng.choice(20, 12, replace=False))
    for m, g in enumerate((np.eye(3), np.diag([-1.0, -1.0, 1.0]))):
        b_core = T.body(rot=1.5, shift=0.6, pivot=g @ np.array([28.0, 0, 0]))
        b_prox = T.body(pivot=g @ beads[0], rot=5.0, parent=b_core)
        b_dist = T.body(pivot=g @ beads[9], rot=8.0, parent=b_prox)
        chel = fill(rng, [Ell((28, 0, 0), (30, 24, 22))], h)
        T.add_mass(chel @ g.T, {"protein": 60}, b_core)
        for part, b in ((range(0, 9), b_prox), (range(9, 20), b_dist)):
            prm = [Ell(beads[i], (17, 17, 17)) for i in part]
            prm += [Cap(beads[i], beads[i + 1], 14.5) for i in part if i + 1 < 20]
            pts = fill(rng, prm, h)
            T.add_mass(pts @ g.T, {"protein": 240 * len(part) / 20}, b)
        # N-glycans on the outside of the arm
        for j, bi in enumerate(gly_beads):
            d = unit(unit(beads[bi]) + 0.6 * unit(glyc_rng_dirs[j]))
            gp = fill(rng, [Ell(beads[bi] + 20 * d, (7, 7, 7))], 3.0)
            T.add_mass(gp @ g.T, {"glycan": 2.5}, b_prox if bi < 9 else b_dist)
    return T.finalize()


def build_vlp(rng, mats):
    T = Template("virus-like-particle", mats)
    G = group_icosahedral()
    v5, v3 = unit([0, 1, PHI]), unit([1, 1, 1])
    R0 = 121.0
    sub = fill(rng, [Ell((0, 0, 0), (18.5, 15, 14)), Ell((11, 0, 13), (7, 6, 5))], 4.5)

    def frame(u, axis):
        t = unit(axis - (axis @ u) * u)
        return R0 * u, np.stack([t, np.cross(u, t), u], 1)

    uA = rot_axis(np.cross(v5, v3), np.deg2rad(13)) @ v5
    ut = rot_axis(np.cross(v3, v5), np.deg2rad(13)) @ v3
    uB = rot_axis(v3, np.deg2rad(30)) @ ut
    uC = rot_axis(v3, np.deg2rad(-30)) @ ut
    asu = []
    for u, ax in ((uA, v5), (uB, v3), (uC, v3)):
        c, F = frame(unit(u), ax)
        asu.append(c + sub @ F.T)
    asu = np.concatenate(asu)
    caps = np.concatenate([asu @ g.T for g in G])
    b_cap = T.body()
    T.add_mass(caps, {"protein": 180 * 13.7}, b_cap)
    # packaged RNA: dense layer under the shell + clumpy core
    rna = fill(rng, [Ell((0, 0, 0), (104, 104, 104))], 6.0)
    r = np.linalg.norm(rna, axis=1)
    prof = np.where(r > 84, 1.0, 0.45)
    cl = rng.normal(0, 55, (10, 3))
    clump = np.zeros(len(rna))
    for c in cl:
        clump += np.exp(-((rna - c) ** 2).sum(1) / (2 * 22.0**2))
    prof = prof * (1 + 0.8 * clump)
    b_rna = T.body(fill=(0.25, 0.15, 1.0), shift=1.0)
    T.add_mass(rna, {"rna": 1100}, b_rna, weights=prof)
    T.solid_r = 100.0
    T.strain = 0.01
    T.scale_sd = 0.012
    return T.finalize()


def build_generic(rng, mats, mass_kda, name="generic"):
    """Random globular protein or symmetric oligomer of ellipsoidal domains."""
    T = Template(name, mats)
    r = rng.random()
    if mass_kda > 120 and r < 0.45:
        n = int(rng.integers(2, 7)) if r < 0.3 else 2 * int(rng.integers(2, 4))
        sym = "C" if r < 0.3 else "D"
    else:
        n, sym = 1, None
    mono_mass = mass_kda / n
    nd = int(np.clip(round(mono_mass / rng.uniform(25, 45)), 1, 6))
    dm = rng.dirichlet(np.full(nd, 3.0)) * mono_mass
    cs, rs, prims = [], [], []
    for i in range(nd):
        req = (3 * dm[i] * 1000 * 1.21 / (4 * np.pi) / 0.85) ** (1 / 3)
        an = np.exp(rng.normal(0, 0.2, 3))
        an /= np.prod(an) ** (1 / 3)
        if i == 0:
            c = np.zeros(3)
        else:
            for _ in range(20):
                j = rng.integers(0, i)
                c = cs[j] + unit(rng.standard_normal(3)) * (req + rs[j]) * 0.8
                if all(np.linalg.norm(c - cs[q]) > 0.7 * (req + rs[q]) for q in range(i)):
                    break
        cs.append(c)
        rs.append(req)
        prims.append(Ell(c, req * an, random_rotation(rng)))
    h = 4.0 if mass_kda < 150 else 5.0
    mono = fill(rng, prims, h)
    mono -= mono.mean(0)
    if n == 1:
        T.add_mass(mono, {"protein": mass_kda}, T.body())
    else:
        ext = np.sqrt((mono**2).sum(1)).max()
        Rm = random_rotation(rng)
        nc = n if sym == "C" else n // 2
        off = np.array([ext * (0.55 + 0.25 / nc) + 4, 0, 0])
        base = mono @ Rm.T + off
        if sym == "D":
            base = base + np.array([0, 0, ext * 0.6])
        ops = [rot_axis([0, 0, 1], 2 * np.pi * j / nc) for j in range(nc)]
        if sym == "D":
            ops = ops + [o @ rot_axis([1, 0, 0], np.pi) for o in ops]
        for o in ops:
            b = T.body(rot=2.0, shift=0.8, pivot=o @ off)
            T.add_mass(base @ o.T, {"protein": mono_mass}, b)
    return T.finalize()


def build_aggregate(rng, mats):
    T = Template("aggregate", mats)
    nb = int(rng.integers(15, 110))
    cs, rs = [np.zeros(3)], [rng.uniform(9, 22)]
    for i in range(1, nb):
        r = rng.uniform(8, 22)
        j = int(rng.integers(max(0, i - 6), i)) if rng.random() < 0.7 else int(rng.integers(0, i))
        cs.append(cs[j] + unit(rng.standard_normal(3)) * (r + rs[j]) * 0.85)
        rs.append(r)
    pts = fill(rng, [Ell(c, (r, r, r)) for c, r in zip(cs, rs)], 5.0)
    vol = len(pts) * 125.0
    T.add_mass(pts, {"protein": vol * rng.uniform(0.55, 0.85) / 1.21 / 1000}, T.body())
    return T.finalize()


def build_gold(rng, mats):
    T = Template("gold", mats)
    r = rng.uniform(25, 50)
    pts = fill(rng, [Ell((0, 0, 0), (r, r, r))], 3.0)
    T.add_vol(pts, mats["gold"][0], 27.0, T.body(), dens=19.3)
    T.jitter = 0.2
    return T.finalize()


def build_contamination(rng, mats):
    T = Template("ice-contamination", mats)
    b = T.body()
    prims = []
    base = rng.uniform(120, 330)
    for i in range(int(rng.integers(1, 4))):
        ax = base * np.exp(rng.normal(0, 0.25, 3)) * (0.6 if i else 1.0)
        prims.append(SuperEll(rng.normal(0, base * 0.4, 3) * (i > 0), ax, random_rotation(rng), n=rng.uniform(2.5, 6)))
    pts = fill(rng, prims, 8.0)
    T.add_vol(pts, mats["icevac"][0], 512.0, b, dens=0.93)
    T.jitter = 1.0
    return T.finalize()


# ----------------------------------------------------------------------------
# run parameters
# ----------------------------------------------------------------------------
def smooth_field(rng, H, W, cell, amp):
    h, w = max(2, int(np.ceil(H / cell)) + 2), max(2, int(np.ceil(W / cell)) + 2)
    f = ndimage.gaussian_filter(rng.standard_normal((h, w)), 1.0)
    f = ndimage.zoom(f, (H / (h - 2), W / (w - 2)), order=1)
    f = f[:H, :W]
    f = f / (f.std() + 1e-9) * amp
    if f.shape != (H, W):
        f = np.pad(f, ((0, H - f.shape[0]), (0, W - f.shape[1])), mode="edge")
    return f


def draw_params(rng, shape):
    D, H, W = shape
    p = {}
    p["Vice"] = rng.uniform(4.3, 4.9)
    p["dVp"] = rng.uniform(1.9, 2.6)
    p["rna_ratio"] = rng.uniform(1.6, 1.9)
    p["Vgold"] = rng.uniform(24, 30)
    p["Vcarbon"] = rng.uniform(8, 10.5)
    # slab (voxel units)
    T = min(rng.uniform(700, 1700), rng.uniform(0.72, 0.93) * D * VOX) / VOX
    spare = max(D - T - 2, 0)
    zc = D / 2 + rng.uniform(-0.5, 0.5) * spare * 0.8
    bx, by = rng.normal(0, 0.04, 2)
    gx, gy = rng.normal(0, 0.01, 2)
    rough = rng.uniform(0.2, 1.5)
    lim = max(spare / 2 - abs(zc - D / 2) - rough * 2, 0)
    span = (abs(bx) + abs(gx)) * W / 2 + (abs(by) + abs(gy)) * H / 2 + 1e-9
    if span > lim:
        f = lim / span
        bx, by, gx, gy = bx * f, by * f, gx * f, gy * f
    p.update(T=T, zc=zc, bx=bx, by=by, bxh=bx + gx, byh=by + gy, rough=rough)
    p["r_lo"] = smooth_field(rng, H, W, rng.uniform(20, 60), rough * 0.5)
    p["r_hi"] = smooth_field(rng, H, W, rng.uniform(20, 60), rough * 0.5)
    p["p_awi"] = rng.uniform(0.0, 0.35)
    # optics / acquisition
    p["defocus"] = rng.uniform(1.8e4, 5.0e4)
    p["amp"] = rng.uniform(0.06, 0.10)
    tmax = rng.uniform(48, 64)
    tmin = -(tmax + rng.normal(0, 3))
    step = float(rng.choice([2.0, 3.0, 3.0, 3.0]))
    ang = np.arange(0, tmax + 1e-6, step)
    ang = np.concatenate([-np.arange(step, -tmin + 1e-6, step)[::-1], ang])
    n = len(ang)
    if rng.random() < 0.7:  # dose-symmetric (grouped)
        grp = int(rng.integers(1, 4))
        pos = [a for a in sorted(ang[ang > 0])]
        neg = [a for a in sorted(ang[ang < 0], reverse=True)]
        order = [0.0]
        side = rng.random() < 0.5
        while pos or neg:
            src = pos if (side and pos) or not neg else neg
            order += src[:grp]
            del src[:grp]
            side = not side
    else:  # bidirectional from a start angle
        start = float(rng.choice([0.0, -20.0, 20.0]))
        a_s = ang[np.argmin(np.abs(ang - start))]
        up = sorted(ang[ang >= a_s])
        dn = sorted(ang[ang < a_s], reverse=True)
        order = up + dn if rng.random() < 0.5 else dn + up
    order = np.array(order)
    dose_total = rng.uniform(70, 170)
    dose = np.full(n, dose_total / n)
    pre = np.zeros(n)
    rank = {a: i for i, a in enumerate(order)}
    acc = np.cumsum(dose) - dose
    for i, a in enumerate(ang):
        pre[i] = acc[rank[a]] + 0.5 * dose[i]
    p.update(angles=ang, dose=dose, predose=pre, dose_total=dose_total)
    p["efilter"] = rng.random() < 0.7
    p["mfp"] = rng.uniform(3200, 4200)
    p["dqe"] = rng.uniform(0.55, 0.85)
    p["df_tilt"] = p["defocus"] + rng.normal(0, 1000, n)
    p["df_est_err"] = rng.normal(0, 400, n) + rng.normal(0, 600)
    p["blur"] = rng.uniform(2.0, 5.5) * (1 + 0.5 * np.abs(ang) / 60) * np.exp(rng.normal(0, 0.2, n))
    al = rng.uniform(0.08, 0.6)
    p["shift"] = rng.normal(0, 1, (n, 2)) * al * (1 + np.abs(ang)[:, None] / 60)
    p["ctf_corr"] = str(rng.choice(["none", "flip", "flip", "flip"]))
    p["dose_weight"] = rng.random() < 0.5
    p["weighting"] = "ramp" if rng.random() < 0.6 else "exact"
    p["ramp_floor"] = rng.uniform(0.0, 0.015)
    p["kernel"] = rng.uniform(0.5, 0.8)
    p["binmtf"] = rng.random() < 0.6
    p["bfac_atom"] = rng.uniform(2.0, 4.0)
    p["wiener_a"] = float(np.exp(rng.uniform(np.log(0.4), np.log(3.0))))
    p["residual"] = rng.uniform(0.0, 0.04)
    p["out_std"] = float(np.exp(rng.uniform(np.log(2e-5), np.log(5e-4))))
    p["bg"] = rng.uniform(0, 0.3)
    p["lee_beta"] = rng.uniform(0.4, 1.6) if rng.random() < 0.85 else 0.0
    p["lee_sigma"] = rng.uniform(0.9, 1.6)
    return p


# ----------------------------------------------------------------------------
# specimen assembly
# ----------------------------------------------------------------------------
def _pack(q):
    q = q.astype(np.int64) + 1024
    return (q[:, 0] << 22) | (q[:, 1] << 11) | q[:, 2]


def _unpack(k):
    return np.stack([(k >> 22) & 2047, (k >> 11) & 2047, k & 2047], 1).astype(np.int64) - 1024


_NB27 = np.array(list(itertools.product((-1, 0, 1), repeat=3)), np.int64)


class Scene:
    def __init__(self, rng, shape, p):
        self.rng, self.shape, self.p = rng, shape, p
        D, H, W = shape
        self.E = np.zeros(shape, np.float32)
        self.occ = np.zeros(shape, bool)
        self.m = p["rough"] + 0.6

    def zlo(self, x, y):
        p, (D, H, W) = self.p, self.shape
        return p["zc"] - p["T"] / 2 + p["bx"] * (x - W / 2) + p["by"] * (y - H / 2)

    def zhi(self, x, y):
        p, (D, H, W) = self.p, self.shape
        return p["zc"] + p["T"] / 2 + p["bxh"] * (x - W / 2) + p["byh"] * (y - H / 2)

    def place(self, Pv, solid_r=0.0, mode="ice", tries=60):
        """Pv: points relative to centre, voxel units, columns (x, y, z)."""
        rng, p, (D, H, W) = self.rng, self.p, self.shape
        q = np.round(Pv[:, ::-1]).astype(np.int64)  # (z, y, x)
        if solid_r > 0:
            rr = int(np.ceil(solid_r))
            g = np.arange(-rr, rr + 1)
            bz, by_, bx_ = np.meshgrid(g, g, g, indexing="ij")
            ball = np.stack([bz.ravel(), by_.ravel(), bx_.ravel()], 1)
            ball = ball[(ball**2).sum(1) <= solid_r**2]
            q = np.concatenate([q, ball])
        k0 = np.unique(_pack(q))
        S0 = _unpack(k0)
        S1 = _unpack(np.unique(_pack((S0[:, None, :] + _NB27[None]).reshape(-1, 3))))
        s_lo = (Pv[:, 2] - p["bx"] * Pv[:, 0] - p["by"] * Pv[:, 1]).min()
        s_hi = (Pv[:, 2] - p["bxh"] * Pv[:, 0] - p["byh"] * Pv[:, 1]).max()
        for _ in range(tries):
            cx, cy = rng.uniform(1, W - 2), rng.uniform(1, H - 2)
            if mode == "vac":
                if rng.random() < 0.5:
                    cz = self.zhi(cx, cy) - s_lo - rng.uniform(0.0, 0.3) * (s_hi - s_lo)
                else:
                    cz = self.zlo(cx, cy) - s_hi + rng.uniform(0.0, 0.3) * (s_hi - s_lo)
            else:
                z0 = self.zlo(cx, cy) - s_lo + self.m
                z1 = self.zhi(cx, cy) - s_hi - self.m
                if z1 < z0:
                    continue
                if mode == "awi":
                    cz = z0 + rng.uniform(0, 0.8) if rng.random() < 0.5 else z1 - rng.uniform(0, 0.8)
                else:
                    cz = rng.uniform(z0, z1)
            ci = np.round([cz, cy, cx]).astype(np.int64)
            if mode != "vac":
                c1 = S1 + ci
                ok = ((c1 >= 0) & (c1 < np.array(self.shape))).all(1)
                c1 = c1[ok]
                if self.occ[c1[:, 0], c1[:, 1], c1[:, 2]].any():
                    continue
            c0 = S0 + ci
            ok = ((c0 >= 0) & (c0 < np.array(self.shape))).all(1)
            c0 = c0[ok]
            self.occ[c0[:, 0], c0[:, 1], c0[:, 2]] = True
            return np.array([cx, cy, cz])
        return None

    def splat(self, Pv, w):
        E = self.E
        D, H, W = E.shape
        f = np.floor(Pv).astype(np.int64)
        t = Pv - f
        lo = f.min(0)
        hi = f.max(0) + 2
        lo_c = np.maximum(lo, 0)
        hi_c = np.minimum(hi, np.array([W, H, D]))
        if np.any(hi_c <= lo_c):
            return
        sx, sy, sz = hi_c - lo_c
        clipped = bool(np.any(lo < lo_c) or np.any(hi > hi_c))
        fx, fy, fz = (f - lo_c).T
        tx, ty, tz = t.T
        acc = np.zeros(sx * sy * sz)
        for dz in (0, 1):
            wz = w * (tz if dz else 1 - tz)
            iz = fz + dz
            for dy in (0, 1):
                wzy = wz * (ty if dy else 1 - ty)
                iy = fy + dy
                for dx in (0, 1):
                    ww = wzy * (tx if dx else 1 - tx)
                    ix = fx + dx
                    lin = (iz * sy + iy) * sx + ix
                    if clipped:
                        ok = (ix >= 0) & (ix < sx) & (iy >= 0) & (iy < sy) & (iz >= 0) & (iz < sz)
                        acc += np.bincount(lin[ok], ww[ok], minlength=acc.size)
                    else:
                        acc += np.bincount(lin, ww, minlength=acc.size)
        E[lo_c[2] : hi_c[2], lo_c[1] : hi_c[1], lo_c[0] : hi_c[0]] += (acc.reshape(sz, sy, sx) / VOX**3).astype(
            np.float32
        )

    def add_object(self, T, mode="ice", vac_mask=False):
        P, w = instantiate(T, self.rng)
        Pv = P / VOX
        c = self.place(Pv, T.solid_r / VOX, mode=mode)
        if c is None:
            return None
        Pv = Pv + c
        if vac_mask:  # contamination: only the parts outside the ice count
            zl = self.zlo(Pv[:, 0], Pv[:, 1])
            zh = self.zhi(Pv[:, 0], Pv[:, 1])
            w = w * ((Pv[:, 2] < zl) | (Pv[:, 2] > zh))
        self.splat(Pv, w)
        return c

    def add_vesicle(self, R_A):
        rng, (D, H, W) = self.rng, self.shape
        R = R_A / VOX
        rb = int(np.ceil(R + 5))
        g = np.arange(-rb, rb + 1)
        for _ in range(30):
            cx, cy = rng.uniform(0, W - 1), rng.uniform(0, H - 1)
            z0 = self.zlo(cx, cy) + R + 4 + self.m
            z1 = self.zhi(cx, cy) - R - 4 - self.m
            if z1 < z0:
                return
            cz = rng.uniform(z0, z1)
            ci = np.round([cz, cy, cx]).astype(int)
            sl = tuple(slice(max(ci[i] - rb, 0), min(ci[i] + rb + 1, self.shape[i])) for i in range(3))
            zz = np.arange(sl[0].start, sl[0].stop)[:, None, None] - cz
            yy = np.arange(sl[1].start, sl[1].stop)[None, :, None] - cy
            xx = np.arange(sl[2].start, sl[2].stop)[None, None, :] - cx
            d = (np.sqrt(zz**2 + yy**2 + xx**2) - R) * VOX  # A
            shell = np.abs(d) < 45
            if self.occ[sl][shell].any():
                continue
            sh, st = 5.5, 9.5
            head = rng.uniform(2.6, 3.4)
            prof = head * (
                np.exp(-((d - 19) ** 2) / (2 * sh**2)) + np.exp(-((d + 19) ** 2) / (2 * sh**2))
            ) - rng.uniform(0.4, 0.9) * np.exp(-(d**2) / (2 * st**2))
            self.E[sl] += prof.astype(np.float32)
            self.occ[sl] |= np.abs(d) < 32
            return

    def surfaces(self):
        p, (D, H, W) = self.p, self.shape
        y = np.arange(H)[:, None]
        x = np.arange(W)[None, :]
        lo = self.zlo(x, y) + p["r_lo"]
        hi = self.zhi(x, y) + p["r_hi"]
        return lo, hi

    def layer_overlap(self, z, a, b):
        return np.clip(np.minimum(z + 0.5, b) - np.maximum(z - 0.5, a), 0, 1)

    def carbon(self, zmin_vox_thick):
        """Carbon support film beyond a hole edge, under the ice; marks occupancy."""
        rng, (D, H, W) = self.rng, self.shape
        Rh = rng.uniform(5000, 10000) / VOX
        ang = rng.uniform(0, 2 * np.pi)
        dist = Rh + rng.uniform(-0.35, 0.35) * min(H, W)
        hc = np.array([W / 2 + dist * np.cos(ang), H / 2 + dist * np.sin(ang)])
        y = np.arange(H)[:, None]
        x = np.arange(W)[None, :]
        rr = np.sqrt((x - hc[0]) ** 2 + (y - hc[1]) ** 2)
        mask = np.clip(rr - Rh + 0.5, 0, 1)
        self.cmask, self.ctk = mask.astype(np.float32), zmin_vox_thick
        lo, _ = self.surfaces()
        for z in range(D):
            ov = self.layer_overlap(z, lo, lo + zmin_vox_thick) * mask
            if ov.any():
                self.occ[z] |= ov > 0.3

    def render_background(self, awi):
        """Interface films and carbon (the uniform ice itself is not added: a laterally
        uniform layer only changes the mean of each tilt image, which normalisation removes)."""
        p, (D, H, W) = self.p, self.shape
        lo, hi = self.surfaces()
        layers = [((hi - tf, hi) if top else (lo, lo + tf), dv * cov) for (cov, tf, dv, top) in awi]
        if getattr(self, "cmask", None) is not None:
            layers.append(((lo, lo + self.ctk), (p["Vcarbon"] - p["Vice"]) * self.cmask))
        for (a, b), amp in layers:
            z0 = max(int(np.floor(a.min() - 1)), 0)
            z1 = min(int(np.ceil(b.max() + 1)), D - 1)
            for z in range(z0, z1 + 1):
                ov = self.layer_overlap(z, a, b)
                if ov.any():
                    self.E[z] += (amp * ov).astype(np.float32)


def _poisson_count(rng, mean):
    return int(rng.poisson(max(mean, 0.0)))


def build_scene(rng, shape, p):
    D, H, W = shape
    scale = D * H * W / float(np.prod(REF_SHAPE))
    dVp = p["dVp"]
    mats = {
        "protein": (dVp, 1.21),
        "rna": (dVp * p["rna_ratio"], 0.91),
        "glycan": (dVp * 0.9, 1.03),
        "gold": (p["Vgold"] - p["Vice"], None),
        "icevac": (p["Vice"], None),
    }
    S = Scene(rng, shape, p)
    # templates (the molecular models are fixed geometry; only their pseudo-atom sampling is random)
    T = {
        "apo-ferritin": build_ferritin(rng, mats),
        "beta-amylase": build_beta_amylase(rng, mats),
        "beta-galactosidase": build_beta_gal(rng, mats),
        "ribosome": build_ribosome(rng, mats),
        "thyroglobulin": build_thyroglobulin(rng, mats),
        "virus-like-particle": build_vlp(rng, mats),
    }
    counts = {}
    for name in CLASSES:
        lo, hi = COUNT_RANGES[name]
        m = rng.uniform(lo, hi) * scale
        counts[name] = int(np.floor(m) + (rng.random() < m - np.floor(m)))
    # large background features first
    if rng.random() < 0.12:
        S.carbon(rng.uniform(100, 250) / VOX)
    if rng.random() < 0.12:
        for _ in range(max(1, _poisson_count(rng, rng.uniform(1, 3) * scale**0.5))):
            S.add_vesicle(rng.uniform(250, min(900, 0.42 * p["T"] * VOX)))
    if rng.random() < 0.2:
        for _ in range(int(rng.integers(1, 3))):
            S.add_object(build_contamination(rng, mats), mode="vac", vac_mask=True)
    if rng.random() < 0.25:
        for _ in range(_poisson_count(rng, rng.uniform(2, 10) * scale)):
            S.add_object(build_gold(rng, mats), mode="ice" if rng.random() < 0.6 else "awi")
    # labelled particles, largest first, interleaved order within size groups
    picks = {n: [] for n in CLASSES}
    order = []
    for name in (
        "virus-like-particle",
        "ribosome",
        "thyroglobulin",
        "beta-galactosidase",
        "apo-ferritin",
        "beta-amylase",
    ):
        order += [name] * counts[name]
    for name in order:
        mode = "awi" if rng.random() < p["p_awi"] else "ice"
        c = S.add_object(T[name], mode=mode)
        if c is not None:
            picks[name].append(c)
    # unlabelled distractors
    for _ in range(_poisson_count(rng, rng.uniform(0, 4) * scale)):
        S.add_object(build_aggregate(rng, mats), mode="ice" if rng.random() < 0.6 else "awi")
    rib = T["ribosome"]
    if rng.random() < 0.6:
        lsu = rib.subset(np.isin(rib.B, rib.lsu_bodies), "60S")
        ssu = rib.subset(np.isin(rib.B, rib.ssu_bodies), "40S")
        for _ in range(_poisson_count(rng, rng.uniform(0, 5) * scale)):
            S.add_object(lsu if rng.random() < 0.5 else ssu)
    if rng.random() < 0.5:
        vlp = T["virus-like-particle"]
        for _ in range(_poisson_count(rng, rng.uniform(0, 2.5) * scale)):
            u = unit(rng.standard_normal(3))
            cut = rng.uniform(-60, 70)
            frag = vlp.subset((vlp.B == 0) & (vlp.P @ u < cut), "capsid-fragment")
            S.add_object(frag)
    nsp = int(rng.integers(3, 9))
    species = [build_generic(rng, mats, float(np.exp(rng.uniform(np.log(40), np.log(900))))) for _ in range(nsp)]
    ab = rng.dirichlet(np.ones(nsp))
    ntot = rng.uniform(20, 170) * scale
    for sp, a in zip(species, ab):
        for _ in range(_poisson_count(rng, ntot * a)):
            S.add_object(
                sp,
                mode="awi" if rng.random() < p["p_awi"] else "ice",
            )
    haze = [build_generic(rng, mats, float(rng.uniform(15, 70))) for _ in range(3)]
    for _ in range(_poisson_count(rng, rng.uniform(0, 350) * scale)):
        S.add_object(haze[int(rng.integers(0, 3))], mode="awi" if rng.random() < 0.3 else "ice")
    # air-water-interface films
    awi = []
    for top in (True, False):
        if rng.random() < 0.55:
            cov = smooth_field(rng, H, W, rng.uniform(6, 25), 1.0)
            thr = rng.uniform(-0.8, 0.8)
            cov = np.clip((cov - thr) / 0.6 + 0.5, 0, 1) * rng.uniform(0.4, 1.0)
            awi.append((cov, rng.uniform(15, 40) / VOX, dVp * rng.uniform(0.25, 0.6), top))
    S.render_background(awi)
    return S.E, picks


# ----------------------------------------------------------------------------
# image formation, reconstruction and denoising (Fourier-space model of WBP)
# ----------------------------------------------------------------------------
def critical_exposure(k):
    with np.errstate(divide="ignore"):
        return 0.245 * np.power(np.maximum(k, 1e-6), -1.665) + 2.81


def image_volume(rng, holder, p):
    V = holder.pop()
    D, H, W = V.shape
    V *= np.float32(SIGMA_INT * VOX)  # phase shift per voxel (rad)
    F = sfft.rfftn(V, workers=1)
    del V
    F[:, 0, 0] = 0  # laterally uniform structure -> DC of every tilt -> removed by normalisation
    Wr = W // 2 + 1
    kz = sfft.fftfreq(D)
    ky = sfft.fftfreq(H)
    kx = sfft.rfftfreq(W)
    KZ2, KX2 = kz[:, None], kx[None, :]
    rho2 = np.sqrt(KZ2**2 + KX2**2)
    ang = np.deg2rad(p["angles"])
    nt = len(ang)
    dth = np.gradient(ang) if nt > 1 else np.ones(1)
    sig_d = p["kernel"] / D
    # per-tilt 1-D transfer tables in |k|
    NR = 2048
    RMAX = 0.8661
    rg = np.linspace(0, RMAX, NR)
    kA = rg / VOX
    tilt_norm = np.cos(ang - np.arctan(p["bx"]))
    trans = np.exp(-p["T"] * VOX / (p["mfp"] * np.maximum(tilt_norm, 0.2)))
    Npix = float(H * W)
    A_tab = np.zeros((nt, NR))
    N_tab = np.zeros((nt, NR))
    ne = critical_exposure(kA)
    mtf = np.sinc(rg) if p["binmtf"] else np.ones(NR)
    atom = np.exp(-(p["bfac_atom"] ** 2) * 2 * np.pi**2 * kA**2)
    for i in range(nt):
        df = p["df_tilt"][i]
        chi = np.pi * LAMBDA * df * kA**2 - 0.5 * np.pi * CS * LAMBDA**3 * kA**4
        ctf = -(np.sqrt(1 - p["amp"] ** 2) * np.sin(chi) + p["amp"] * np.cos(chi))
        if p["ctf_corr"] == "flip":
            dfe = df + p["df_est_err"][i]
            chie = np.pi * LAMBDA * dfe * kA**2 - 0.5 * np.pi * CS * LAMBDA**3 * kA**4
            ctfe = -(np.sqrt(1 - p["amp"] ** 2) * np.sin(chie) + p["amp"] * np.cos(chie))
            ctf = ctf * -np.sign(ctfe + 1e-12)
        dmg = np.exp(-p["predose"][i] / (2 * ne))
        env = np.exp(-2 * np.pi**2 * p["blur"][i] ** 2 * kA**2)
        gain = 1.0 if p["efilter"] else trans[i]
        counts = p["dose"][i] * VOX**2 * (trans[i] if p["efilter"] else 1.0) * p["dqe"]
        A = 2 * ctf * dmg * env * mtf * atom * gain
        Nn = np.full(NR, Npix / counts)
        if p["dose_weight"]:
            A = A * dmg
            Nn = Nn * dmg**2
        A_tab[i], N_tab[i] = A, Nn
    A_tab = A_tab.astype(np.float32)
    N_tab = N_tab.astype(np.float32)
    # slice kernels on the (kz, kx) plane
    ds, Ks = [], []
    C2 = np.zeros((D, Wr))
    for i in range(nt):
        d = KX2 * np.sin(ang[i]) + KZ2 * np.cos(ang[i])
        K = np.exp(-0.5 * (d / sig_d) ** 2)
        K[np.abs(d) > 3 * sig_d] = 0
        C2 += K
        Ks.append(K)
    Wt = np.zeros((D, H, Wr), np.complex64)
    Nv = np.zeros((D, H, Wr), np.float32)
    ky2 = (ky**2)[None, :]
    for i in range(nt):
        zs, xs = np.nonzero(Ks[i])
        Kv = Ks[i][zs, xs]
        if p["weighting"] == "ramp":
            wv = np.maximum(rho2[zs, xs], p["ramp_floor"]) * abs(dth[i]) / (np.sqrt(2 * np.pi) * sig_d)
        else:
            wv = 1.0 / np.maximum(C2[zs, xs], 0.7)
        u = KX2[0, xs] * np.cos(ang[i]) - KZ2[zs, 0] * np.sin(ang[i])
        c2 = (wv * Kv * np.exp(-2j * np.pi * u * p["shift"][i, 0])).astype(np.complex64)
        phy = np.exp(-2j * np.pi * ky * p["shift"][i, 1]).astype(np.complex64)
        r3 = np.sqrt(rho2[zs, xs][:, None] ** 2 + ky2)
        idx = np.minimum((r3 * ((NR - 1) / RMAX)).astype(np.int32), NR - 1)
        Wt[zs, :, xs] += c2[:, None] * A_tab[i][idx] * phy[None, :]
        Nv[zs, :, xs] += ((wv * Kv) ** 2).astype(np.float32)[:, None] * N_tab[i][idx]
    del Ks
    # Wiener-type denoiser statistics on (|k|, angle-to-beam) bins
    NBR, NBA = 64, 10
    psi = np.arctan2(np.abs(KZ2), KX2 + 1e-12)  # 0 = perpendicular to beam
    ia = np.minimum((psi / (np.pi / 2) * NBA).astype(np.int16), NBA - 1)
    bins = np.empty((D, H, Wr), np.int16)
    Ssum = np.zeros(NBR * NBA)
    Nsum = np.zeros(NBR * NBA)
    Cnt = np.zeros(NBR * NBA)
    ch = max(1, int(4e6 // (H * Wr)))
    for z0 in range(0, D, ch):
        z1 = min(D, z0 + ch)
        r3 = np.sqrt(rho2[z0:z1, None, :] ** 2 + ky2[:, :, None])
        ir = np.minimum((r3 * (NBR / RMAX)).astype(np.int16), NBR - 1)
        b = ir * NBA + ia[z0:z1, None, :]
        bins[z0:z1] = b
        sig = Wt[z0:z1] * F[z0:z1]
        bf = b.ravel()
        Ssum += np.bincount(bf, (sig.real**2 + sig.imag**2).ravel(), minlength=NBR * NBA)
        Nsum += np.bincount(bf, Nv[z0:z1].ravel(), minlength=NBR * NBA)
        Cnt += np.bincount(bf, minlength=NBR * NBA)
        g = rng.standard_normal((z1 - z0, H, 2 * Wr), dtype=np.float32).view(np.complex64)
        F[z0:z1] = sig + np.sqrt(0.5 * Nv[z0:z1]) * g
    del Wt, Nv
    Sm = Ssum / np.maximum(Cnt, 1)
    Nm = Nsum / np.maximum(Cnt, 1)
    Hb = Sm / np.maximum(Sm + p["wiener_a"] * Nm, 1e-30)
    Hb = Hb.reshape(NBR, NBA)
    Hb = ndimage.uniform_filter1d(Hb, 3, axis=0, mode="nearest")
    Hb = Hb + p["residual"] * (1 - Hb) * (Nm.reshape(NBR, NBA) > 0)
    Hb[0, :] = Hb[1, :]
    Hb = Hb.ravel().astype(np.float32)
    for z0 in range(0, D, ch):
        z1 = min(D, z0 + ch)
        F[z0:z1] *= Hb[bins[z0:z1]]
    del bins
    out = sfft.irfftn(F, s=(D, H, W), workers=1).astype(np.float32, copy=False)
    del F
    # residual noise variance in real space (Parseval, half spectrum counted twice)
    nu2 = 2.0 * float((Hb.astype(np.float64) ** 2 * Nsum).sum()) / float(D * H * W) ** 2
    # content-adaptive stage (a learned denoiser smooths empty ice harder than structure):
    # local linear minimum-mean-square-error (Lee) filter with Gaussian windows
    if p["lee_beta"] > 0:
        sg = p["lee_sigma"]
        m = ndimage.gaussian_filter(out, sg, mode="wrap", truncate=2.5)
        v = ndimage.gaussian_filter(out * out, sg, mode="wrap", truncate=2.5)
        v -= m * m
        np.maximum(v, 1e-30, out=v)
        g = np.clip(1.0 - np.float32(p["lee_beta"] * nu2) / v, 0.0, 1.0)
        out -= m
        out *= g
        out += m
        del m, v, g
    return out


def finish_volume(rng, vol, p):
    D, H, W = vol.shape
    sd = float(vol[::3, ::4, ::4].std()) + 1e-30
    vol *= np.float32(p["out_std"] / sd)
    a = rng.normal(0, 1, 6) * p["bg"] * p["out_std"]
    z = np.linspace(-1, 1, D, dtype=np.float32)[:, None, None]
    y = np.linspace(-1, 1, H, dtype=np.float32)[None, :, None]
    x = np.linspace(-1, 1, W, dtype=np.float32)[None, None, :]
    vol += np.float32(a[0]) * z + np.float32(a[1]) * y
    vol += np.float32(a[2]) * x + np.float32(a[3]) * (x * x - 0.33)
    vol += np.float32(a[4]) * (y * y - 0.33) + np.float32(a[5] + rng.normal(0, 1) * p["out_std"])
    return vol


def simulate(rng, shape):
    p = draw_params(rng, shape)
    V, picks = build_scene(rng, shape, p)
    holder = [V]
    del V
    vol = image_volume(rng, holder, p)
    vol = finish_volume(rng, vol, p)
    return vol, picks, p


# ----------------------------------------------------------------------------
# output
# ----------------------------------------------------------------------------
def _pool2(a):
    D, H, W = (s // 2 for s in a.shape)
    b = a[: 2 * D, : 2 * H, : 2 * W].reshape(D, 2, H, 2, W, 2)
    return b.mean(axis=(1, 3, 5), dtype=np.float32)


def write_zarr(path, vol):
    levels = [vol]
    levels.append(_pool2(levels[-1]))
    levels.append(_pool2(levels[-1]))
    g = zarr.open_group(path, mode="w", zarr_format=2)
    for i, a in enumerate(levels):
        ch = tuple(min(s, 128) for s in a.shape)
        arr = g.create_array(str(i), shape=a.shape, dtype="float32", chunks=ch)
        arr[...] = a
    axes = [{"name": n, "type": "space", "unit": "angstrom"} for n in ("z", "y", "x")]
    g.attrs["multiscales"] = [
        {
            "version": "0.4",
            "name": "denoised",
            "axes": axes,
            "datasets": [
                {"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": [VOX * 2**i] * 3}]}
                for i in range(3)
            ],
        }
    ]


def picks_json(name, run, pts):
    ident = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    return {
        "pickable_object_name": name,
        "user_id": "curation",
        "session_id": "0",
        "run_name": run,
        "voxel_spacing": None,
        "unit": "angstrom",
        "points": [
            {
                "location": {"x": float(c[0] * VOX), "y": float(c[1] * VOX), "z": float(c[2] * VOX)},
                "transformation_": ident,
                "instance_id": i,
            }
            for i, c in enumerate(pts)
        ],
    }


def run_complete(static_dir, overlay_dir):
    try:
        z = os.path.join(static_dir, "VoxelSpacing10.000", "denoised.zarr")
        with open(os.path.join(z, ".zattrs")) as f:
            at = json.load(f)
        if not at.get("multiscales"):
            return False
        if not os.path.isfile(os.path.join(z, ".zgroup")):
            return False
        for i in range(3):
            if not os.path.isfile(os.path.join(z, str(i), ".zarray")):
                return False
        for n in CLASSES:
            with open(os.path.join(overlay_dir, "Picks", n + ".json")) as f:
                d = json.load(f)
            if d.get("pickable_object_name") != n or "points" not in d:
                return False
        return True
    except (OSError, ValueError):
        return False


def generate_run(root, seed, k, shape):
    run = "TS_G_%d" % k
    sdir = os.path.join(root, "train", "static", "ExperimentRuns", run)
    odir = os.path.join(root, "train", "overlay", "ExperimentRuns", run)
    if run_complete(sdir, odir):
        return False
    rng = np.random.default_rng([seed, k])
    vol, picks, _ = simulate(rng, tuple(shape))
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp_%s_" % run, dir=root)
    try:
        ts, to = os.path.join(tmp, "static"), os.path.join(tmp, "overlay")
        write_zarr(os.path.join(ts, "VoxelSpacing10.000", "denoised.zarr"), vol)
        del vol
        os.makedirs(os.path.join(to, "Picks"))
        for n in CLASSES:
            with open(os.path.join(to, "Picks", n + ".json"), "w") as f:
                json.dump(picks_json(n, run, picks[n]), f, indent=1)
        for d, src in ((odir, to), (sdir, ts)):  # static (the completeness anchor) last
            os.makedirs(os.path.dirname(d), exist_ok=True)
            if os.path.exists(d):
                shutil.rmtree(d)
            os.rename(src, d)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--shape", type=int, nargs=3, default=list(REF_SHAPE), metavar=("D", "H", "W"))
    a = ap.parse_args(argv)
    for k in range(a.first, a.first + a.runs):
        generate_run(a.out, a.seed, k, a.shape)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
