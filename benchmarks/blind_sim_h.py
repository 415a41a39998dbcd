#!/usr/bin/env python
# ruff: noqa
# A fifth simulator written blind (source H), for evaluation. A helper wrote this file on 2026-12-07 (session 53)
# without reading cryopoint's code, its documents or notes, sources D, E, F and G, or the reference documents: from a
# brief holding the CZII data contract, the six class names with their radii and real per-tomogram counts, speed
# limits, and an imaging brief that asked for a real-space tilt series (projection, per-tilt CTF, dose, shot noise)
# and the helper's own real-space reconstruction and denoiser; it described no particle's look (each class is the
# helper's own conception of the real complex). It is kept as its author wrote it (formatting only). No cryopoint
# recipe trains on it; docs/preregistrations.md (session 53) says how it was first used.
#   python benchmarks/blind_sim_h.py --out ROOT --runs 48 --seed 2 --first 1 --shape 96 256 256
"""
blind_sim_h.py -- "source H": an independent simulator of denoised cryo-ET tomograms
====================================================================================

WRITTEN BLIND.  This file was written from scratch, from general knowledge of the
molecules and of cryo-electron tomography only.  No other simulator, no project code
and no reference tomogram was read while writing it.  Its purpose is to produce test
data for particle pickers that their authors did not generate.

Particle conceptions (all built from geometric primitives filled with a jittered
lattice of "beads"; each bead carries the excess Coulomb potential of its material
over vitreous ice times its volume; mass density 0.81 Da/A^3 protein, 1.09 RNA):
  * apo-ferritin      24-mer with octahedral (432) symmetry; hollow shell, outer
                      radius ~59 A, inner cavity radius ~40 A (~480 kDa); subunit cells
                      from the 24-point octahedral orbit, shallow grooves between
                      subunits, channels on the 3-fold and 4-fold axes.  A few percent
                      carry a residual ferrihydrite core (commercial apo preparations).
  * beta-amylase      sweet-potato type homotetramer (4 x ~50-56 kDa), D2 (222) symmetry;
                      each subunit a (beta/alpha)8-barrel ellipsoid with active-site
                      pocket, a C-terminal lobe and a loop flap.
  * beta-galactosidase E. coli LacZ, 4 x 116 kDa, D2 symmetry, ~175x135x90 A with a
                      central channel; each subunit = 5 domains (jelly roll, 2 Ig-like,
                      TIM barrel, beta-sandwich).
  * ribosome          80S-like architecture scaled into the 150 A radius (~2.8 MDa):
                      large subunit (rRNA body studded with ~45 r-protein lobes, central
                      protuberance, L1 stalk, P stalk, exit tunnel, expansion segments),
                      small subunit (rRNA body, platform, shoulder, head, beak, protein
                      lobes),
                      inter-subunit bridges and A/P/E tRNAs in the inter-subunit cleft.
                      Per copy: ratchet / head swivel, L1-stalk motion, partially
                      occupied P stalk, tRNAs and expansion segments.
  * thyroglobulin     660 kDa homodimer (C2): central ChEL (cholinesterase-like) dimer,
                      each monomer an arm of ~16 repeat domains wound as a flattened
                      spiral, the two monomers stacked by the 2-fold; N-glycans;
                      hinge flexibility of the distal arm.
  * virus-like-particle T=3 icosahedral capsid (MS2/PP7-like, 180 x 14 kDa), radius
                      ~110-133 A, protruding subunits, pores on 5- and 3-fold axes,
                      variable amount of packaged host RNA inside, occasional missing
                      subunits.
  Every copy: uniform random orientation, small rigid-body subunit jitter, smooth
  elastic deformation, partial occupancy as above.  Pick = mass-weighted centre.
Clutter: generic oligomers (cyclic/dihedral/chain/barrel/globular, 60 kDa-2.5 MDa),
small "soup" proteins, amorphous aggregates, broken capsids, ferritin half shells,
free ribosomal subunits, liposomes (bilayer profile, some multilamellar), rare
filaments, rare gold beads, crystalline-ice contamination on the slab surfaces,
denatured-protein films at the air-water interfaces, a tilted / undulating ice slab.
No two objects overlap (bounding spheres).

Imaging chain (every parameter drawn per run):
  specimen potential on the 10.012 A grid (laterally padded)  ->  for every tilt of a
  dose-symmetric or bidirectional scheme (+-50..65 deg, 2-3 deg steps, small angle
  errors): REAL-SPACE projection about the y axis by shear-and-sum of z planes
  (linear splatting) plus 1/cos stretch with anti-alias filter  ->  phase with the
  300 kV interaction constant, radiation damage of the projected potential
  (Grant-Grigorieff critical exposure at the accumulated dose)  ->  exit wave
  exp((i - w) phi) (w = amplitude-contrast ratio), wave aberration with defocus
  2.5-5.5 um, astigmatism, Cs, coherence envelopes, defocus gradient across the
  tilted field (strips)  ->  |psi|^2, energy-filter loss through the tilted slab,
  motion/drift B-factor, detector binning MTF  ->  Poisson counts (60-180 e/A^2 total,
  DQE), drawn as independent even/odd frame halves  ->  residual smooth local warp
  (non-rigid misalignment), per-tilt normalisation, residual rigid shifts, optional
  phase flipping or Wiener-like CTF deconvolution and dose weighting, ramp filter or a
  SIRT-like weighting with a radial Hamming roll-off  ->  REAL-SPACE weighted
  back-projection (shear of the stretched filtered projection, z plane by z plane),
  reconstruction with the nominal (not the true) tilt angles.  Missing wedge, streaks,
  halos and interpolation blur come out of this reconstruction.
"Denoising" mimics Noise2Noise / cryo-CARE: the even/odd half reconstructions give a
Fourier shell correlation binned in |k| and in the angle to the missing-wedge plane;
the full tomogram is Wiener filtered with SSNR = 2 FSC/(1-FSC) (aggressiveness drawn
per run), then a local adaptive Wiener step.  Output: zero mean, unit variance;
protein darker than ice.

Usage: python blind_sim_h.py --out ROOT --runs N --seed S --first K --shape D H W
Imports: numpy, scipy, zarr and the standard library only.
"""

import argparse
import itertools
import json
import math
import os
import shutil
import sys
import time

import numpy as np
from scipy import fft as sfft
from scipy import ndimage
import zarr

VOX = 10.012444
CLASSES = ("apo-ferritin", "beta-amylase", "beta-galactosidase", "ribosome", "thyroglobulin", "virus-like-particle")
RADIUS = {
    "apo-ferritin": 60.0,
    "beta-amylase": 65.0,
    "beta-galactosidase": 90.0,
    "ribosome": 150.0,
    "thyroglobulin": 130.0,
    "virus-like-particle": 135.0,
}
COUNTS = {
    "apo-ferritin": (35, 95),
    "beta-amylase": (9, 21),
    "beta-galactosidase": (11, 24),
    "ribosome": (23, 74),
    "thyroglobulin": (28, 49),
    "virus-like-particle": (9, 29),
}
REF_SHAPE = (184, 630, 630)

# materials
M_PROT, M_RNA, M_FE, M_GLY, M_GOLD, M_PRNA = 1, 2, 3, 4, 5, 6
RHO = np.array([0.0, 0.81, 1.09, 2.3, 0.95, 11.6, 0.7], np.float64)  # Da / A^3

# electron optics, 300 kV
KV = 300e3
LAMBDA = 12.2643 / math.sqrt(KV * (1 + 0.97845e-6 * KV))  # A
SIGMA = (2 * math.pi / (LAMBDA * KV)) * (511e3 + KV) / (2 * 511e3 + KV)  # rad / (V A)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ============================================================================ geometry
def unit(v):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


def axis_angle(axis, ang):
    x, y, z = unit(axis)
    K = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + math.sin(ang) * K + (1 - math.cos(ang)) * (K @ K)


def random_unit(rng):
    return unit(rng.normal(size=3))


def random_rotation(rng):
    q = rng.normal(size=4)
    a, b, c, d = q / np.linalg.norm(q)
    return np.array(
        [
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
        ]
    )


def group_closure(gens):
    def key(m):
        return tuple(np.round(m * 1000).astype(int).ravel())

    mats, seen, frontier = [np.eye(3)], {key(np.eye(3))}, [np.eye(3)]
    while frontier:
        nxt = []
        for m in frontier:
            for g in gens:
                p = g @ m
                kk = key(p)
                if kk not in seen:
                    seen.add(kk)
                    mats.append(p)
                    nxt.append(p)
        frontier = nxt
    return np.array(mats)


def octahedral_group():
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = np.zeros((3, 3))
            for i, (j, s) in enumerate(zip(perm, signs)):
                m[i, j] = s
            if np.linalg.det(m) > 0:
                out.append(m)
    return np.array(out)


PHI = (1 + 5**0.5) / 2


def icosahedral_group():
    v5 = unit([0, 1, PHI])
    f3 = unit([PHI, 0, 2 * PHI + 1])
    return group_closure([axis_angle(v5, 2 * math.pi / 5), axis_angle(f3, 2 * math.pi / 3)])


def unique_dirs(v, tol=1e-3):
    out = []
    for x in v:
        if all(np.linalg.norm(x - y) > tol for y in out):
            out.append(x)
    return np.array(out)


D2_OPS = [np.eye(3), np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0]), np.diag([-1.0, -1.0, 1.0])]


# ============================================================================ shapes
class Shape:
    """Union of primitives evaluated on a lattice.  mode 0: fill empty, 1: overwrite, 2: carve."""

    def __init__(self):
        self.parts = []

    def ell(self, c, semi, R=None, mat=M_PROT, dom=0, mode=0):
        self.parts.append(
            [
                "e",
                np.asarray(c, float),
                np.asarray(semi, float),
                np.eye(3) if R is None else np.asarray(R, float),
                mat,
                dom,
                mode,
            ]
        )

    def cap(self, a, b, r, mat=M_PROT, dom=0, mode=0):
        self.parts.append(["c", np.asarray(a, float), np.asarray(b, float), float(r), mat, dom, mode])

    def scaled(self, f):
        s = Shape()
        for p in self.parts:
            q = list(p)
            if p[0] == "e":
                q[1], q[2] = p[1] * f, p[2] * f
            else:
                q[1], q[2], q[3] = p[1] * f, p[2] * f, p[3] * f
            s.parts.append(q)
        return s

    @staticmethod
    def _bbox(p):
        if p[0] == "e":
            h = float(np.max(p[2]))
            return p[1] - h, p[1] + h
        return np.minimum(p[1], p[2]) - p[3], np.maximum(p[1], p[2]) + p[3]

    def render(self, s):
        bb = [self._bbox(p) for p in self.parts if p[6] != 2]
        lo = np.min([b[0] for b in bb], 0) - s
        hi = np.max([b[1] for b in bb], 0) + s
        n_lo = np.floor(lo / s).astype(int)
        n_hi = np.ceil(hi / s).astype(int)
        axes = [np.arange(n_lo[i], n_hi[i] + 1) * s for i in range(3)]
        shp = tuple(len(a) for a in axes)
        mat = np.zeros(shp, np.int8)
        dom = np.zeros(shp, np.int16)
        for p in self.parts:
            plo, phi_ = self._bbox(p)
            sl = []
            for i in range(3):
                i0 = max(0, int(np.floor((plo[i] - axes[i][0]) / s)))
                i1 = min(shp[i], int(np.ceil((phi_[i] - axes[i][0]) / s)) + 1)
                if i1 <= i0:
                    break
                sl.append(slice(i0, i1))
            if len(sl) < 3:
                continue
            X = axes[0][sl[0]][:, None, None]
            Y = axes[1][sl[1]][None, :, None]
            Z = axes[2][sl[2]][None, None, :]
            if p[0] == "e":
                c, semi, R = p[1], p[2], p[3]
                dx, dy, dz = X - c[0], Y - c[1], Z - c[2]
                q = 0.0
                for j in range(3):
                    q = q + ((dx * R[0, j] + dy * R[1, j] + dz * R[2, j]) / semi[j]) ** 2
                inside = q <= 1.0
            else:
                a, b, r = p[1], p[2], p[3]
                ab = b - a
                L2 = max(float(ab @ ab), 1e-9)
                dx, dy, dz = X - a[0], Y - a[1], Z - a[2]
                t = np.clip((dx * ab[0] + dy * ab[1] + dz * ab[2]) / L2, 0, 1)
                inside = (dx - t * ab[0]) ** 2 + (dy - t * ab[1]) ** 2 + (dz - t * ab[2]) ** 2 <= r * r
            inside = np.broadcast_to(
                inside, (sl[0].stop - sl[0].start, sl[1].stop - sl[1].start, sl[2].stop - sl[2].start)
            )
            mv = mat[sl[0], sl[1], sl[2]]
            dv = dom[sl[0], sl[1], sl[2]]
            if p[6] == 2:
                mv[inside] = 0
            else:
                sel = inside & (mv == 0) if p[6] == 0 else inside
                mv[sel] = p[4]
                dv[sel] = p[5]
        ii = np.nonzero(mat)
        pts = np.stack([axes[0][ii[0]], axes[1][ii[1]], axes[2][ii[2]]], 1)
        return pts, mat[ii], dom[ii]


class Template:
    def __init__(
        self, pts, mat, dom, s, flex=(), sub_jitter=0.0, p_missing=0.0, missing_doms=None, extra=None, name=""
    ):
        mass = RHO[mat] * s**3
        com = (pts * mass[:, None]).sum(0) / mass.sum()
        self.name = name
        self.com = com
        self.pts = (pts - com).astype(np.float32)
        self.mat = np.asarray(mat, np.int8)
        self.dom = np.asarray(dom, np.int16)
        self.s = float(s)
        self.mass_kda = float(mass.sum()) / 1e3
        self.rmax = float(np.sqrt((self.pts.astype(np.float64) ** 2).sum(1)).max() + 0.5 * s)
        self.flex = []
        for f in flex:
            f = dict(f)
            f["pivot"] = np.asarray(f.get("pivot", (0, 0, 0)), float) - com
            self.flex.append(f)
        self.sub_jitter = sub_jitter
        self.p_missing = p_missing
        self.missing_doms = missing_doms
        self.extra = extra
        order = np.argsort(self.dom, kind="stable")
        ud, st = np.unique(self.dom[order], return_index=True)
        en = list(st[1:]) + [len(order)]
        self.dom_index = {int(d): order[a:b] for d, a, b in zip(ud, st, en)}
        self.ndom = int(self.dom.max()) + 1 if len(self.dom) else 1

    def subset(self, mask, name):
        t = Template(self.pts[mask].astype(np.float64), self.mat[mask], self.dom[mask], self.s, name=name)
        t.sub_jitter = self.sub_jitter
        return t


def fit_shape(builder, s, rtarget, **kw):
    """Render a Shape and rescale it once so that it fits inside rtarget around its COM."""
    sh, flex = builder()
    pts, mat, dom = sh.render(s)
    t = Template(pts, mat, dom, s, flex=flex, **kw)
    if t.rmax > rtarget:
        f = rtarget / t.rmax * 0.995
        sh = sh.scaled(f)
        flex = [dict(fl, pivot=np.asarray(fl.get("pivot", (0, 0, 0)), float) * f) for fl in flex]
        pts, mat, dom = sh.render(s)
        t = Template(pts, mat, dom, s, flex=flex, **kw)
    return t


def lattice_ball(s, r):
    g = np.arange(-math.ceil(r / s), math.ceil(r / s) + 1) * s
    P = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    return P[(P**2).sum(1) <= r * r]


# ============================================================================ the six complexes
def top2_angles(dots):
    n = np.arange(len(dots))
    o1 = np.argmax(dots, 1)
    d1 = dots[n, o1].copy()
    dots[n, o1] = -2
    d2 = dots.max(1)
    return o1, np.arccos(np.clip(d1, -1, 1)), np.arccos(np.clip(d2, -1, 1))


def build_ferritin(s=4.0):
    O = octahedral_group()
    cents = unique_dirs(np.array([g @ unit([0.36, 0.13, 0.92]) for g in O]))
    P = lattice_ball(s, 63.0)
    r = np.sqrt((P**2).sum(1))
    P = P[(r > 36) & (r < 63)]
    r = np.sqrt((P**2).sum(1))
    u = P / r[:, None]
    dots = u @ cents.T
    o1, a1, a2 = top2_angles(dots)
    bump = np.exp(-0.5 * (a1 / np.deg2rad(15)) ** 2)
    keep = (r <= 57.5 + 2.5 * bump) & (r >= 40.5 - 1.5 * bump)
    keep &= ~(((a2 - a1) * r < 2.2) & (r > 52))  # inter-subunit grooves
    ax3 = unique_dirs(np.array([unit(v) for v in itertools.product((1, -1), repeat=3)]))
    ax4 = np.vstack([np.eye(3), -np.eye(3)])
    for axes, rad in ((ax3, 5.0), (ax4, 4.0)):  # channels
        for a in axes:
            along = P @ a
            lat = np.sqrt(np.maximum(r**2 - along**2, 0))
            keep &= ~((along > 0) & (lat < rad))
    pts, dom = P[keep], o1[keep]
    mat = np.full(len(pts), M_PROT, np.int8)
    pool = lattice_ball(s, 37.0)

    def core(rng):
        if rng.random() < 0.04:
            rc = rng.uniform(12, 33)
            off = random_unit(rng) * rng.uniform(0, max(0.0, 36 - rc)) * 0.6
            sel = ((pool - off) ** 2).sum(1) < rc * rc
            p = pool[sel].astype(np.float32) + rng.uniform(-s / 2, s / 2, (int(sel.sum()), 3)).astype(np.float32)
            return p, np.full(len(p), M_FE, np.int8)
        return None

    t = Template(pts, mat, dom, s, sub_jitter=0.7, p_missing=0.012, extra=core, name="apo-ferritin")
    return t


def shape_amylase():
    rng = np.random.default_rng(1101)
    sh = Shape()
    R0 = random_rotation(rng)
    R1 = random_rotation(rng)
    R2 = random_rotation(rng)
    flex = []
    for i, G in enumerate(D2_OPS):
        c = G @ np.array([21.0, 16.0, 9.0])
        sh.ell(c, (28, 25, 22), G @ R0, dom=i)  # (beta/alpha)8 barrel
        sh.ell(G @ np.array([40.0, 33.0, 3.0]), (14, 12, 11), G @ R1, dom=i)  # C-terminal lobe
        sh.ell(G @ np.array([14.0, 33.0, 24.0]), (10, 9, 8), G @ R2, dom=i)  # loop flap
        sh.ell(c + G @ (R0 @ np.array([0, 0, 19.0])), (7, 7, 9), G @ R0, dom=i, mode=2)  # active-site pocket
        flex.append(dict(doms=(i,), pivot=c, ang=("n", 1.8)))
    return sh, flex


def shape_bgal():
    rng = np.random.default_rng(2202)
    sh = Shape()
    doms = [  # centre, semi-axes        (subunit 0; the rest by D2)
        ((15.0, 50.0, 9.0), (24, 18, 20)),  # D1 jelly roll
        ((43.0, 2.0, 26.0), (20, 16, 16)),  # D2 Ig-like
        ((22.0, 19.0, 12.0), (28, 24, 21)),  # D3 TIM barrel
        ((60.0, 17.0, 9.0), (20, 16, 16)),  # D4 Ig-like
        ((53.0, 38.0, -7.0), (29, 22, 20)),  # D5 beta sandwich
    ]
    Rs = [random_rotation(rng) for _ in doms]
    flex = []
    for i, G in enumerate(D2_OPS):
        for j, (c, semi) in enumerate(doms):
            sh.ell(G @ np.array(c), semi, G @ Rs[j], dom=10 * i + j)
        flex.append(
            dict(doms=tuple(10 * i + j for j in range(5)), pivot=G @ np.array([34.0, 24.0, 10.0]), ang=("n", 1.5))
        )
        flex.append(dict(doms=(10 * i + 4,), pivot=G @ np.array([42.0, 30.0, 2.0]), ang=("n", 3.5)))
    return sh, flex


def shape_ribosome():
    rng = np.random.default_rng(3303)
    sh = Shape()
    # ---- large subunit (dom 0): rRNA body studded with ~45 r-protein lobes, central protuberance
    sh.ell((0, 0, 50), (76, 88, 60), mat=M_RNA, dom=0)
    sh.ell((88, 0, 32), (24, 28, 22), mat=M_RNA, dom=0)
    for _ in range(45):
        u = random_unit(rng)
        c = np.array([0, 0, 50]) + np.array([76, 88, 60]) * u * rng.uniform(0.85, 1.02)
        if c[2] < 10:
            c[2] = 10 + rng.uniform(0, 20)
        sh.ell(c, rng.uniform(13, 22, 3), random_rotation(rng), dom=0, mode=1)
    sh.ell((90, 0, 32), (31, 35, 29), dom=0)
    sh.ell((0, 0, -60), (420, 420, 62), dom=0, mode=2)  # flat interface z < 2
    # expansion segments (dom 10..15), RNA helices on the solvent side
    flex = []
    for i in range(6):
        u = random_unit(rng)
        u[2] = abs(u[2]) * 0.8 + 0.2
        u = unit(u)
        base = np.array([0, 0, 50]) + np.array([88, 100, 72]) * u * 0.92
        tip = base + unit(u + 0.4 * random_unit(rng)) * rng.uniform(18, 32)
        sh.cap(base, tip, rng.uniform(8.5, 11), mat=M_RNA, dom=10 + i)
        flex.append(dict(doms=(10 + i,), pivot=base, ang=("n", 14.0), p=0.75))
    # L1 stalk (dom 3) and P stalk (dom 4)
    sh.cap((46, -88, 40), (64, -118, 32), 9, mat=M_RNA, dom=3)
    sh.cap((46, -88, 40), (64, -118, 32), 15, dom=3)
    sh.cap((36, 88, 38), (52, 116, 30), 10, dom=4)
    sh.cap((52, 116, 30), (56, 130, 16), 7, dom=4)
    flex.append(dict(doms=(3,), pivot=(46, -90, 40), axis=(0, 0, 1), ang=("u", -20.0, 15.0)))
    flex.append(dict(doms=(4,), pivot=(36, 90, 38), ang=("n", 12.0), p=0.6))
    # inter-subunit bridges (part of the LSU)
    for bx, by in ((-40, -30), (-30, 40), (10, -55), (10, 55), (-70, 0), (50, -20)):
        sh.cap((bx, by, -18), (bx, by, 8), 9, dom=0)
    # ---- small subunit: body (dom 1) and head (dom 2): rRNA cores with r-protein lobes
    sh.ell((-30, 5, -46), (58, 60, 36), mat=M_RNA, dom=1)
    sh.ell((-5, -62, -38), (26, 22, 18), mat=M_RNA, dom=1)  # platform
    sh.ell((-5, 64, -42), (22, 20, 18), mat=M_RNA, dom=1)  # shoulder
    sh.ell((-88, -10, -52), (18, 22, 18), mat=M_RNA, dom=1)  # feet
    sh.cap((22, 0, -50), (44, 0, -54), 17, mat=M_RNA, dom=1)  # neck
    sh.ell((60, 0, -56), (36, 42, 30), mat=M_RNA, dom=2)  # head
    for _ in range(22):
        u = random_unit(rng)
        u[2] = -abs(u[2])
        c = np.array([-30, 5, -46]) + np.array([60, 62, 38]) * u
        sh.ell(c, rng.uniform(11, 18, 3), random_rotation(rng), dom=1)
    for _ in range(9):
        u = random_unit(rng)
        c = np.array([60, 0, -56]) + np.array([38, 44, 32]) * u
        sh.ell(c, rng.uniform(10, 16, 3), random_rotation(rng), dom=2)
    sh.cap((76, 30, -62), (86, 46, -68), 11, dom=2)  # beak
    flex.insert(0, dict(doms=(1, 2), pivot=(0, 0, -10), axis=(0, 0, 1), ang=("u", -3.0, 10.0)))
    flex.insert(1, dict(doms=(2,), pivot=(30, 0, -52), axis=(1, 0, 0.3), ang=("n", 5.0)))
    # polypeptide exit tunnel and tRNA cleft
    sh.cap((0, 0, 8), (-22, 14, 128), 7.5, mode=2)
    sh.ell((28, 0, -4), (30, 44, 13), mode=2)
    for j, (y0, p) in enumerate(((-24, 0.35), (0, 0.6), (24, 0.4))):  # E, P, A sites
        sh.cap((28, y0, -20), (28, y0, 12), 9, mat=M_RNA, dom=5 + j, mode=1)
        sh.cap((28, y0, 12), (52, y0, 18), 9, mat=M_RNA, dom=5 + j, mode=1)
        flex.append(dict(doms=(5 + j,), pivot=(28, y0, -4), ang=("n", 4.0), p=p))
    return sh, flex


def shape_thyroglobulin():
    rng = np.random.default_rng(4404)
    sh = Shape()
    n = 16
    t = np.linspace(0, 1, n)
    ang = np.deg2rad(25 + 330 * t)
    cents = np.stack([(36 + 70 * t) * np.cos(ang), (26 + 30 * t) * np.sin(ang), 22 + 8 * np.sin(3 * np.pi * t)], 1)
    semis = rng.uniform(16, 21, (n, 3))
    rots = [random_rotation(rng) for _ in range(n)]
    Rchel = random_rotation(rng)
    gly = [(int(rng.integers(0, n)), random_unit(rng)) for _ in range(9)]
    flex = []
    for m, G in enumerate((np.eye(3), np.diag([1.0, -1.0, -1.0]))):
        base = 100 * m
        sh.ell(G @ np.array([0, 14, 15.0]), (30, 26, 22), G @ Rchel, dom=base)  # ChEL domain
        for i in range(n):
            sh.ell(G @ cents[i], semis[i], G @ rots[i], dom=base + 1 + i)
        for g, (i, u) in enumerate(gly):
            u = unit(u + unit(cents[i] * np.array([1, 1, 0.3])))
            sh.ell(G @ (cents[i] + 19 * u), (7, 7, 7), mat=M_GLY, dom=base + 50 + g)
            flex.append(dict(doms=(base + 50 + g,), pivot=G @ cents[i], ang=("n", 10.0), p=0.85))
        flex.append(
            dict(
                doms=tuple(base + 1 + i for i in range(9, n))
                + tuple(base + 50 + g for g, (i, _) in enumerate(gly) if i >= 9),
                pivot=G @ cents[8],
                ang=("n", 6.0),
            )
        )
    return sh, flex


def build_vlp(s=5.0):
    G = icosahedral_group()
    v5 = unit([0, 1, PHI])
    f3 = unit([PHI, 0, 2 * PHI + 1])

    def tilt_toward(axis, target, ang, twist):
        perp = unit(target - (target @ axis) * axis)
        p = math.cos(ang) * axis + math.sin(ang) * perp
        return axis_angle(axis, twist) @ p

    A = tilt_toward(v5, f3, np.deg2rad(12), 0.0)
    B = tilt_toward(f3, v5, np.deg2rad(12), np.deg2rad(30))
    C = axis_angle(f3, np.deg2rad(60)) @ B
    cents = np.vstack([np.array([g @ A for g in G]), np.array([g @ B for g in G]), np.array([g @ C for g in G])])
    ax5 = unique_dirs(np.array([g @ v5 for g in G]))
    ax3 = unique_dirs(np.array([g @ f3 for g in G]))
    P = lattice_ball(s, 136.0)
    r = np.sqrt((P**2).sum(1))
    P = P[r > 103]
    r = np.sqrt((P**2).sum(1))
    u = P / r[:, None]
    dots = u @ cents.T
    o1, a1, a2 = top2_angles(dots)
    bump = np.exp(-0.5 * (a1 / np.deg2rad(5.5)) ** 2)
    keep = (r <= 121.5 + 11.0 * bump) & (r >= 109.0 - 3.0 * bump)
    keep &= ~(((a2 - a1) * r < 2.6) & (r > 117))
    for axes, rad in ((ax5, 7.0), (ax3, 4.5)):
        for a in axes:
            along = P @ a
            lat = np.sqrt(np.maximum(r**2 - along**2, 0))
            keep &= ~((along > 0) & (lat < rad))
    pts, dom = P[keep], o1[keep]
    mat = np.full(len(pts), M_PROT, np.int8)
    pool = lattice_ball(s, 104.0)

    def rna(rng):
        if rng.random() < 0.35:
            return None
        fill = rng.uniform(0.05, 0.4)
        k = max(1, int(fill * 34))
        cc = np.array([random_unit(rng) * rng.uniform(35, 92) for _ in range(k)])
        rr = rng.uniform(15, 32, k)
        sel = np.zeros(len(pool), bool)
        for c, rad in zip(cc, rr):
            sel |= ((pool - c) ** 2).sum(1) < rad * rad
        p = pool[sel].astype(np.float32) + rng.uniform(-s / 2, s / 2, (int(sel.sum()), 3)).astype(np.float32)
        return p, np.full(len(p), M_PRNA, np.int8)

    return Template(pts, mat, dom, s, sub_jitter=0.8, p_missing=0.005, extra=rna, name="virus-like-particle")


_TPL = {}


def class_templates():
    if not _TPL:
        _TPL["apo-ferritin"] = build_ferritin()
        _TPL["beta-amylase"] = fit_shape(shape_amylase, 4.0, 64.0, sub_jitter=0.6, p_missing=0.01, name="beta-amylase")
        _TPL["beta-galactosidase"] = fit_shape(shape_bgal, 5.0, 89.0, sub_jitter=0.7, name="beta-galactosidase")
        _TPL["ribosome"] = fit_shape(shape_ribosome, 6.0, 149.0, sub_jitter=0.8, name="ribosome")
        _TPL["thyroglobulin"] = fit_shape(shape_thyroglobulin, 5.0, 129.0, sub_jitter=1.6, name="thyroglobulin")
        _TPL["virus-like-particle"] = build_vlp()
    return _TPL


# ============================================================================ clutter shapes
def shape_generic(rng):
    sh = Shape()
    kind = rng.choice(["glob", "glob", "cn", "dn", "chain", "barrel"])
    if kind == "glob":
        c = np.zeros(3)
        for _ in range(int(rng.integers(1, 5))):
            sh.ell(c, rng.uniform(0.6, 1.3, 3), random_rotation(rng))
            c = c + random_unit(rng) * rng.uniform(0.7, 1.3)
    elif kind in ("cn", "dn"):
        n = int(rng.integers(2, 9))
        rho = rng.uniform(0.7, 1.8)
        semi = rng.uniform(0.5, 1.0, 3)
        semi = np.maximum(semi, 1.15 * rho * math.sin(math.pi / n))  # neighbours touch
        mono = [(np.array([rho, 0, rng.uniform(0.2, 0.6)]), semi, random_rotation(rng))]
        if rng.random() < 0.5:
            mono.append((mono[0][0] + random_unit(rng) * 0.8, rng.uniform(0.4, 0.8, 3), random_rotation(rng)))
        ops = [axis_angle((0, 0, 1), 2 * math.pi * j / n) for j in range(n)]
        if kind == "dn":
            ops = ops + [np.diag([1.0, -1.0, -1.0]) @ o for o in ops]
        for o in ops:
            for c, semi, R in mono:
                sh.ell(o @ c, semi, o @ R)
    elif kind == "chain":
        c = np.zeros(3)
        d = random_unit(rng)
        for _ in range(int(rng.integers(3, 9))):
            sh.ell(c, rng.uniform(0.5, 0.9, 3), random_rotation(rng))
            d = unit(d + 0.6 * random_unit(rng))
            c = c + d * rng.uniform(0.8, 1.2)
    else:  # barrel of stacked rings
        n = int(rng.integers(6, 9))
        rings = int(rng.integers(2, 5))
        rho = rng.uniform(1.3, 2.0)
        semi = np.array([0.55, 0.55, 0.5]) * rng.uniform(0.9, 1.2)
        semi[:2] = np.maximum(semi[:2], 1.15 * rho * math.sin(math.pi / n))
        for k in range(rings):
            for j in range(n):
                a = 2 * math.pi * (j + 0.5 * (k % 2)) / n
                sh.ell(
                    (rho * math.cos(a), rho * math.sin(a), (k - (rings - 1) / 2) * 0.95), semi, axis_angle((0, 0, 1), a)
                )
    return sh


def generic_template(rng, mass_kda, name="clutter"):
    sh = shape_generic(rng)
    p, _, _ = sh.render(0.12)
    vol0 = len(p) * 0.12**3
    f = (mass_kda * 1e3 / 0.81 / vol0) ** (1 / 3)
    s = 4.0 if mass_kda < 150 else (5.0 if mass_kda < 700 else 6.0)
    pts, mat, dom = sh.scaled(f).render(s)
    return Template(pts, mat, dom, s, sub_jitter=0.0, name=name)


def aggregate_template(rng, size):
    sh = Shape()
    c = np.zeros(3)
    cs = [c]
    n = int(rng.integers(12, 60))
    for _ in range(n):
        base = cs[int(rng.integers(0, len(cs)))]
        c = base + random_unit(rng) * rng.uniform(18, 30)
        cs.append(c)
    cs = np.array(cs)
    cs *= size / max(np.sqrt((cs**2).sum(1)).max(), 1.0)
    for c in cs:
        sh.ell(c, rng.uniform(12, 24, 3), random_rotation(rng))
    pts, mat, dom = sh.render(6.0)
    return Template(pts, mat, dom, 6.0, name="aggregate")


# ============================================================================ instances
def instance_points(tpl, rng):
    pts = tpl.pts.copy()
    mat = tpl.mat
    keep = np.ones(len(pts), bool)
    for f in tpl.flex:
        ids = [tpl.dom_index[d] for d in f["doms"] if d in tpl.dom_index]
        if not ids:
            continue
        idx = np.concatenate(ids)
        if rng.random() > f.get("p", 1.0):
            keep[idx] = False
            continue
        a = f.get("ang", ("n", 0.0))
        ang = rng.normal(0, a[1]) if a[0] == "n" else rng.uniform(a[1], a[2])
        axis = f.get("axis")
        R = axis_angle(random_unit(rng) if axis is None else axis, math.radians(ang)).astype(np.float32)
        piv = f["pivot"].astype(np.float32)
        pts[idx] = (pts[idx] - piv) @ R.T + piv
    if tpl.sub_jitter > 0:
        pts += rng.normal(0, tpl.sub_jitter, (tpl.ndom, 3)).astype(np.float32)[tpl.dom]
    if tpl.p_missing > 0:
        cand = tpl.missing_doms if tpl.missing_doms is not None else list(tpl.dom_index)
        drop = np.array(cand)[rng.random(len(cand)) < tpl.p_missing]
        for d in drop:
            keep[tpl.dom_index[int(d)]] = False
    pts, mat = pts[keep], mat[keep]
    # smooth elastic deformation, ~1-2 A
    for _ in range(3):
        k = random_unit(rng) / rng.uniform(120, 320)
        e = random_unit(rng)
        pts += (rng.uniform(0.5, 1.8) * np.sin(2 * math.pi * (pts @ k) + rng.uniform(0, 6.3)))[:, None].astype(
            np.float32
        ) * e.astype(np.float32)
    pts += rng.uniform(-0.5, 0.5, pts.shape).astype(np.float32) * tpl.s
    if tpl.extra is not None:
        ex = tpl.extra(rng)
        if ex is not None:
            pts = np.vstack([pts, ex[0] - tpl.com.astype(np.float32)])
            mat = np.concatenate([mat, ex[1]])
    m = RHO[mat]
    com = (pts * m[:, None]).sum(0) / m.sum()
    R = random_rotation(rng).astype(np.float32)
    return ((pts - com.astype(np.float32)) @ R.T).astype(np.float32), mat


def filament_points(rng, p0, direction, length, radius, s=6.0):
    n = int(length / s)
    d = unit(direction)
    path = [np.asarray(p0, float)]
    for _ in range(n - 1):
        d = unit(d + 0.03 * random_unit(rng) * np.array([1, 1, 0.2]))
        path.append(path[-1] + d * s)
    path = np.array(path)
    g = np.arange(-radius, radius + s / 2, s)
    U, V = np.meshgrid(g, g)
    disk = np.stack([U.ravel(), V.ravel()], 1)
    disk = disk[(disk**2).sum(1) <= radius**2]
    out = []
    pitch = rng.uniform(300, 800)
    for i, c in enumerate(path):
        t = unit(path[min(i + 1, n - 1)] - path[max(i - 1, 0)])
        a = unit(np.cross(t, [0.3, 0.5, 0.8]))
        b = np.cross(t, a)
        rad_mod = 1 + 0.18 * math.cos(2 * math.pi * i * s / pitch)
        out.append(c + rad_mod * (disk[:, :1] * a + disk[:, 1:] * b))
    pts = np.vstack(out).astype(np.float32)
    pts += rng.uniform(-s / 2, s / 2, pts.shape).astype(np.float32)
    return pts, path


# ============================================================================ ice slab
def make_field(rng, n, lam_lo, lam_hi):
    lam = np.exp(rng.uniform(math.log(lam_lo), math.log(lam_hi), n))
    th = rng.uniform(0, 2 * math.pi, n)
    ph = rng.uniform(0, 2 * math.pi, n)
    kx, ky = np.cos(th) / lam, np.sin(th) / lam
    amp = math.sqrt(2.0 / n)

    def f(x, y):
        out = 0.0
        for i in range(n):
            out = out + np.cos(2 * math.pi * (kx[i] * x + ky[i] * y) + ph[i])
        return out * amp

    return f


class Slab:
    def __init__(self, rng, D, Hs, Ws, min_T):
        Dz = (D - 1) * VOX
        self.xs = np.arange(Ws) * VOX
        self.ys = np.arange(Hs) * VOX
        xm, ym = self.xs.mean(), self.ys.mean()
        self.ax = math.tan(math.radians(float(np.clip(rng.normal(0, 1.4), -3.5, 3.5))))
        self.ay = math.tan(math.radians(float(np.clip(rng.normal(0, 1.2), -3.0, 3.0))))
        amp_t, amp_b = rng.uniform(0, 40), rng.uniform(0, 40)
        wedge = float(np.clip(rng.normal(0, 0.012), -0.03, 0.03))
        ft = make_field(rng, 6, 1500, 9000)
        fb = make_field(rng, 6, 1500, 9000)
        X, Y = np.meshgrid(self.xs - xm, self.ys - ym)
        span = abs(self.ax) * X.max() + abs(self.ay) * Y.max() + abs(wedge) * X.max() / 2 + 1.6 * max(amp_t, amp_b)
        T = rng.uniform(0.55, 0.9) * Dz
        T = max(min(T, 0.97 * Dz - 2 * span), min_T)
        free = max(Dz - T - 2 * span, 0.0)
        zmid = Dz / 2 + rng.uniform(-0.5, 0.5) * free
        self.T = T
        self.top_ref = (zmid + T / 2 + self.ax * X + self.ay * Y).astype(np.float32)
        self.bot_ref = (self.top_ref - T).astype(np.float32)
        self.top = (self.top_ref + amp_t * ft(X, Y) + wedge * X / 2).astype(np.float32)
        self.bot = (self.bot_ref + amp_b * fb(X, Y) - wedge * X / 2).astype(np.float32)

    def at(self, x, y):
        j = int(np.clip(round(x / VOX), 0, len(self.xs) - 1))
        i = int(np.clip(round(y / VOX), 0, len(self.ys) - 1))
        return float(self.top[i, j]), float(self.bot[i, j])

    def path_length(self, theta):
        n = unit([-self.ax, -self.ay, 1.0])
        b = np.array([-math.sin(theta), 0.0, math.cos(theta)])
        return self.T * n[2] / abs(n @ b)


def occ_below(surf, z):  # fraction of voxel (centre z) lying below surface
    return np.clip((surf - z) / VOX + 0.5, 0, 1)


def render_slab(dV, slab, mp, rng):
    D = dV.shape[0]
    V_ice = mp["V_ice"]
    for act, ref, sign in ((slab.top, slab.top_ref, 1), (slab.bot, slab.bot_ref, -1)):
        z0 = int(math.floor(min(act.min(), ref.min()) / VOX)) - 1
        z1 = int(math.ceil(max(act.max(), ref.max()) / VOX)) + 1
        for z in range(max(z0, 0), min(z1 + 1, D)):
            zz = z * VOX
            if sign > 0:
                d = occ_below(act, zz) - occ_below(ref, zz)
            else:
                d = occ_below(zz, act) - occ_below(zz, ref)
            dV[z] += (V_ice * d).astype(np.float32)
    # denatured protein films at the air-water interfaces
    films = {}
    for name, surf, sign in (("top", slab.top, -1), ("bot", slab.bot, 1)):
        if rng.random() < 0.55:
            th = rng.uniform(12, 35)
            fld = make_field(rng, 8, 150, 1500)
            X, Y = np.meshgrid(slab.xs, slab.ys)
            cov = np.clip(0.5 + 0.6 * fld(X, Y) + rng.uniform(-0.3, 0.3), 0, 1).astype(np.float32)
            amp = rng.uniform(0.25, 0.55) * mp["dV"][M_PROT]
            inner = surf + sign * th
            z0 = int(math.floor(min(surf.min(), inner.min()) / VOX)) - 1
            z1 = int(math.ceil(max(surf.max(), inner.max()) / VOX)) + 1
            for z in range(max(z0, 0), min(z1 + 1, D)):
                zz = z * VOX
                if sign < 0:
                    occ = occ_below(surf, zz) - occ_below(inner, zz)
                else:
                    occ = occ_below(zz, surf) - occ_below(zz, inner)
                dV[z] += (amp * cov * np.clip(occ, 0, 1)).astype(np.float32)
            films[name] = th
        else:
            films[name] = 0.0
    return films


def box_coords(c_xyz, ext, shape):
    D, Hs, Ws = shape
    lo = [
        int(math.floor((c_xyz[2] - ext) / VOX)),
        int(math.floor((c_xyz[1] - ext) / VOX)),
        int(math.floor((c_xyz[0] - ext) / VOX)),
    ]
    hi = [
        int(math.ceil((c_xyz[2] + ext) / VOX)) + 1,
        int(math.ceil((c_xyz[1] + ext) / VOX)) + 1,
        int(math.ceil((c_xyz[0] + ext) / VOX)) + 1,
    ]
    lo = [max(0, lo[0]), max(0, lo[1]), max(0, lo[2])]
    hi = [min(D, hi[0]), min(Hs, hi[1]), min(Ws, hi[2])]
    if any(h <= l for l, h in zip(lo, hi)):
        return None
    Z = np.arange(lo[0], hi[0])[:, None, None] * VOX - c_xyz[2]
    Y = np.arange(lo[1], hi[1])[None, :, None] * VOX - c_xyz[1]
    X = np.arange(lo[2], hi[2])[None, None, :] * VOX - c_xyz[0]
    return (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2])), X, Y, Z


def render_vesicle(dV, c, R, flat, mp, lamellae):
    b = box_coords(c, R + 60, dV.shape)
    if b is None:
        return
    sl, X, Y, Z = b
    q = np.sqrt((X / R) ** 2 + (Y / R) ** 2 + (Z / (R * flat)) ** 2)
    reff = R * (2 + flat) / 3
    sh = math.sqrt(mp["head_sigma"] ** 2 + VOX**2 / 12)
    st = math.sqrt(8.0**2 + VOX**2 / 12)
    out = np.zeros(q.shape, np.float32)
    for k in range(lamellae):
        rk = reff - k * mp["lamella_gap"]
        d = (q - rk / reff) * reff
        out += (
            mp["lip_head"] * (np.exp(-0.5 * ((d - 19) / sh) ** 2) + np.exp(-0.5 * ((d + 19) / sh) ** 2))
            + mp["lip_tail"] * np.exp(-0.5 * (d / st) ** 2)
        ).astype(np.float32)
    dV[sl] += out * (mp["head_sigma"] / sh)


def render_contamination(dV, slab, c, parts, V_ice):
    ext = max(max(p[1]) for p in parts) + 40
    b = box_coords(c, ext, dV.shape)
    if b is None:
        return
    sl, X, Y, Z = b
    occ = np.zeros(np.broadcast(X, Y, Z).shape, np.float32)
    for off, semi in parts:
        q = np.sqrt(((X - off[0]) / semi[0]) ** 2 + ((Y - off[1]) / semi[1]) ** 2 + ((Z - off[2]) / semi[2]) ** 2)
        occ = np.maximum(occ, np.clip(0.5 - (q - 1) * np.mean(semi) / VOX, 0, 1))
    zz = (np.arange(sl[0].start, sl[0].stop) * VOX)[:, None, None]
    top = slab.top[sl[1], sl[2]][None]
    bot = slab.bot[sl[1], sl[2]][None]
    inside = occ_below(top, zz) * occ_below(zz, bot)
    dV[sl] += (V_ice * occ * (1 - inside)).astype(np.float32)


def render_sphere(dV, c, R, value):
    b = box_coords(c, R + 20, dV.shape)
    if b is None:
        return
    sl, X, Y, Z = b
    r = np.sqrt(X**2 + Y**2 + Z**2)
    dV[sl] += (value * np.clip(0.5 - (r - R) / VOX, 0, 1)).astype(np.float32)


def splat(grid, zyx, w):
    """Trilinear splatting of weighted points (voxel units) into grid (D, H, W)."""
    D, Hs, Ws = grid.shape
    i0 = np.floor(zyx).astype(np.int32)
    f = (zyx - i0).astype(np.float32)
    order = np.argsort(i0[:, 0], kind="stable")
    i0, f, w = i0[order], f[order], w[order]
    zs = i0[:, 0]
    CH = 16
    for zst in range(-1, D, CH):
        a, b = np.searchsorted(zs, zst), np.searchsorted(zs, zst + CH)
        if a == b:
            continue
        ii, ff, ww = i0[a:b], f[a:b], w[a:b]
        nz = CH + 1
        flats, wts = [], []
        for dz in (0, 1):
            wz = ff[:, 0] if dz else 1 - ff[:, 0]
            zz = ii[:, 0] + dz - zst
            for dy in (0, 1):
                wy = ff[:, 1] if dy else 1 - ff[:, 1]
                yy = ii[:, 1] + dy
                for dx in (0, 1):
                    wx = ff[:, 2] if dx else 1 - ff[:, 2]
                    xx = ii[:, 2] + dx
                    ok = (yy >= 0) & (yy < Hs) & (xx >= 0) & (xx < Ws) & (zz + zst >= 0) & (zz + zst < D)
                    flats.append(((zz[ok].astype(np.int64) * Hs + yy[ok]) * Ws + xx[ok]))
                    wts.append((ww * wz * wy * wx)[ok])
        acc = np.bincount(np.concatenate(flats), np.concatenate(wts), minlength=nz * Hs * Ws)
        acc = acc.reshape(nz, Hs, Ws)
        z0, z1 = max(zst, 0), min(zst + nz, D)
        grid[z0:z1] += acc[z0 - zst : z1 - zst].astype(np.float32)


# ============================================================================ parameters
def draw_params(rng):
    p = {}
    p["tilt_step"] = float(rng.choice([2.0, 3.0], p=[0.3, 0.7]))
    tmax = rng.uniform(50, 65)
    tmin = -(tmax - rng.uniform(0, 8)) if rng.random() < 0.3 else -tmax
    if rng.random() < 0.5:
        tmax, tmin = -tmin, -tmax
    p["tilt_max"], p["tilt_min"] = tmax, tmin
    p["scheme"] = "dose-symmetric" if rng.random() < 0.75 else "bidirectional"
    p["group"] = int(rng.integers(1, 4))
    p["bidir_start"] = -rng.uniform(0, 25)
    p["dose_total"] = rng.uniform(60, 180)
    p["defocus"] = rng.uniform(2.5, 5.5) * 1e4
    p["astig"] = rng.uniform(0, 0.3) * 1e4
    p["astig_ang"] = rng.uniform(0, math.pi)
    p["df_jitter"] = rng.uniform(0.02, 0.12) * 1e4
    p["angle_err"] = rng.uniform(0.03, 0.25)
    p["Cs"] = 2.7e7
    p["inel_mfp"] = rng.uniform(3000, 4200)
    p["w_amp"] = rng.uniform(0.06, 0.11)
    p["dqe"] = rng.uniform(0.55, 0.85)
    p["B0"], p["B1"], p["B2"] = rng.uniform(20, 120), rng.uniform(0, 150), rng.uniform(0, 150)
    p["align_sigma"] = rng.uniform(0.15, 0.7)
    p["warp"] = rng.uniform(0.2, 1.0) if rng.random() < 0.7 else 0.0
    p["phaseflip"] = bool(rng.random() < 0.7)
    p["ctf_est_err"] = rng.normal(0, 0.05e4)
    p["doseweight"] = bool(rng.random() < 0.6)
    p["deconv"] = bool(rng.random() < 0.35)
    p["deconv_snr"] = 10 ** (3 * rng.uniform(0.4, 1.0))
    p["deconv_fall"] = rng.uniform(60, 180)
    p["filter"] = "sirt" if rng.random() < 0.35 else "ramp"
    p["sirt_iter"] = int(rng.integers(6, 26))
    p["ramp_cut"] = rng.uniform(0.32, 0.5)
    p["beta"] = math.exp(rng.uniform(math.log(0.5), math.log(6.0)))
    p["gamma"] = rng.uniform(0.0, 1.0)
    p["lw_size"] = int(rng.choice([3, 5]))
    p["out_gain"] = 1.0
    mp = {}
    mp["V_ice"] = rng.uniform(4.2, 4.9)
    dvp = rng.uniform(2.2, 3.0)
    dvr = rng.uniform(4.5, 6.0)
    mp["dV"] = np.array([0.0, dvp, dvr, rng.uniform(12, 18), 0.8 * dvp, rng.uniform(22, 28), 0.5 * dvr], np.float32)
    mp["lip_head"] = rng.uniform(1.5, 2.5)
    mp["lip_tail"] = -rng.uniform(0.2, 0.7)
    mp["head_sigma"] = rng.uniform(4.5, 7.0)
    mp["lamella_gap"] = rng.uniform(55, 110)
    return p, mp


def tilt_scheme(p):
    step = p["tilt_step"]
    n_pos = int(math.floor(p["tilt_max"] / step + 1e-6))
    n_neg = int(math.floor(-p["tilt_min"] / step + 1e-6))
    idxs = list(range(-n_neg, n_pos + 1))
    if p["scheme"] == "dose-symmetric":
        order = [0]
        pos, neg = list(range(1, n_pos + 1)), list(range(-1, -n_neg - 1, -1))
        side = 1
        while pos or neg:
            for _ in range(p["group"]):
                if side > 0 and pos:
                    order.append(pos.pop(0))
                elif side < 0 and neg:
                    order.append(neg.pop(0))
            side = -side
    else:
        st = max(-n_neg, int(round(p["bidir_start"] / step)))
        order = list(range(st, n_pos + 1)) + list(range(st - 1, -n_neg - 1, -1))
    acq = {j: i for i, j in enumerate(order)}
    angles = np.array([j * step for j in idxs], float)
    acq_index = np.array([acq[j] for j in idxs])
    return angles, acq_index


# ============================================================================ scene
class Placer:
    def __init__(self, rng, slab, D, gap=6.0):
        self.rng, self.slab, self.D, self.gap = rng, slab, D, gap
        self.C = np.zeros((4096, 3))
        self.R = np.zeros(4096)
        self.n = 0

    def add(self, c, r):
        if self.n == len(self.R):
            self.C = np.vstack([self.C, np.zeros_like(self.C)])
            self.R = np.concatenate([self.R, np.zeros_like(self.R)])
        self.C[self.n] = c
        self.R[self.n] = r
        self.n += 1

    def fits(self, c, r):
        if self.n == 0:
            return True
        d2 = ((self.C[: self.n] - c) ** 2).sum(1)
        return bool(np.all(d2 >= (self.R[: self.n] + r + self.gap) ** 2))

    def place(self, r, xr, yr, dens, p_surf, films, excl=None, tries=80, rz=None):
        rng = self.rng
        rz = r if rz is None else rz
        for _ in range(tries):
            x, y = rng.uniform(*xr), rng.uniform(*yr)
            if excl is not None and excl[0][0] <= x <= excl[0][1] and excl[1][0] <= y <= excl[1][1]:
                continue
            if rng.random() > dens(x, y):
                continue
            top, bot = self.slab.at(x, y)
            lo = max(bot + rz + 6 + films["bot"], 0.0)
            hi = min(top - rz - 6 - films["top"], (self.D - 1) * VOX)
            if hi < lo:
                continue
            if rng.random() < p_surf:
                z = hi - rng.uniform(0, 25) if rng.random() < 0.5 else lo + rng.uniform(0, 25)
                z = min(max(z, lo), hi)
            else:
                z = rng.uniform(lo, hi)
            c = np.array([x, y, z])
            if self.fits(c, r):
                self.add(c, r)
                return c
        return None


def build_scene(rng, dV, slab, mp, out_region, vol_frac):
    """Places and renders everything. Returns list of (class, centre xyz A in sim frame)."""
    D, Hs, Ws = dV.shape
    tpls = class_templates()
    films = render_slab(dV, slab, mp, rng)
    placer = Placer(rng, slab, D)
    (ox0, ox1), (oy0, oy1) = out_region
    full_x, full_y = (0.0, (Ws - 1) * VOX), (0.0, (Hs - 1) * VOX)
    area_out = (ox1 - ox0) * (oy1 - oy0)
    area_sim = full_x[1] * full_y[1]
    margin_ratio = max(area_sim / area_out - 1.0, 0.0)
    sim_frac = vol_frac * area_sim / area_out
    fld = make_field(rng, 8, 800, 6000)
    dstrength = rng.uniform(0.0, 0.7)

    def dens(x, y):
        return min(1.0, max(0.15, 1.0 + dstrength * (fld(x, y) - 0.7)))

    p_surf = rng.uniform(0.1, 0.55)
    pts_all, w_all = [], []

    def add_beads(pts_local, mat, c, s):
        pts_all.append(((pts_local + c.astype(np.float32))[:, ::-1] / VOX).astype(np.float32))
        w_all.append((mp["dV"][mat] * (s**3 / VOX**3)).astype(np.float32))

    # ---- ice contamination on the surfaces (outside the slab; no exclusion)
    for _ in range(rng.poisson(rng.uniform(0, 1.5) * sim_frac)):
        x, y = rng.uniform(*full_x), rng.uniform(*full_y)
        top, bot = slab.at(x, y)
        semi0 = np.array([rng.uniform(150, 600), rng.uniform(150, 600), rng.uniform(100, 350)])
        parts = [(np.zeros(3), semi0)]
        for _ in range(int(rng.integers(0, 4))):
            parts.append((random_unit(rng) * semi0 * 0.7 * np.array([1, 1, 0.4]), semi0 * rng.uniform(0.4, 0.8, 3)))
        zc = top + 0.6 * semi0[2] if rng.random() < 0.5 else bot - 0.6 * semi0[2]
        render_contamination(dV, slab, np.array([x, y, zc]), parts, mp["V_ice"])
    # ---- liposomes
    for _ in range(rng.poisson(rng.uniform(0, 1.2) * sim_frac)):
        R = rng.uniform(150, 700)
        half_free = slab.T / 2 - 40
        flat = 1.0
        if R > half_free:
            flat = max(half_free / R, 0.45)
            if R * flat > half_free:
                R = half_free / flat
        if R < 120:
            continue
        c = placer.place(
            R + 25, full_x, full_y, lambda x, y: 1.0, 0.0, {"top": 0, "bot": 0}, tries=30, rz=R * flat + 25
        )
        if c is None:
            continue
        lam = 2 if rng.random() < 0.15 else 1
        render_vesicle(dV, c, R, flat, mp, lam)
    # ---- filaments (rare)
    if rng.random() < 0.2:
        for _ in range(max(1, rng.poisson(1.5 * sim_frac))):
            x, y = rng.uniform(*full_x), rng.uniform(*full_y)
            top, bot = slab.at(x, y)
            rad = rng.uniform(25, 45)
            if top - bot < 2 * rad + 60:
                continue
            z = rng.uniform(bot + rad + 30, top - rad - 30)
            d = unit(np.array([math.cos(a := rng.uniform(0, 2 * math.pi)), math.sin(a), 0.0]))
            pts, path = filament_points(rng, (x, y, z), d, rng.uniform(800, 3000), rad)
            ok = True
            for q in path[::8]:
                if not placer.fits(q, rad + 10):
                    ok = False
                    break
            if not ok:
                continue
            for q in path[::4]:
                placer.add(q, rad + 10)
            add_beads(pts, np.full(len(pts), M_PROT, np.int8), np.zeros(3), 6.0)
    # ---- gold fiducials (rare)
    if rng.random() < 0.15:
        for _ in range(max(1, rng.poisson(2.0 * sim_frac))):
            R = rng.uniform(25, 50)
            c = placer.place(R, full_x, full_y, lambda x, y: 1.0, 0.3, films, tries=30)
            if c is not None:
                render_sphere(dV, c, R, float(mp["dV"][M_GOLD]))
    # ---- labelled particles (largest first)
    picks = []
    order = sorted(CLASSES, key=lambda c: -RADIUS[c])
    nums = {}
    for cls in CLASSES:
        lo, hi = COUNTS[cls]
        nums[cls] = max(1, int(round(rng.integers(lo, hi + 1) * vol_frac)))
    for cls in order:
        tpl = tpls[cls]
        r = RADIUS[cls]
        n_in = nums[cls]
        n_margin = rng.poisson(n_in * margin_ratio)
        for j in range(n_in + n_margin):
            inside = j < n_in
            c = placer.place(
                r,
                (ox0, ox1) if inside else full_x,
                (oy0, oy1) if inside else full_y,
                dens,
                p_surf,
                films,
                excl=None if inside else ((ox0, ox1), (oy0, oy1)),
                tries=200 if inside else 40,
            )
            if c is None:
                continue
            pts, mat = instance_points(tpl, rng)
            add_beads(pts, mat, c, tpl.s)
            if inside:
                picks.append((cls, c))
    # ---- clutter: generic complexes
    ntypes = int(rng.integers(6, 13))
    gen = []
    for _ in range(ntypes):
        mass = math.exp(rng.uniform(math.log(60), math.log(2500)))
        gen.append(generic_template(rng, mass))
    wts = rng.dirichlet(np.ones(ntypes))
    n_gen = rng.poisson(rng.uniform(60, 400) * sim_frac)
    # fragments / decoys derived from the real complexes
    frag = []
    vt = tpls["virus-like-particle"]
    ft = tpls["apo-ferritin"]
    rt = tpls["ribosome"]
    for _ in range(rng.poisson(rng.uniform(0, 3) * sim_frac)):
        a = random_unit(rng)
        frag.append(
            vt.subset(
                (vt.pts @ a.astype(np.float32))
                > np.linalg.norm(vt.pts, axis=1) * math.cos(math.radians(rng.uniform(35, 110))),
                "vlp-fragment",
            )
        )
    for _ in range(rng.poisson(rng.uniform(0, 4) * sim_frac)):
        a = random_unit(rng)
        frag.append(ft.subset((ft.pts @ a.astype(np.float32)) > rng.uniform(-10, 10), "ferritin-fragment"))
    for _ in range(rng.poisson(rng.uniform(0, 3) * sim_frac)):
        if rng.random() < 0.5:
            m = np.isin(rt.dom, [1, 2])
        else:
            m = ~np.isin(rt.dom, [1, 2, 5, 6, 7])
        frag.append(rt.subset(m, "free-subunit"))
    jobs = [(gen[int(rng.choice(ntypes, p=wts))], None) for _ in range(n_gen)] + [(f, None) for f in frag]
    for _ in range(rng.poisson(rng.uniform(0.3, 3.0) * sim_frac)):
        jobs.append((aggregate_template(rng, rng.uniform(80, 260)), None))
    jobs.sort(key=lambda j: -j[0].rmax)
    for tpl, _ in jobs:
        c = placer.place(tpl.rmax, full_x, full_y, dens, p_surf, films, tries=30)
        if c is None:
            continue
        pts, mat = instance_points(tpl, rng)
        add_beads(pts, mat, c, tpl.s)
    # ---- small soluble proteins
    soup = [generic_template(rng, math.exp(rng.uniform(math.log(15), math.log(120)))) for _ in range(4)]
    for _ in range(rng.poisson(rng.uniform(200, 1500) * sim_frac)):
        tpl = soup[int(rng.integers(0, 4))]
        c = placer.place(tpl.rmax, full_x, full_y, dens, 0.3, films, tries=6)
        if c is None:
            continue
        pts, mat = instance_points(tpl, rng)
        add_beads(pts, mat, c, tpl.s)
    if pts_all:
        splat(dV, np.concatenate(pts_all), np.concatenate(w_all))
    return picks


# ============================================================================ imaging
def lowpass_taper(k, kc, frac=0.85):
    """1 below frac*kc, cosine to 0 at kc."""
    x = np.clip((k - frac * kc) / ((1 - frac) * kc + 1e-12), 0, 1)
    return (0.5 * (1 + np.cos(np.pi * x))).astype(np.float32)


def project(dV, t, c, zc, xc, planes):
    """Real-space projection along the beam for tilt angle with tan=t, cos=c (tilt axis = y)."""
    D, Hs, Ws = dV.shape
    smax = max(abs((0 - zc) * t), abs((D - 1 - zc) * t))
    M = int(math.ceil(smax)) + 2
    nQ = sfft.next_fast_len(Ws + 2 * M + 2)
    Q = np.zeros((Hs, nQ), np.float32)
    tmp = np.empty((Hs, Ws), np.float32)
    for z in planes:
        s = (z - zc) * t
        i = int(math.floor(s))
        f = s - i
        o = M + i
        Q[:, o : o + Ws] += dV[z]
        if f > 1e-6:
            np.multiply(dV[z], np.float32(f), out=tmp)
            Q[:, o : o + Ws] -= tmp
            Q[:, o + 1 : o + 1 + Ws] += tmp
    if c < 0.9995:  # anti-alias before the 1/cos resampling
        F = sfft.rfft(Q, axis=1)
        F *= lowpass_taper(sfft.rfftfreq(nQ), 0.5 * c)[None, :]
        Q = sfft.irfft(F, n=nQ, axis=1).astype(np.float32)
    pos = (np.arange(Ws) - xc) / c + M + xc
    i0 = np.floor(pos).astype(np.int64)
    f = (pos - i0).astype(np.float32)
    valid = (i0 >= 0) & (i0 + 1 < nQ)
    i0 = np.clip(i0, 0, nQ - 2)
    P = Q[:, i0] * (1 - f) + Q[:, i0 + 1] * f
    P[:, ~valid] = 0
    return P * np.float32(VOX / c)


def backproject(rec, Pf, t, c, zc, xc, x0c):
    D, Hr, Wo = rec.shape
    s_all = (np.arange(D) - zc) * t
    vmin = int(math.floor(x0c + s_all.min())) - 1
    vmax = int(math.ceil(x0c + Wo - 1 + s_all.max())) + 2
    v = np.arange(vmin, vmax + 1, dtype=np.float64)
    pos = v * c + xc
    i0 = np.floor(pos).astype(np.int64)
    f = (pos - i0).astype(np.float32)
    nd = Pf.shape[1]
    valid = (i0 >= 0) & (i0 + 1 < nd)
    i0 = np.clip(i0, 0, nd - 2)
    S = Pf[:, i0] * (1 - f) + Pf[:, i0 + 1] * f
    S[:, ~valid] = 0
    dS = np.ascontiguousarray(S[:, 1:] - S[:, :-1])
    tmp = np.empty((Hr, Wo), np.float32)
    for z in range(D):
        sz = x0c + s_all[z] - vmin
        i = int(math.floor(sz))
        fz = sz - i
        rec[z] += S[:, i : i + Wo]
        if fz > 1e-6:
            np.multiply(dS[:, i : i + Wo], np.float32(fz), out=tmp)
            rec[z] += tmp


def critical_exposure(k):
    with np.errstate(divide="ignore"):
        return 0.245 * np.power(np.maximum(k, 1e-6), -1.665) + 2.81


class FourierGrid:
    def __init__(self, ny, nx):
        self.ky = (sfft.fftfreq(ny) / VOX).astype(np.float32)[:, None]
        self.kx = (sfft.fftfreq(nx) / VOX).astype(np.float32)[None, :]
        self.k2 = self.kx**2 + self.ky**2
        self.k = np.sqrt(self.k2)
        phi = np.arctan2(self.ky, self.kx)
        self.c2, self.s2 = np.cos(2 * phi).astype(np.float32), np.sin(2 * phi).astype(np.float32)
        self.kxr = (sfft.rfftfreq(nx) / VOX).astype(np.float32)[None, :]
        self.kr = np.sqrt(self.kxr**2 + self.ky**2)
        self.kx_cyc = np.abs(sfft.fftfreq(nx)).astype(np.float32)[None, :]
        self.ky_cyc = sfft.fftfreq(ny).astype(np.float32)[:, None]

    def chi(self, df, p):
        if getattr(self, "_key", None) != (p["astig"], p["astig_ang"], p["Cs"]):
            self._key = (p["astig"], p["astig_ang"], p["Cs"])
            self._a = (math.pi * LAMBDA * self.k2).astype(np.float32)
            ast = 0.5 * p["astig"] * (self.c2 * math.cos(2 * p["astig_ang"]) + self.s2 * math.sin(2 * p["astig_ang"]))
            self._b = (self._a * ast - 0.5 * math.pi * p["Cs"] * LAMBDA**3 * self.k2**2).astype(np.float32)
        return self._a * np.float32(df) + self._b


def cexp(phase, amp=None):
    """complex64 exp(i*phase) (times amp)."""
    out = np.empty(phase.shape, np.complex64)
    if amp is None:
        out.real = np.cos(phase)
        out.imag = np.sin(phase)
    else:
        out.real = amp * np.cos(phase)
        out.imag = amp * np.sin(phase)
    return out


def strip_weights(nx, xc, nstrip):
    """Hat-function weights along x for nstrip strips; returns (centres_px, weights[nstrip, nx])."""
    if nstrip == 1:
        return np.array([0.0]), np.ones((1, nx), np.float32)
    cen = np.linspace(-(nx - 1) / 2, (nx - 1) / 2, nstrip + 2)[1:-1]
    x = np.arange(nx) - xc
    wts = np.zeros((nstrip, nx), np.float32)
    spacing = cen[1] - cen[0]
    for j, cj in enumerate(cen):
        wts[j] = np.clip(1 - np.abs(x - cj) / spacing, 0, 1)
    wts[0, x < cen[0]] = 1
    wts[-1, x > cen[-1]] = 1
    return cen, wts


def image_tilt(P, theta, n_prior, dose, df, p, mp, slab, grid, rng, xc):
    """Projected potential -> two independent noisy counting images (even/odd frames)."""
    Hs, Ws = P.shape
    phi = (SIGMA * P).astype(np.float32)
    Ne = critical_exposure(grid.kr)
    Fp = sfft.rfft2(phi)
    Fp *= np.exp(-n_prior / (2 * Ne)).astype(np.float32)
    phi = sfft.irfft2(Fp, s=(Hs, Ws)).astype(np.float32)
    psi = cexp(phi, np.exp(-p["w_amp"] * phi))
    Fpsi = sfft.fft2(psi)
    # coherence envelopes (tiny at this sampling, kept for completeness)
    env = (
        np.exp(-0.5 * (math.pi * LAMBDA * 2.7e7 * 0.8 / 300e3 * grid.k2) ** 2)
        * np.exp(-((math.pi * 0.01e-3 * df * grid.k) ** 2))
    ).astype(np.float32)
    dgrad = abs(math.tan(theta)) * (Ws / 2) * VOX
    nstrip = 1 if dgrad < 1000 else 3
    cen, wts = strip_weights(Ws, xc, nstrip)
    I = np.zeros((Hs, Ws), np.float32)
    for j in range(nstrip):
        dfj = df + cen[j] * VOX * math.tan(theta)
        H = cexp(grid.chi(dfj, p), env)
        w = sfft.ifft2(Fpsi * H)
        I += (w.real**2 + w.imag**2).astype(np.float32) * wts[j][None, :]
    I *= math.exp(-slab.path_length(theta) / p["inel_mfp"])
    B = p["_B"]
    FI = sfft.rfft2(I)
    FI *= (np.exp(-B * grid.kr**2 / 4) * np.sinc(grid.kxr * VOX) * np.sinc(grid.ky * VOX)).astype(np.float32)
    I = sfft.irfft2(FI, s=(Hs, Ws))
    lam = np.maximum(I, 0) * (dose * VOX * VOX * p["dqe"] * 0.5)
    e = rng.poisson(lam).astype(np.float32)
    o = rng.poisson(lam).astype(np.float32)
    return e, o


def recon_filter_image(img, grid, theta, df_est, n_prior, p, wbp_w, shift, xc):
    """normalised image -> filtered image ready for back-projection (Fourier-space filters)."""
    ny, nx = img.shape
    F = sfft.fft2(img)
    filt = (
        wbp_w[None, :]
        * grid.rolloff
        * np.exp(-2j * np.pi * (sfft.fftfreq(nx).astype(np.float32)[None, :] * shift[0] + grid.ky_cyc * shift[1]))
    )
    if p["doseweight"]:
        filt = filt * np.exp(-n_prior / (2 * critical_exposure(grid.k)))
    F *= filt.astype(np.complex64)
    if not p["phaseflip"] and not p["deconv"]:
        return sfft.ifft2(F).real.astype(np.float32)
    dgrad = abs(math.tan(theta)) * (nx / 2) * VOX
    nstrip = 1 if dgrad < 1000 else 3
    cen, wts = strip_weights(nx, xc, nstrip)
    out = np.zeros((ny, nx), np.float32)
    if p["deconv"]:  # Wiener-like CTF deconvolution with an exponential SNR model
        snr = (p["deconv_snr"] * np.exp(-grid.k * p["deconv_fall"])).astype(np.float32)
        hp = np.minimum(grid.k * 300.0, 1.0).astype(np.float32)
        snr *= 0.02 + 0.98 * hp
    for j in range(nstrip):
        ch = grid.chi(df_est + cen[j] * VOX * math.tan(theta), p)
        ctf = (np.sin(ch) + p["w_amp"] * np.cos(ch)).astype(np.float32)
        if p["deconv"]:
            f = ctf / (ctf * ctf + 1.0 / np.maximum(snr, 1e-6))
            f /= max(float(f.max()), 1e-6)
        else:
            f = np.sign(ctf)
        out += sfft.ifft2(F * f).real.astype(np.float32) * wts[j][None, :]
    return out


def warp_images(imgs, rng, amp):
    ny, nx = imgs[0].shape
    Y, X = np.mgrid[0:ny, 0:nx].astype(np.float32)
    fy = make_field(rng, 4, 60, 300)
    fx = make_field(rng, 4, 60, 300)
    cy = Y + np.float32(amp) * fy(X, Y).astype(np.float32)
    cx = X + np.float32(amp) * fx(X, Y).astype(np.float32)
    return tuple(ndimage.map_coordinates(im, [cy, cx], order=1, mode="nearest").astype(np.float32) for im in imgs)


def wbp_weights(nx, p, ntilt):
    """1-D weighting along the axis perpendicular to the tilt axis (ramp or SIRT-like)."""
    k = np.abs(sfft.fftfreq(nx)).astype(np.float64)
    base = np.maximum(k, 0.25 / nx)
    if p["filter"] == "ramp":
        w = base
    else:
        lam = np.minimum(0.999, 1.0 / (np.maximum(k, 1e-6) * ntilt))
        w = base * (1 - (1 - lam) ** p["sirt_iter"])
    return w.astype(np.float32)


def rolloff_2d(grid, p):
    """Radial (2-D) roll-off: Hamming-like window of the R-weighting, also acting as the
    anti-aliasing filter of the binned projections (makes the noise roughly isotropic in xy)."""
    k = np.sqrt(grid.kx_cyc**2 + grid.ky_cyc**2)
    kc = p["ramp_cut"] if p["filter"] == "ramp" else 0.5
    return np.where(k < kc, 0.54 + 0.46 * np.cos(np.pi * k / kc), 0.0).astype(np.float32)


def simulate_tomogram(rng, dV, p, mp, slab, geo):
    D, Hs, Ws = dV.shape
    H, W, py, px = geo
    zc, xc = (D - 1) / 2.0, (Ws - 1) / 2.0
    x0c = px - xc
    planes = np.nonzero(np.abs(dV).reshape(D, -1).max(1) > 0)[0]
    angles, acq = tilt_scheme(p)
    nt = len(angles)
    dose = p["dose_total"] / nt
    dth = np.gradient(np.deg2rad(angles)) if nt > 1 else np.array([1.0])
    grid = FourierGrid(Hs, Ws)
    Hsub = min(H, max(48, H // 5))
    h0 = (H - Hsub) // 2
    m = 24
    r0, r1 = max(py + h0 - m, 0), min(py + h0 + Hsub + m, Hs)
    gsub = FourierGrid(r1 - r0, Ws)
    grid.rolloff = rolloff_2d(grid, p)
    gsub.rolloff = rolloff_2d(gsub, p)
    wbase = wbp_weights(Ws, p, nt)
    rec = np.zeros((D, H, W), np.float32)
    rec_e = np.zeros((D, Hsub, W), np.float32)
    rec_o = np.zeros((D, Hsub, W), np.float32)
    for i in range(nt):
        th_nom = math.radians(angles[i])
        th = th_nom + math.radians(rng.normal(0, p["angle_err"]))
        n_prior = dose * (acq[i] + 0.5)
        df = p["defocus"] + rng.normal(0, p["df_jitter"])
        p["_B"] = p["B0"] + p["B1"] * acq[i] / max(nt - 1, 1) + p["B2"] * (1 / math.cos(th) - 1)
        P = project(dV, math.tan(th), math.cos(th), zc, xc, planes)
        e, o = image_tilt(P, th, n_prior, dose, df, p, mp, slab, grid, rng, xc)
        shift = rng.normal(0, p["align_sigma"], 2)
        if p["warp"] > 0:  # residual local (non-rigid) misalignment, smooth over the field
            e, o = warp_images((e, o), rng, p["warp"])
        df_est = df + p["ctf_est_err"] + rng.normal(0, 0.03e4)
        w = wbase * np.float32(dth[i])
        full = e + o
        img = full / max(full.mean(), 1e-6) - 1
        Pf = recon_filter_image(img, grid, th_nom, df_est, n_prior, p, w, shift, xc)
        backproject(rec, Pf[py : py + H], math.tan(th_nom), math.cos(th_nom), zc, xc, x0c)
        for half, rh in ((e, rec_e), (o, rec_o)):
            hs = half[r0:r1]
            img = hs / max(hs.mean(), 1e-6) - 1
            Pf = recon_filter_image(img, gsub, th_nom, df_est, n_prior, p, w, shift, xc)
            a = py + h0 - r0
            backproject(rh, Pf[a : a + Hsub], math.tan(th_nom), math.cos(th_nom), zc, xc, x0c)
    return rec, rec_e, rec_o, angles


# ============================================================================ denoising
def tukey(n, frac=0.1):
    w = np.ones(n, np.float32)
    m = max(1, int(n * frac))
    r = 0.5 * (1 - np.cos(np.pi * np.arange(m) / m))
    w[:m] = r
    w[-m:] = r[::-1]
    return w


def fsc_wiener_table(a, b, beta, nr=24, na=9):
    D, Hh, W = a.shape
    win = tukey(D)[:, None, None] * tukey(Hh)[None, :, None] * tukey(W)[None, None, :]
    A = sfft.rfftn((a - a.mean()) * win)
    B = sfft.rfftn((b - b.mean()) * win)
    kz = sfft.fftfreq(D)[:, None, None]
    ky = sfft.fftfreq(Hh)[None, :, None]
    kx = sfft.rfftfreq(W)[None, None, :]
    kr = np.sqrt(kz**2 + ky**2 + kx**2)
    ang = np.arctan2(np.abs(kz), kx + 0 * ky)
    ir = np.clip((kr / 0.5 * nr).astype(int), 0, nr - 1)
    ia = np.clip((ang / (np.pi / 2) * na).astype(int), 0, na - 1)
    idx = (ir * na + ia).ravel()
    num = np.bincount(idx, (A * np.conj(B)).real.ravel(), minlength=nr * na)
    pa = np.bincount(idx, (np.abs(A) ** 2).ravel(), minlength=nr * na)
    pb = np.bincount(idx, (np.abs(B) ** 2).ravel(), minlength=nr * na)
    fsc = (num / np.sqrt(np.maximum(pa * pb, 1e-30))).reshape(nr, na)
    fsc = ndimage.uniform_filter(fsc, size=(3, 1), mode="nearest")
    fsc = np.clip(fsc, 0.0, 0.995)
    ssnr = 2 * fsc / (1 - fsc)
    wien = ssnr / (ssnr + 1.0 / beta)
    return wien, fsc


def apply_table(rec, table):
    nr, na = table.shape
    NRF, NAF = 256, 46
    rc = (np.arange(nr) + 0.5) / nr * 0.5
    ac = (np.arange(na) + 0.5) / na * (np.pi / 2)
    rf = np.linspace(0, 0.5, NRF)
    af = np.linspace(0, np.pi / 2, NAF)
    t1 = np.array([np.interp(rf, rc, table[:, j]) for j in range(na)])  # (na, NRF)
    fine = np.array([np.interp(af, ac, t1[:, i]) for i in range(NRF)]).T  # (NAF, NRF)
    fine = fine.astype(np.float32)
    D, H, W = rec.shape
    F = sfft.rfftn(rec)
    kz = sfft.fftfreq(D)
    ky = sfft.fftfreq(H)[:, None]
    kx = sfft.rfftfreq(W)[None, :]
    kxy2 = ky**2 + kx**2
    for iz in range(D):
        kr = np.sqrt(kz[iz] ** 2 + kxy2)
        ang = np.arctan2(abs(kz[iz]), kx + 0 * ky)
        irf = np.minimum((kr / 0.5 * (NRF - 1)).astype(np.int32), NRF - 1)
        iaf = np.minimum(np.rint(ang / (np.pi / 2) * (NAF - 1)).astype(np.int32), NAF - 1)
        F[iz] *= fine[iaf, irf]
    return sfft.irfftn(F, s=rec.shape).astype(np.float32)


def local_wiener(x, size, gamma):
    if gamma <= 0:
        return x
    mu = ndimage.uniform_filter(x, size)
    m2 = ndimage.uniform_filter(x * x, size)
    var = np.maximum(m2 - mu * mu, 0)
    del m2
    nu = gamma * float(np.median(var[::3, ::3, ::3]))
    g = np.clip((var - nu) / np.maximum(var, 1e-20), 0, 1)
    return (mu + g * (x - mu)).astype(np.float32)


# ============================================================================ run
def simulate_run(seed, k, shape):
    t0 = time.time()
    rng = np.random.default_rng([seed, k])
    D, H, W = shape
    p, mp = draw_params(rng)
    pad_y0, pad_x0 = 16, 16 + int(round(0.05 * W))
    Hs = sfft.next_fast_len(H + 2 * pad_y0)
    Ws = sfft.next_fast_len(W + 2 * pad_x0)
    py, px = (Hs - H) // 2, (Ws - W) // 2
    vol_frac = D * H * W / float(np.prod(REF_SHAPE))
    min_T = min(2 * 150 + 120.0, 0.97 * (D - 1) * VOX)
    slab = Slab(rng, D, Hs, Ws, min_T)
    dV = np.zeros((D, Hs, Ws), np.float32)
    out_region = ((px * VOX, (px + W - 1) * VOX), (py * VOX, (py + H - 1) * VOX))
    picks_sim = build_scene(rng, dV, slab, mp, out_region, vol_frac)
    t1 = time.time()
    rec, rec_e, rec_o, angles = simulate_tomogram(rng, dV, p, mp, slab, (H, W, py, px))
    del dV
    t2 = time.time()
    table, fsc = fsc_wiener_table(rec_e, rec_o, p["beta"])
    del rec_e, rec_o
    rec -= rec.mean()
    rec = apply_table(rec, table)
    rec = local_wiener(rec, p["lw_size"], p["gamma"])
    rec -= rec.mean()
    rec /= max(float(rec.std()), 1e-12)
    rec *= np.float32(p["out_gain"])
    t3 = time.time()
    picks = {c: [] for c in CLASSES}
    for cls, c in picks_sim:
        xi, yi, zi = c[0] / VOX - px, c[1] / VOX - py, c[2] / VOX
        if 0 <= xi <= W - 1 and 0 <= yi <= H - 1 and 0 <= zi <= D - 1:
            picks[cls].append((xi * VOX, yi * VOX, zi * VOX))
    info = dict(
        scene_s=t1 - t0,
        imaging_s=t2 - t1,
        denoise_s=t3 - t2,
        ntilt=len(angles),
        tilt_range=(float(angles.min()), float(angles.max())),
        step=p["tilt_step"],
        dose=p["dose_total"],
        defocus_um=p["defocus"] / 1e4,
        ice_A=slab.T,
        filter=p["filter"],
        phaseflip=p["phaseflip"],
        beta=p["beta"],
        gamma=p["gamma"],
        counts={c: len(v) for c, v in picks.items()},
    )
    return rec.astype(np.float32), picks, info


def pool_mean(a, f):
    D, H, W = (s // f for s in a.shape)
    return (
        a[: D * f, : H * f, : W * f].reshape(D, f, H, f, W, f).mean(axis=(1, 3, 5), dtype=np.float64).astype(np.float32)
    )


def write_zarr(path, vol):
    g = zarr.open_group(path, mode="w", zarr_format=2)
    levels = [vol, pool_mean(vol, 2), pool_mean(vol, 4)]
    datasets = []
    for i, arr in enumerate(levels):
        ch = tuple(min(128, s) for s in arr.shape)
        a = g.create_array(name=str(i), shape=arr.shape, chunks=ch, dtype="float32")
        a[...] = arr
        sc = VOX * (2**i)
        datasets.append({"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": [sc, sc, sc]}]})
    g.attrs["multiscales"] = [
        {
            "version": "0.4",
            "name": "denoised",
            "axes": [
                {"name": "z", "type": "space", "unit": "angstrom"},
                {"name": "y", "type": "space", "unit": "angstrom"},
                {"name": "x", "type": "space", "unit": "angstrom"},
            ],
            "datasets": datasets,
        }
    ]


def run_paths(root, name):
    st = os.path.join(root, "train", "static", "ExperimentRuns", name)
    ov = os.path.join(root, "train", "overlay", "ExperimentRuns", name)
    return st, ov


def run_complete(root, name):
    st, ov = run_paths(root, name)
    z = os.path.join(st, "VoxelSpacing10.000", "denoised.zarr")
    if not os.path.exists(os.path.join(z, ".zattrs")) or not os.path.exists(os.path.join(z, "2", ".zarray")):
        return False
    return all(os.path.exists(os.path.join(ov, "Picks", c + ".json")) for c in CLASSES)


def write_run(root, name, vol, picks):
    st, ov = run_paths(root, name)
    tmp = os.path.join(root, ".tmp_%s_%d" % (name, os.getpid()))
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    tst, tov = os.path.join(tmp, "static"), os.path.join(tmp, "overlay")
    os.makedirs(os.path.join(tst, "VoxelSpacing10.000"))
    os.makedirs(os.path.join(tov, "Picks"))
    write_zarr(os.path.join(tst, "VoxelSpacing10.000", "denoised.zarr"), vol)
    for cls in CLASSES:
        pts = [
            {
                "location": {"x": float(x), "y": float(y), "z": float(z)},
                "transformation_": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
                "instance_id": i,
            }
            for i, (x, y, z) in enumerate(picks[cls])
        ]
        doc = {
            "pickable_object_name": cls,
            "user_id": "curation",
            "session_id": "0",
            "run_name": name,
            "voxel_spacing": None,
            "unit": "angstrom",
            "points": pts,
        }
        with open(os.path.join(tov, "Picks", cls + ".json"), "w") as fh:
            json.dump(doc, fh)
    os.makedirs(os.path.dirname(st), exist_ok=True)
    os.makedirs(os.path.dirname(ov), exist_ok=True)
    for d in (st, ov):
        if os.path.exists(d):
            shutil.rmtree(d)
    os.rename(tov, ov)
    os.rename(tst, st)  # static last: its presence marks a complete run
    shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description="blind cryo-ET tomogram simulator (source H)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--shape", type=int, nargs=3, default=list(REF_SHAPE), metavar=("D", "H", "W"))
    a = ap.parse_args(argv)
    root = os.path.abspath(a.out)
    os.makedirs(root, exist_ok=True)
    for k in range(a.first, a.first + a.runs):
        name = "TS_H_%d" % k
        if run_complete(root, name):
            log("%s: complete, skipped" % name)
            continue
        for d in os.listdir(root):
            if d.startswith(".tmp_%s_" % name):
                shutil.rmtree(os.path.join(root, d), ignore_errors=True)
        t0 = time.time()
        vol, picks, info = simulate_run(a.seed, k, tuple(a.shape))
        write_run(root, name, vol, picks)
        log("%s: %.1fs  %s" % (name, time.time() - t0, json.dumps(info)))


if __name__ == "__main__":
    main()
