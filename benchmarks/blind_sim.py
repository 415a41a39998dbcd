#!/usr/bin/env python
# ruff: noqa: UP031, E741, F841, B008, E731
# Source D of cryopoint's benchmarks: a simulator written blind. A helper wrote this file on 2026-12-06 without
# reading cryopoint's code, its simulator, its notes or its reference documents: from the CZII data contract
# (layout, units, axes, voxel size, dark protein), the six classes with their radii, and a physics brief only.
# It is kept as its author wrote it (formatting only), so its choices stay independent of ours: particle models,
# clutter, tilt-series imaging, CTF, noise, reconstruction and denoisers are all its own. Evaluation only: no
# cryopoint training recipe may draw from it. benchmarks/blind_source.py scores models on it.
"""blind_sim: an independent, self-contained cryo-electron-tomography simulator.

Pipeline per run (see README.md):
  scene  -> ice slab with rough surfaces, six target complexes + clutter
            (random proteins, symmetric oligomers, ring complexes, a decoy cage,
            actin-like filaments, lipid vesicles with membrane proteins,
            air-water-interface protein film, gold beads)
  model  -> specimen potential (volts, excess over vitreous ice) on a 10.012444 A grid,
            built from pseudo-atomic Gaussian blobs integrated over voxels (erf)
  optics -> tilt series about y; per tilt: projected potential (sparse projector,
            2x2 sub-voxel sampling, perturbed angles), analytic ice + gold, exit wave
            exp(i*sigma*Phi - absorption), astigmatic CTF with defocus strips along
            the tilted axis, B-factor + dose-dependent radiation damage filter,
            Poisson shot noise
  recon  -> exposure normalisation, residual alignment shifts, optional phase flip,
            R-weighting (ramp or SIRT-like) with roll-off, back-projection, simple
            denoising (Gaussian + none / median / adaptive Wiener using an even/odd
            noise estimate), tiny output scale + random offset
  output -> OME-NGFF 0.4 zarr v2 multiscale + copick-style picks JSON

Only numpy, scipy, zarr (and its codec package numcodecs) and the standard library are used.
"""

import argparse
import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
from scipy import ndimage, sparse
from scipy.special import erf

VS = 10.012444  # voxel size, angstrom
CLASSES = [
    ("apo-ferritin", 60.0),
    ("beta-amylase", 65.0),
    ("beta-galactosidase", 90.0),
    ("ribosome", 150.0),
    ("thyroglobulin", 130.0),
    ("virus-like-particle", 135.0),
]
# expected count per class for a 96x256x256 volume with 70 % ice, crowding 1
BASE_COUNTS = {
    "apo-ferritin": 9.0,
    "beta-amylase": 8.0,
    "beta-galactosidase": 7.0,
    "ribosome": 6.0,
    "thyroglobulin": 6.0,
    "virus-like-particle": 5.0,
}
REF_SLAB_VOXELS = 0.7 * 96 * 256 * 320  # simulated world incl. the x padding of a 96x256x256 run

# ---------------------------------------------------------------- physics constants
LAMBDA = 0.019687  # electron wavelength at 300 kV, angstrom
SIGMA_I = 6.526e-4  # interaction constant at 300 kV, rad / (V A)
CS = 2.7e7  # spherical aberration, angstrom
V_PER_DENSITY = 4.57  # mean inner potential per g/cm^3 (crude linear model), volt
RHO_ICE = 0.92
V_ICE = V_PER_DENSITY * RHO_ICE
DA_TO_A3_PER_RHO = 1.66054  # volume (A^3) of 1 Da at 1 g/cm^3


def excess_per_da(rho):
    """Integrated excess potential (V*A^3) per dalton of a material of density rho."""
    return DA_TO_A3_PER_RHO / rho * V_PER_DENSITY * (rho - RHO_ICE)


K_PROT = excess_per_da(1.35)
K_RNA = excess_per_da(1.85)
V_AU_EXCESS = 26.0  # gold mean inner potential minus ice, volt
MU_AU = 1.0 / 170.0  # effective absorption of gold (elastic out of aperture + inelastic), 1/A


# ================================================================ rotation utilities
def rot_axis(axis, ang):
    a = np.asarray(axis, float)
    a = a / np.linalg.norm(a)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(ang) * K + (1 - math.cos(ang)) * K @ K


def random_rotation(rng):
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def unit(v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def group_closure(gens):
    G = [np.eye(3)]
    frontier = [np.eye(3)]
    while frontier:
        new = []
        for g in frontier:
            for h in gens:
                m = h @ g
                if not any(np.abs(m - x).max() < 1e-6 for x in G):
                    G.append(m)
                    new.append(m)
        frontier = new
    return G


def octahedral_group():
    G = group_closure([rot_axis([0, 0, 1], math.pi / 2), rot_axis([1, 1, 1], 2 * math.pi / 3)])
    assert len(G) == 24
    return G


PHI = (1 + 5**0.5) / 2


def icosa_vertices():
    v = []
    for a in (-1, 1):
        for b in (-PHI, PHI):
            v += [(0, a, b), (a, b, 0), (b, 0, a)]
    return np.array(v, float)


def icosahedral_group():
    G = group_closure([rot_axis([0, 1, PHI], 2 * math.pi / 5), rot_axis([0, 0, 1], math.pi)])
    assert len(G) == 60
    return G


def d2_group():
    return [np.eye(3), np.diag([1, -1, -1.0]), np.diag([-1, 1, -1.0]), np.diag([-1, -1, 1.0])]


# ================================================================ pseudo-atomic models
# Molecules are described as unions of ellipsoidal "primitives" (domains, helices, capsomer
# subunits, RNA cores ...). The union is filled with pseudo-atoms on a jittered grid (spacing h)
# carrying the excess potential of their material, so overlapping primitives never double
# count density. Total excess is finally normalised to the complex's known mass.
DV_PROT = V_PER_DENSITY * 1.35 - V_ICE  # excess potential of protein, volt
DV_RNA = V_PER_DENSITY * 1.85 - V_ICE  # excess potential of RNA, volt
MIXED = -1.0  # ribosome body: RNA core / protein rim decided later


class Model:
    """Gaussian blobs: pos (N,3) xyz in A, sigma (N,) A, weight (N,) integrated excess potential V*A^3."""

    def __init__(self, pos=None, sigma=None, weight=None):
        self.pos = np.zeros((0, 3)) if pos is None else np.asarray(pos, float).reshape(-1, 3)
        self.sigma = np.zeros(0) if sigma is None else np.asarray(sigma, float).ravel()
        self.weight = np.zeros(0) if weight is None else np.asarray(weight, float).ravel()

    def add(self, other):
        self.pos = np.concatenate([self.pos, other.pos])
        self.sigma = np.concatenate([self.sigma, other.sigma])
        self.weight = np.concatenate([self.weight, other.weight])
        return self

    def transformed(self, R=np.eye(3), t=(0, 0, 0)):
        return Model(self.pos @ np.asarray(R).T + np.asarray(t, float), self.sigma.copy(), self.weight.copy())

    def centre(self):
        c = (self.pos * np.abs(self.weight)[:, None]).sum(0) / np.abs(self.weight).sum()
        self.pos = self.pos - c
        return self

    def radius(self):
        return float(np.max(np.linalg.norm(self.pos, axis=1) + 1.2 * self.sigma))

    def extents(self):
        lo = (self.pos - 1.2 * self.sigma[:, None]).min(0)
        hi = (self.pos + 1.2 * self.sigma[:, None]).max(0)
        return hi - lo

    def mass_equiv_kda(self):
        return float(self.weight.sum() / K_PROT / 1e3)


class Prim:
    """Ellipsoid primitive: centre c, semi-axes ax, rotation R (columns = local axes), excess dens (V)."""

    def __init__(self, c, ax, R=None, dens=None, plane=None):
        self.c = np.asarray(c, float)
        self.ax = np.asarray(ax, float)
        self.R = np.eye(3) if R is None else np.asarray(R, float)
        self.dens = DV_PROT if dens is None else dens
        self.plane = plane  # (normal, d): keep points with normal . p < d

    def moved(self, G, t=(0, 0, 0)):
        pl = None if self.plane is None else (G @ self.plane[0], self.plane[1] + np.dot(G @ self.plane[0], t))
        return Prim(G @ self.c + np.asarray(t, float), self.ax, G @ self.R, self.dens, pl)


def sym_prims(prims, group, t=(0, 0, 0)):
    out = []
    for g in group:
        g = np.asarray(g)
        out += [p.moved(g, g @ np.asarray(t, float)) for p in prims]
    return out


def mass_radius(mass):
    return (mass * DA_TO_A3_PER_RHO / 1.35 * 3 / (4 * math.pi)) ** (1 / 3)


def domain_prim(rng, c, mass, aspect=0.3, dens=None):
    asp = np.exp(rng.uniform(-aspect, aspect, size=3))
    asp /= np.prod(asp) ** (1 / 3)
    return Prim(c, mass_radius(mass) * asp, random_rotation(rng), dens)


def union_points(prims, h, rng, jitter=0.18):
    lo = np.min([p.c - p.ax.max() for p in prims], 0) - h
    hi = np.max([p.c + p.ax.max() for p in prims], 0) + h
    g = [np.arange(lo[i], hi[i] + h, h) + rng.uniform(0, h) for i in range(3)]
    shape = tuple(len(a) for a in g)
    dens = np.zeros(shape)
    owner = np.full(shape, -1)
    for i, p in enumerate(prims):
        r = p.ax.max()
        sl = tuple(
            slice(np.searchsorted(g[a], p.c[a] - r), np.searchsorted(g[a], p.c[a] + r, side="right")) for a in range(3)
        )
        sub = np.stack(np.meshgrid(g[0][sl[0]], g[1][sl[1]], g[2][sl[2]], indexing="ij"), -1)
        q = (sub - p.c) @ p.R / p.ax
        ins = (q**2).sum(-1) <= 1.0
        if p.plane is not None:
            ins &= sub @ p.plane[0] < p.plane[1]
        dsub = dens[sl]
        better = ins & ((p.dens > dsub) | ((p.dens == MIXED) & (dsub == 0)))
        dsub[better] = p.dens
        owner[sl][better] = i
    P = np.stack(np.meshgrid(*g, indexing="ij"), -1).reshape(-1, 3)
    dens = dens.ravel()
    owner = owner.ravel()
    keep = dens != 0
    P = P[keep] + rng.normal(scale=jitter * h, size=(int(keep.sum()), 3))
    return P, dens[keep], owner[keep]


def union_model(prims, h, rng, mass_da=None, sigma_frac=0.62, mixed_fn=None):
    P, dens, owner = union_points(prims, h, rng)
    if mixed_fn is not None and np.any(dens == MIXED):
        m = dens == MIXED
        dens[m] = mixed_fn(P[m], owner[m])
    w = dens * h**3
    model = Model(P, np.full(len(P), sigma_frac * h), w)
    if mass_da is not None:
        model.weight *= mass_da * K_PROT / model.weight.sum()
    return model.centre()


def fit_prims(prims, target, h, rng, iters=3):
    """Scale primitive centres along x/y/z so that the union's extents approach target (A)."""
    for _ in range(iters):
        P, _, _ = union_points(prims, h, rng)
        ext = np.ptp(P, 0) + 1.6 * h
        s = np.clip(np.asarray(target, float) / ext, 0.7, 1.4)
        cen = P.mean(0)
        prims = [Prim((p.c - cen) * s, p.ax, p.R, p.dens, None if p.plane is None else p.plane) for p in prims]
    return prims


# ---------------------------------------------------------------- target complexes
def build_apoferritin(rng):
    """24 four-helix-bundle subunits (~20 kDa) tiling an octahedral shell (r ~40..60 A)."""
    d2 = unit([1, 1, 0])
    off = np.array([0, 0, 1.0])
    c = unit(d2 + 0.30 * off) * 50.5
    radial = unit(c)
    long_ax = unit(np.cross(radial, off))
    perp = np.cross(radial, long_ax)
    Rh = np.stack([long_ax, perp, radial], 1)
    sub = []
    for a in (-5.6, 5.6):
        for b in (-4.6, 4.6):
            sub.append(Prim(c + a * perp + b * radial + rng.normal(scale=0.6, size=3), (24.0, 6.4, 6.4), Rh))
    sub.append(Prim(c - 6.0 * radial + 19.0 * long_ax, (9.0, 5.5, 5.5), Rh @ rot_axis([0, 0, 1], 1.1)))
    prims = sym_prims(sub, octahedral_group())
    return union_model(prims, 4.5, rng, mass_da=24 * 19.9e3, sigma_frac=0.7)


def build_beta_amylase(rng):
    """D2 tetramer of compact (beta/alpha)8-barrel subunits (~56 kDa each)."""
    sub = [
        Prim((0, 0, 0), (26, 22, 20), random_rotation(rng)),
        Prim((20, 13, 10), (15, 12, 11), random_rotation(rng)),
        Prim((-8, -17, 9), (12, 10, 9), random_rotation(rng)),
    ]
    R0 = random_rotation(rng)
    sub = [p.moved(R0) for p in sub]
    prims = sym_prims(sub, d2_group(), t=(24, 21, 11))
    prims = fit_prims(prims, (112, 98, 80), 7.0, rng)
    return union_model(prims, 7.0, rng, mass_da=4 * 55.9e3)


def build_beta_galactosidase(rng):
    """D2 tetramer of five-domain ~116 kDa subunits, overall ~175 x 135 x 90 A."""
    doms = [((0, 0, 0), 30e3), ((33, 9, 5), 22e3), ((-31, 6, -4), 24e3), ((8, -25, 6), 22e3), ((-12, 24, 9), 18e3)]
    sub = [domain_prim(rng, c, m) for c, m in doms]
    R0 = rot_axis([0.3, 0.2, 1.0], 0.35)
    sub = [p.moved(R0) for p in sub]
    prims = sym_prims(sub, d2_group(), t=(44, 31, 14))
    prims = fit_prims(prims, (175, 135, 90), 7.0, rng)
    return union_model(prims, 7.0, rng, mass_da=4 * 116.3e3)


def build_ribosome(rng):
    """LSU (~2/3 mass) + SSU (~1/3), RNA-rich cores and protein-studded lumpy surface, ~265 A."""
    up = np.array([0, 0, 1.0])
    lsu = [
        Prim((0, 0, -40), (108, 96, 68), dens=MIXED, plane=(up, 18.0)),
        Prim((0, 72, 0), (34, 28, 26), dens=MIXED, plane=(up, 22.0)),  # central protuberance
        Prim((-98, 32, -12), (30, 17, 17), rot_axis([0, 0, 1], 0.4), DV_RNA),  # L1 stalk
        Prim((100, 30, -18), (26, 12, 12), rot_axis([0, 0, 1], -0.3), DV_PROT),
    ]  # P stalk
    ssu = [
        Prim((0, -25, 52), (62, 70, 34), rot_axis([0, 0, 1], 0.15), MIXED, plane=(-up, -28.0)),
        Prim((-8, 60, 56), (42, 32, 30), rot_axis([1, 0, 0], 0.3), MIXED, plane=(-up, -28.0)),
        Prim((56, -6, 42), (24, 34, 18), None, MIXED, plane=(-up, -28.0)),
    ]
    bridges = [Prim((rng.uniform(-45, 45), rng.uniform(-50, 45), 23.0), (10, 10, 8), dens=DV_RNA) for _ in range(7)]
    prims = lsu + ssu + bridges
    # r-protein lumps on the surface
    P, _, _ = union_points(prims, 12.0, rng)
    cen = [np.array([0, 0, -40.0]), np.array([0, 0, 52.0])]
    rr = np.linalg.norm(P - cen[0], axis=1)
    for i in rng.choice(len(P), size=160, replace=False):
        p = P[i]
        n = unit(p - (cen[0] if p[2] < 22 else cen[1]))
        q = p + n * rng.uniform(0, 6)
        prims.append(domain_prim(rng, q, rng.uniform(8e3, 25e3), aspect=0.4))
    waves = [(unit(rng.normal(size=3)) / rng.uniform(25, 45), rng.uniform(0, 2 * math.pi)) for _ in range(6)]

    def mixed(Pm, owner):
        noise = sum(np.cos(Pm @ k + ph) for k, ph in waves) / math.sqrt(3)
        rr = np.zeros(len(Pm))
        for i in np.unique(owner):
            s = owner == i
            rr[s] = np.sqrt(((((Pm[s] - prims[i].c) @ prims[i].R) / prims[i].ax) ** 2).sum(1))
        rna = rr < 0.74 + 0.16 * noise
        return np.where(rna, DV_RNA, DV_PROT)

    m = union_model(prims, 8.0, rng, mixed_fn=mixed)
    m.pos *= 265.0 / m.extents().max()
    # 3.2 MDa, ~60 % RNA: express as protein-equivalent excess
    m.weight *= (1.92e6 * K_RNA + 1.28e6 * K_PROT) / m.weight.sum()
    return m


def build_thyroglobulin(rng):
    """Antiparallel C2 dimer of elongated ~330 kDa subunits: chain of repeat domains + ChEL domain."""
    sub = []
    n = 12
    xs = np.linspace(-110, 76, n)
    for i, x in enumerate(xs):
        t = i / (n - 1)
        c = (x, 26 + 8 * math.sin(2 * math.pi * 1.5 * t), 16 * math.cos(2 * math.pi * t))
        sub.append(Prim(c, (12 + rng.uniform(-1, 2), 19, 17), rot_axis([1, 0, 0], rng.uniform(0, math.pi))))
    sub.append(Prim((100, 22, -4), (27, 24, 22), random_rotation(rng)))  # ChEL (cholinesterase-like) domain
    prims = sym_prims(sub, [np.eye(3), rot_axis([0, 0, 1], math.pi)])
    prims = fit_prims(prims, (260, 110, 90), 7.0, rng)
    return union_model(prims, 7.0, rng, mass_da=660e3)


def build_vlp(rng):
    """T=3 icosahedral capsid: 12 pentamers + 20 hexamers of ~14 kDa subunits, hollow shell."""
    V = icosa_vertices()
    Vu = V / np.linalg.norm(V, axis=1, keepdims=True)
    edge = 2.0
    adj = lambda i, j: abs(np.linalg.norm(V[i] - V[j]) - edge) < 1e-6
    faces = [
        (i, j, k)
        for i in range(12)
        for j in range(i + 1, 12)
        for k in range(j + 1, 12)
        if adj(i, j) and adj(j, k) and adj(i, k)
    ]
    assert len(faces) == 20
    r_mid = 119.0
    prims = []

    def capsomer(axis, ref, n, ring_r, twist):
        axis = unit(axis)
        t0 = unit(ref - axis * np.dot(ref, axis))
        t1 = np.cross(axis, t0)
        for q in range(n):
            ang = twist + 2 * math.pi * q / n
            rdir = math.cos(ang) * t0 + math.sin(ang) * t1
            adir = np.cross(axis, rdir)
            Rl = np.stack([axis, rdir, adir], 1)  # local: shell-radial, ring-radial, azimuthal
            prims.append(Prim(axis * r_mid + rdir * ring_r, (17.0, 14.0, 12.5), Rl @ rot_axis([1, 0, 0], 0.35)))
            prims.append(Prim(axis * (r_mid + 12) + rdir * (ring_r - 6), (7.0, 7.0, 7.0), Rl))  # outer knob

    for i in range(12):
        nb = [j for j in range(12) if adj(i, j)][0]
        capsomer(Vu[i], Vu[nb], 5, 27.0, math.pi / 5)
    for i, j, k in faces:
        capsomer(unit(V[i] + V[j] + V[k]), Vu[i], 6, 31.0, math.pi / 6)
    m = union_model(prims, 8.0, rng, mass_da=180 * 14e3)
    m.pos *= 268.0 / m.extents().max()
    return m


TARGET_BUILDERS = {
    "apo-ferritin": build_apoferritin,
    "beta-amylase": build_beta_amylase,
    "beta-galactosidase": build_beta_galactosidase,
    "ribosome": build_ribosome,
    "thyroglobulin": build_thyroglobulin,
    "virus-like-particle": build_vlp,
}


# ---------------------------------------------------------------- clutter species
def globular_prims(rng, mass):
    nd = int(np.clip(round(rng.uniform(0.7, 1.3) * (mass / 35000.0) ** 0.6), 1, 10))
    masses = rng.dirichlet(np.full(nd, 3.0)) * mass
    prims = []
    for i in range(nd):
        r = mass_radius(masses[i])
        if i == 0:
            c = np.zeros(3)
        else:
            j = int(rng.integers(len(prims)))
            c = prims[j].c + unit(rng.normal(size=3)) * (prims[j].ax.mean() + r) * 0.75
        prims.append(domain_prim(rng, c, masses[i], aspect=0.35))
    return prims


def build_globular(rng, mass):
    return union_model(globular_prims(rng, mass), 8.0, rng, mass_da=mass)


def build_oligomer(rng, mass):
    n = int(rng.integers(2, 9))
    sub = globular_prims(rng, mass / n)
    rs = max(np.linalg.norm(p.c) + p.ax.max() for p in sub) * 0.75
    ring = rs / math.sin(math.pi / n) if n > 2 else rs
    R0 = random_rotation(rng)
    sub = [p.moved(R0, (ring, 0, 0)) for p in sub]
    prims = sym_prims(sub, [rot_axis([0, 0, 1], 2 * math.pi * k / n) for k in range(n)])
    return union_model(prims, 8.0, rng, mass_da=mass)


def build_ring_stack(rng, n_fold, n_rings, ring_r, sub_axes, sub_mass, spacing_z):
    prims = []
    R0 = rot_axis([1, 1, 0], 0.3)
    for r in range(n_rings):
        z = (r - (n_rings - 1) / 2) * spacing_z
        for k in range(n_fold):
            Rk = rot_axis([0, 0, 1], 2 * math.pi * (k + 0.5 * (r % 2)) / n_fold)
            prims.append(Prim(Rk @ np.array([ring_r, 0, 0]) + np.array([0, 0, z]), sub_axes, Rk @ R0))
    return union_model(prims, 7.0, rng, mass_da=n_fold * n_rings * sub_mass)


def build_cage60(rng):
    """Lumazine-synthase-like 60-mer cage (~150 A), a decoy resembling small hollow shells."""
    sub = [Prim(unit([0.2, 0.55, 1.0]) * 62.0, (17, 13, 12), random_rotation(rng))]
    return union_model(sym_prims(sub, icosahedral_group()), 7.0, rng, mass_da=60 * 16e3)


_LIB = {}


def template_library():
    """Fixed (seed-independent) structures: the same molecules appear in every run."""
    if _LIB:
        return _LIB
    t = {}
    for i, (name, _) in enumerate(CLASSES):
        t[name] = TARGET_BUILDERS[name](np.random.default_rng(1000 + i))
    clutter = []
    rng = np.random.default_rng(4242)
    for i in range(22):
        mass = float(np.exp(rng.uniform(np.log(3e4), np.log(1.2e6))))
        if i % 3 == 2:
            clutter.append(("oligomer%d" % i, build_oligomer(rng, mass)))
        else:
            clutter.append(("globular%d" % i, build_globular(rng, mass)))
    clutter.append(("chaperonin", build_ring_stack(rng, 7, 2, 46.0, (20, 17, 34), 57000.0, 74.0)))
    clutter.append(("proteasome", build_ring_stack(rng, 7, 4, 38.0, (17, 15, 16), 25000.0, 34.0)))
    clutter.append(("cage60", build_cage60(rng)))
    _LIB["targets"] = t
    _LIB["clutter"] = clutter
    _LIB["membrane"] = [
        build_globular(np.random.default_rng(900 + i), m) for i, m in enumerate((6e4, 1.2e5, 2.5e5, 4e5))
    ]
    return _LIB


def build_filament(rng, length):
    """Actin-like double-stranded helical filament along local x (42 kDa subunits), slightly bent."""
    n = int(length / 27.5)
    curv = rng.uniform(-1, 1) / 3000.0
    pos, w = [], []
    for k in range(n):
        x = k * 27.5 - length / 2
        phi = k * math.radians(-166.6)
        for rr in (14.0, 28.0):
            for dx in (-6.0, 6.0):
                pos.append([x + dx, rr * math.cos(phi) + curv * x * x, rr * math.sin(phi)])
                w.append(10500.0 * K_PROT)
    return Model(np.array(pos), np.full(len(pos), 7.0), np.array(w))


# ================================================================ rendering
def splat(vol, pos_zyx, sig, w, budget=2.5e7):
    """Add Gaussian blobs (voxel-integrated with erf) to vol. pos in voxel units (z,y,x)."""
    N = len(w)
    if N == 0:
        return
    lo = np.floor((pos_zyx - 3.5 * sig[:, None]).min(0)).astype(int)
    hi = np.ceil((pos_zyx + 3.5 * sig[:, None]).max(0)).astype(int) + 1
    lo_c = np.maximum(lo, 0)
    hi_c = np.minimum(hi, vol.shape)
    if np.any(hi_c <= lo_c):
        return
    nbox = np.prod(hi_c - lo_c)
    if nbox * N > budget and N > 8:
        ax = int(np.argmax(np.ptp(pos_zyx, 0)))
        order = np.argsort(pos_zyx[:, ax])
        h = N // 2
        for sel in (order[:h], order[h:]):
            splat(vol, pos_zyx[sel], sig[sel], w[sel], budget)
        return
    s2 = (sig * math.sqrt(2))[:, None]
    gs = []
    for a in range(3):
        c = np.arange(lo_c[a], hi_c[a], dtype=float)[None, :]
        p = pos_zyx[:, a : a + 1]
        gs.append(0.5 * (erf((c + 0.5 - p) / s2) - erf((c - 0.5 - p) / s2)))
    gz, gy, gx = gs
    gz = gz * w[:, None]
    tmp = (gz[:, :, None] * gy[:, None, :]).reshape(N, -1)
    box = (tmp.T @ gx).reshape(gz.shape[1], gy.shape[1], gx.shape[1])
    vol[lo_c[0] : hi_c[0], lo_c[1] : hi_c[1], lo_c[2] : hi_c[2]] += box.astype(np.float32)


def render_model(vol, model, R, centre_zyx, rng, jitter=0.8, scale_var=0.015):
    s = 1.0 + rng.normal(scale=scale_var)
    P = (model.pos * s + rng.normal(scale=jitter, size=model.pos.shape)) @ R.T
    pz = np.asarray(centre_zyx, float) + P[:, ::-1] / VS
    w = model.weight * rng.uniform(0.96, 1.04) / VS**3  # -> mean potential in voxel (V)
    splat(vol, pz, model.sigma / VS, w)


def smooth_field_2d(rng, shape, sigma):
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return f / (f.std() + 1e-12)


# ================================================================ scene
class Scene:
    def __init__(self, cap=8192):
        self.c = np.zeros((cap, 3))
        self.r = np.zeros(cap)
        self.n = 0
        self.ves = []  # (centre zyx vox, semi-axes zyx vox)

    def free(self, c, r, fac=0.9, ves_margin=3.2):
        if self.n:
            d = np.linalg.norm(self.c[: self.n] - c, axis=1)
            if np.any(d < fac * (self.r[: self.n] + r)):
                return False
        for vc, va in self.ves:
            q = (c - vc) / va
            rho = np.linalg.norm(q)
            dist = abs(rho - 1.0) * np.linalg.norm(c - vc) / max(rho, 1e-6)
            if dist < r + ves_margin:
                return False
        return True

    def add(self, c, r):
        self.c[self.n] = c
        self.r[self.n] = r
        self.n += 1


class Slab:
    def __init__(self, rng, D, H, Ww, frac):
        self.D, self.H, self.W = D, H, Ww
        T = frac * D
        room = max(D - T - 2, 0)
        zc = (D - 1) / 2 + rng.uniform(-0.4, 0.4) * room / 2
        slope = math.tan(math.radians(rng.uniform(-2.5, 2.5)))
        yy = np.arange(H)[:, None] - (H - 1) / 2
        amp = rng.uniform(0.0, 0.05) * T
        u1 = smooth_field_2d(rng, (H, Ww), rng.uniform(12, 40)) * amp
        u2 = smooth_field_2d(rng, (H, Ww), rng.uniform(12, 40)) * amp
        self.top = np.clip(zc + T / 2 + slope * yy + u1, 1.0, D - 2.0)
        self.bot = np.clip(zc - T / 2 + slope * yy + u2, 1.0, D - 2.0)
        bad = self.top - self.bot < 0.3 * T
        mid = 0.5 * (self.top + self.bot)
        self.top = np.where(bad, mid + 0.15 * T, self.top)
        self.bot = np.where(bad, mid - 0.15 * T, self.bot)
        self.zmid = float(mid.mean())

    def at(self, y, x):
        iy = int(np.clip(round(y), 0, self.H - 1))
        ix = int(np.clip(round(x), 0, self.W - 1))
        return self.bot[iy, ix], self.top[iy, ix]

    def mask(self):
        z = np.arange(self.D, dtype=np.float32)[:, None, None]
        return (np.clip(z - self.bot[None] + 0.5, 0, 1) * np.clip(self.top[None] - z + 0.5, 0, 1)).astype(np.float32)


def random_point(rng, slab, r_vox, H, Ww, surface=None):
    y = rng.uniform(-0.3 * r_vox, H - 1 + 0.3 * r_vox)
    x = rng.uniform(0, Ww - 1)
    zb, zt = slab.at(y, x)
    half = (zt - zb) / 2
    m = min(1.0 * r_vox, half - 0.5)
    if surface == "top":
        z = zt - m - rng.uniform(0, 1.5)
    elif surface == "bottom":
        z = zb + m + rng.uniform(0, 1.5)
    else:
        z = rng.uniform(zb + m, zt - m)
    return np.array([z, y, x])


# ================================================================ imaging
def tilt_scheme(rng):
    step = float(rng.choice([2.0, 2.5, 3.0]))
    tmax = rng.uniform(54, 66)
    tmin = -rng.uniform(54, 66)
    angles = np.concatenate([-np.arange(0, -tmin + 1e-6, step)[::-1][:-1], np.arange(0, tmax + 1e-6, step)])
    scheme = str(rng.choice(["dose-symmetric", "bidirectional", "linear"]))
    order_idx = np.arange(len(angles))
    if scheme == "dose-symmetric":
        group = int(rng.choice([1, 2, 3]))
        i0 = int(np.argmin(np.abs(angles)))
        pos = list(range(i0 + 1, len(angles)))
        neg = list(range(i0 - 1, -1, -1))
        order = [i0]
        side = 1
        while pos or neg:
            src = pos if side > 0 else neg
            order += src[:group]
            del src[:group]
            side = -side
        order_idx = np.array(order)
    elif scheme == "bidirectional":
        start = rng.uniform(-20, 0)
        i0 = int(np.argmin(np.abs(angles - start)))
        order_idx = np.array(list(range(i0, len(angles))) + list(range(i0 - 1, -1, -1)))
    elif rng.random() < 0.5:
        order_idx = order_idx[::-1]
    return angles, order_idx, scheme, step


def proj_matrix(theta_deg, D, Wsrc, Nu, x_offset, cx, cz, cu, os_=1):
    """Sparse voxel-driven projector: rows detector u (Nu), cols voxel z*Wsrc + x."""
    th = math.radians(theta_deg)
    c, s = math.cos(th), math.sin(th)
    z, x = np.meshgrid(np.arange(D, dtype=np.float64), np.arange(Wsrc, dtype=np.float64), indexing="ij")
    col = (np.arange(D)[:, None] * Wsrc + np.arange(Wsrc)[None, :]).ravel()
    z = z.ravel()
    x = x.ravel()
    offs = (np.arange(os_) + 0.5) / os_ - 0.5
    rows, cols, vals = [], [], []
    for oz in offs:
        for ox in offs:
            u = cu + (x + x_offset + ox - cx) * c - (z + oz - cz) * s
            i0 = np.floor(u).astype(np.int64)
            f = u - i0
            for ii, ww in ((i0, 1 - f), (i0 + 1, f)):
                ok = (ii >= 0) & (ii < Nu)
                rows.append(ii[ok])
                cols.append(col[ok])
                vals.append(ww[ok] / os_**2)
    return sparse.csr_matrix(
        (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))), shape=(Nu, D * Wsrc)
    )


def damage_filter(k, cum_dose):
    """Grant & Grigorieff-style critical-exposure attenuation (k in 1/A)."""
    with np.errstate(divide="ignore"):
        ne = 0.245 * np.power(np.maximum(k, 1e-6), -1.665) + 2.81
    return np.exp(-cum_dose / (2 * ne))


def chi(kx, ky, df, astig, astig_ang):
    k2 = kx**2 + ky**2
    ang = np.arctan2(ky, kx)
    dfl = df + astig * np.cos(2 * (ang - astig_ang))
    return math.pi * LAMBDA * dfl * k2 - 0.5 * math.pi * CS * LAMBDA**3 * k2**2


# ================================================================ one run
def draw_params(rng):
    p = {}
    p["defocus_um"] = float(rng.uniform(2.0, 5.0))
    p["astig_um"] = float(rng.uniform(0.0, 0.15))
    p["astig_angle_deg"] = float(rng.uniform(0, 180))
    p["amplitude_contrast"] = float(rng.uniform(0.06, 0.09))
    p["total_dose"] = float(rng.uniform(60, 140))
    p["dose_tilt_exponent"] = float(rng.uniform(0, 1))
    p["bfactor"] = float(rng.uniform(40, 250))
    p["illum_semiangle_mrad"] = float(rng.uniform(0.005, 0.05))
    p["ice_fraction"] = float(rng.uniform(0.5, 0.9))
    p["inelastic_mfp_A"] = float(rng.uniform(2800, 3800))
    p["ice_texture_rel"] = float(rng.uniform(0.03, 0.07))
    p["ice_texture_corr_vox"] = float(rng.uniform(0.7, 1.5))
    p["film_coverage"] = [float(rng.uniform(0.05, 0.6)), float(rng.uniform(0.05, 0.6))]
    p["film_potential_V"] = float(rng.uniform(0.4, 1.5))
    p["crowding"] = float(np.exp(rng.uniform(np.log(0.5), np.log(1.35))))
    p["clutter"] = float(rng.uniform(0.3, 1.5))
    p["n_gold_per_ref"] = int(rng.integers(0, 4))
    p["align_err_px"] = float(rng.uniform(0.15, 0.9))
    p["angle_err_deg"] = float(rng.uniform(0.03, 0.3))
    p["ctf_correction"] = str(rng.choice(["none", "phaseflip"]))
    p["defocus_est_err_um"] = float(rng.normal(scale=0.08))
    p["sirt_like_iters"] = int(rng.choice([0, 0, 6, 12, 25]))
    p["ramp_cutoff"] = float(rng.uniform(0.33, 0.5))
    p["post_gauss_sigma"] = float(rng.uniform(0.3, 1.3))
    p["denoiser"] = str(rng.choice(["none", "median", "adaptive-wiener"], p=[0.3, 0.2, 0.5]))
    p["wiener_window"] = int(rng.choice([3, 5]))
    p["wiener_strength"] = float(rng.uniform(0.7, 1.6))
    p["output_scale"] = float(np.exp(rng.uniform(np.log(4e-6), np.log(3e-5))))
    p["output_offset_sd"] = float(rng.uniform(-3, 3))
    return p


def simulate_run(shape, rng):
    D, H, W = shape
    lib = template_library()
    P = draw_params(rng)
    pad = max(8, int(round(0.125 * W)))
    Ww = W + 2 * pad
    P["x_pad_vox"] = pad
    slab = Slab(rng, D, H, Ww, P["ice_fraction"])
    slab_vox = float((slab.top - slab.bot).sum())
    vr = slab_vox / REF_SLAB_VOXELS
    area_r = H * Ww / (256.0 * 320.0)
    scene = Scene()
    pot = np.zeros((D, H, Ww), np.float32)
    tstart = time.time()

    # ---- vesicles (placed first: large)
    n_ves = rng.poisson(P["clutter"] * 0.9 * area_r)
    vesicles = []
    for _ in range(n_ves):
        for _t in range(50):
            R = rng.uniform(150, 650) / VS
            y, x = rng.uniform(0, H - 1), rng.uniform(0, Ww - 1)
            zb, zt = slab.at(y, x)
            half = (zt - zb) / 2
            rz = min(R, half - 3.5)
            if rz < 8:
                continue
            z = rng.uniform(zb + rz + 3, zt - rz - 3) if zt - zb > 2 * rz + 6 else (zb + zt) / 2
            c = np.array([z, y, x])
            ax = np.array([rz, R, R])
            if all(np.linalg.norm(c - vc) > va.max() + R + 5 for vc, va in scene.ves):
                scene.ves.append((c, ax))
                vesicles.append((c, ax))
                break
    for c, ax in vesicles:
        lo = np.maximum(np.floor(c - ax - 5).astype(int), 0)
        hi = np.minimum(np.ceil(c + ax + 6).astype(int), pot.shape)
        zz, yy, xx = np.meshgrid(*[np.arange(lo[i], hi[i]) for i in range(3)], indexing="ij")
        q = np.stack([zz - c[0], yy - c[1], xx - c[2]], 0)
        rho = np.sqrt(((q / ax[:, None, None, None]) ** 2).sum(0))
        rr = np.sqrt((q**2).sum(0))
        d = (rho - 1) * rr / np.maximum(rho, 1e-6) * VS  # signed distance to mid-plane (A)
        prof = (
            1.3 * np.exp(-((d - 19) ** 2) / (2 * 6.5**2))
            + 1.3 * np.exp(-((d + 19) ** 2) / (2 * 6.5**2))
            - 0.45 * np.exp(-(d**2) / (2 * 9.0**2))
        )
        pot[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] += prof.astype(np.float32)

    # ---- gold beads (near the ice surfaces), analytic projection later
    golds = []
    n_gold = rng.poisson(P["n_gold_per_ref"] * area_r)
    for _ in range(n_gold):
        Rg = rng.uniform(42, 60)
        for _t in range(50):
            c = random_point(rng, slab, Rg / VS, H, Ww, surface=str(rng.choice(["top", "bottom"])))
            if scene.free(c, Rg / VS):
                scene.add(c, Rg / VS)
                golds.append((c, Rg))
                break

    # ---- targets, biggest first
    labels = {name: [] for name, _ in CLASSES}
    order = sorted(CLASSES, key=lambda t: -t[1])
    placed = []
    for name, rad in order:
        lam = BASE_COUNTS[name] * P["crowding"] * vr * float(np.exp(rng.normal(0, 0.3)))
        n = rng.poisson(lam)
        r_vox = rad / VS
        for _ in range(n):
            for _t in range(300):
                c = random_point(rng, slab, r_vox, H, Ww)
                if scene.free(c, r_vox):
                    scene.add(c, r_vox)
                    R = random_rotation(rng)
                    render_model(pot, lib["targets"][name], R, c, rng)
                    placed.append((name, c, R))
                    break

    # ---- clutter proteins
    clut = lib["clutter"]
    masses = np.array([np.abs(m.weight).sum() for _, m in clut])
    pw = masses**-0.4
    sel_species = rng.choice(len(clut), size=min(len(clut), int(rng.integers(8, 16))), replace=False, p=pw / pw.sum())
    n_cl = rng.poisson(P["clutter"] * 55 * vr)
    counts_clutter = 0
    for _ in range(n_cl):
        sp = int(rng.choice(sel_species))
        m = clut[sp][1]
        r_vox = m.radius() / VS
        surf = str(rng.choice(["top", "bottom"])) if rng.random() < 0.25 else None
        for _t in range(60):
            c = random_point(rng, slab, r_vox, H, Ww, surface=surf)
            if scene.free(c, r_vox, fac=0.85):
                scene.add(c, r_vox * 0.85)
                render_model(pot, m, random_rotation(rng), c, rng)
                counts_clutter += 1
                break

    # ---- filaments
    n_fil = rng.poisson(P["clutter"] * 0.8 * vr)
    for _ in range(n_fil):
        L = rng.uniform(200, 1200)
        fil = build_filament(rng, L)
        for _t in range(60):
            yaw = rng.uniform(0, 2 * math.pi)
            pitch = math.radians(rng.uniform(-12, 12))
            R = rot_axis([0, 0, 1], yaw) @ rot_axis([0, 1, 0], pitch) @ rot_axis([1, 0, 0], rng.uniform(0, 2 * math.pi))
            c = random_point(rng, slab, 4.0, H, Ww)
            xs = np.arange(-L / 2, L / 2 + 1, 55.0)
            pts = c + (np.stack([xs, 0 * xs, 0 * xs], 1) @ R.T)[:, ::-1] / VS
            ok = True
            for p in pts:
                zb, zt = slab.at(p[1], p[2])
                if not (zb + 3 < p[0] < zt - 3) or not scene.free(p, 3.8):
                    ok = False
                    break
            if ok:
                for p in pts:
                    scene.add(p, 3.8)
                render_model(pot, fil, R, c, rng, scale_var=0.0)
                break

    # ---- membrane proteins on vesicles
    for vc, va in vesicles:
        k = rng.poisson(va[1] * VS / 60.0 * P["clutter"])
        for _ in range(k):
            m = lib["membrane"][int(rng.integers(len(lib["membrane"])))]
            rp = m.radius() / VS
            nrm = unit(rng.normal(size=3))
            surf = vc + nrm * va
            c = surf + unit(nrm / va) * (rp * 0.7 + 1.5)
            zb, zt = slab.at(c[1], c[2])
            if zb + rp * 0.7 < c[0] < zt - rp * 0.7 and scene.free(c, rp, fac=0.85, ves_margin=-rp):
                scene.add(c, rp)
                render_model(pot, m, random_rotation(rng), c, rng)

    # ---- amorphous ice density texture and air-water-interface protein film
    mask = slab.mask()
    tex = rng.standard_normal(pot.shape).astype(np.float32)
    tex = ndimage.gaussian_filter(tex, P["ice_texture_corr_vox"])
    tex *= P["ice_texture_rel"] * V_ICE / (tex.std() + 1e-12)
    pot += tex * mask
    del tex
    z = np.arange(D, dtype=np.float32)[:, None, None]
    for surf, cov in zip((slab.top, slab.bot), P["film_coverage"]):
        if cov <= 0.01:
            continue
        f = smooth_field_2d(rng, (H, Ww), rng.uniform(2, 6))
        thr = np.quantile(f, 1 - cov)
        patch = np.clip((f - thr) * 2.0, 0, 1).astype(np.float32)
        zs = (surf - 1.0 if surf is slab.top else surf + 1.0).astype(np.float32)
        pot += P["film_potential_V"] * patch[None] * np.exp(-((z - zs[None]) ** 2) / (2 * 0.8**2))
    pot *= mask  # nothing lives outside the ice
    t_scene = time.time() - tstart

    # ================= tilt series
    angles, order_idx, scheme, step = tilt_scheme(rng)
    T = len(angles)
    P.update(tilt_scheme=scheme, tilt_step=step, tilt_min=float(angles[0]), tilt_max=float(angles[-1]), n_tilts=T)
    dose_w = (1.0 / np.cos(np.radians(angles))) ** P["dose_tilt_exponent"]
    dose = dose_w / dose_w.sum() * P["total_dose"]
    cum = np.zeros(T)
    acc = 0.0
    for i in order_idx:
        cum[i] = acc + 0.5 * dose[i]
        acc += dose[i]
    ang_true = angles + rng.normal(scale=P["angle_err_deg"], size=T)
    shifts = rng.normal(scale=P["align_err_px"], size=(T, 2))
    Nu = Ww
    cx, cz, cu = (Ww - 1) / 2, (D - 1) / 2, (Nu - 1) / 2

    M = np.ascontiguousarray(pot.transpose(0, 2, 1).reshape(D * Ww, H))
    del pot
    Thick = (slab.top - slab.bot) * VS  # (H, Ww) angstrom
    # imaging grids (padded)
    pe = 16
    Hy, Ux = H + 2 * pe, Nu + 2 * pe
    ky = np.fft.fftfreq(Hy, d=VS)[:, None]
    kx = np.fft.fftfreq(Ux, d=VS)[None, :]
    kk = np.sqrt(kx**2 + ky**2)
    ac = P["amplitude_contrast"]
    a_im = ac / math.sqrt(1 - ac**2)
    df0 = P["defocus_um"] * 1e4
    ast = P["astig_um"] * 1e4
    asta = math.radians(P["astig_angle_deg"])
    alpha = P["illum_semiangle_mrad"] * 1e-3
    Es = np.exp(-((math.pi * alpha / LAMBDA) ** 2) * (CS * LAMBDA**3 * kk**3 - df0 * LAMBDA * kk) ** 2)
    EB = np.exp(-P["bfactor"] * kk**2 / 4)
    Lmfp = P["inelastic_mfp_A"]
    # reconstruction filters (2D rfft along u padded to 2*Nu)
    Up = 2 * Nu
    fu = np.fft.rfftfreq(Up)[None, :]  # cycles / pixel
    fy = np.fft.fftfreq(H)[:, None]
    if P["sirt_like_iters"] > 0:
        wr = 1 - (1 - np.minimum(2 * np.abs(fu), 1.0) * 0.5) ** P["sirt_like_iters"]
    else:
        wr = np.abs(fu) / 0.5
    wr = np.maximum(wr, 0.02 / Up) * 1.0
    fc = P["ramp_cutoff"]
    roll = np.where(
        np.abs(fu) > fc, 0.5 * (1 + np.cos(math.pi * np.clip((np.abs(fu) - fc) / (0.5 - fc + 1e-9), 0, 1))), 1.0
    )
    wr = wr * roll
    kyr = np.fft.fftfreq(H, d=VS)[:, None]
    kur = np.fft.rfftfreq(Up, d=VS)[None, :]
    df_est = df0 + P["defocus_est_err_um"] * 1e4

    Bcols = []
    G = np.zeros((T, Nu, H), np.float32)
    yy_det = np.arange(H)[:, None].astype(float)
    uu_det = np.arange(Nu)[None, :].astype(float)
    for i in range(T):
        th = ang_true[i]
        A = proj_matrix(th, D, Ww, Nu, 0.0, cx, cz, cu, os_=2)
        Phi = (A @ M).T * VS  # (H, Nu) projected excess potential, V*A
        c_, s_ = math.cos(math.radians(th)), math.sin(math.radians(th))
        # analytic ice: path length through the (laterally unbounded) slab
        xm = cx + ((uu_det[0] - cu) + (slab.zmid - cz) * s_) / c_
        xm = np.clip(xm, 0, Ww - 1)
        x0 = np.floor(xm).astype(int)
        x1 = np.minimum(x0 + 1, Ww - 1)
        fx = xm - x0
        path = (Thick[:, x0] * (1 - fx) + Thick[:, x1] * fx) / c_
        phase = SIGMA_I * (Phi + V_ICE * (path - path.mean()))
        absb = Phi / (V_ICE * Lmfp) + path / Lmfp
        amp_term = a_im * SIGMA_I * Phi
        # gold beads
        for gc, Rg in golds:
            uc = cu + (gc[2] - cx) * c_ - (gc[0] - cz) * s_
            yc = gc[1]
            rpx = Rg / VS + 1
            y0, y1 = int(max(0, np.floor(yc - rpx))), int(min(H, np.ceil(yc + rpx) + 1))
            u0, u1 = int(max(0, np.floor(uc - rpx))), int(min(Nu, np.ceil(uc + rpx) + 1))
            if y1 <= y0 or u1 <= u0:
                continue
            sub = (np.arange(3) + 0.5) / 3 - 0.5
            yv = (np.arange(y0, y1)[:, None] + sub[None, :]).ravel()
            uv = (np.arange(u0, u1)[:, None] + sub[None, :]).ravel()
            r2 = ((yv[:, None] - yc) ** 2 + (uv[None, :] - uc) ** 2) * VS**2
            ch = 2 * np.sqrt(np.maximum(Rg**2 - r2, 0))
            ch = ch.reshape(y1 - y0, 3, u1 - u0, 3).mean((1, 3))
            phase[y0:y1, u0:u1] += SIGMA_I * V_AU_EXCESS * ch
            absb[y0:y1, u0:u1] += (MU_AU - 1 / Lmfp) * ch
        psi = np.exp(1j * phase - amp_term - 0.5 * absb)
        psi = np.pad(psi, pe, mode="reflect")
        Psi = np.fft.fft2(psi) * Es
        # defocus strips along the tilted specimen (defocus gradient perpendicular to tilt axis)
        half_span = (Nu / 2) * VS * abs(s_ / c_)
        if half_span > 800:
            dfs = [df0 - half_span * np.sign(s_), df0, df0 + half_span * np.sign(s_)]
            pos = [0.0, cu, Nu - 1.0]
        else:
            dfs, pos = [df0], [cu]
        imgs = []
        for dfv in dfs:
            Hc = np.exp(1j * chi(kx, ky, dfv, ast, asta))
            imgs.append(np.abs(np.fft.ifft2(Psi * Hc)) ** 2)
        if len(imgs) == 1:
            I = imgs[0]
        else:
            uf = np.arange(Ux) - pe
            w2 = np.clip(np.abs(uf - cu) / cu, 0, 1)[None, :]
            left = uf[None, :] < cu
            I = np.where(left, imgs[0] * w2 + imgs[1] * (1 - w2), imgs[2] * w2 + imgs[1] * (1 - w2))
        filt = EB * damage_filter(kk, cum[i])
        I = np.real(np.fft.ifft2(np.fft.fft2(I) * filt))[pe : pe + H, pe : pe + Nu]
        N0 = dose[i] * VS**2 * rng.uniform(0.97, 1.03)
        counts = rng.poisson(np.maximum(I, 0) * N0).astype(np.float64)
        g = counts / counts.mean() - 1.0
        # reconstruction-side processing: shifts, phase flip, weighting
        Gf = np.fft.rfft2(np.pad(g, ((0, 0), (0, Up - Nu))))
        Gf *= np.exp(-2j * math.pi * (fy * shifts[i, 0] + fu * shifts[i, 1]))
        if P["ctf_correction"] == "phaseflip":
            ctf_est = np.sin(chi(kur, kyr, df_est, ast, asta)) + a_im * np.cos(chi(kur, kyr, df_est, ast, asta))
            Gf *= np.sign(ctf_est + 1e-12)
        Gf *= wr
        gf = np.fft.irfft2(Gf, s=(H, Up))[:, :Nu]
        G[i] = gf.T.astype(np.float32)
        Bcols.append(proj_matrix(angles[i], D, W, Nu, float(pad), cx, cz, cu, os_=1).T.tocsr())
    del M
    t_proj = time.time() - tstart - t_scene

    # ================= weighted back-projection (all tilts at once; even/odd halves kept
    # separately so that the denoiser can estimate the noise level)
    halves = []
    for par in (0, 1):
        Bh = sparse.hstack(Bcols[par::2]).tocsr()
        Gh = np.ascontiguousarray(G[par::2]).reshape(-1, H)
        r = (Bh @ Gh).reshape(D, W, H).transpose(0, 2, 1)
        halves.append(np.ascontiguousarray(r, dtype=np.float32) * np.float32(math.pi / T))
    del G, Bcols
    rec = halves[0] + halves[1]
    noise = halves[0] - halves[1]
    del halves
    if P["denoiser"] == "median":
        rec = ndimage.median_filter(rec, size=3)
    if P["post_gauss_sigma"] > 0:
        rec = ndimage.gaussian_filter(rec, P["post_gauss_sigma"])
        noise = ndimage.gaussian_filter(noise, P["post_gauss_sigma"])
    if P["denoiser"] == "adaptive-wiener":
        # local (Lee / scipy-wiener style) shrinkage towards the local mean, with the noise
        # variance measured from the even/odd difference volume
        nv = float(noise.var()) * P["wiener_strength"]
        win = P["wiener_window"]
        mu = ndimage.uniform_filter(rec, win)
        var = np.maximum(ndimage.uniform_filter(rec * rec, win) - mu * mu, 1e-30)
        rec = mu + np.maximum(var - nv, 0) / var * (rec - mu)
    del noise
    sd = float(rec.std())
    rec = (rec - rec.mean()) / (sd + 1e-20)
    rec = rec * P["output_scale"] + P["output_offset_sd"] * P["output_scale"]
    rec = rec.astype(np.float32)

    # ================= labels (only centres inside the output volume)
    for name, c, R in placed:
        iz, iy, ix = c[0], c[1], c[2] - pad
        if 0 <= iz <= D - 1 and 0 <= iy <= H - 1 and 0 <= ix <= W - 1:
            labels[name].append((ix * VS, iy * VS, iz * VS, R))
    P["counts_labelled"] = {k: len(v) for k, v in labels.items()}
    P["counts_placed_world"] = {name: sum(1 for n, _, _ in placed if n == name) for name, _ in CLASSES}
    P["n_clutter_proteins"] = counts_clutter
    P["n_vesicles"] = len(vesicles)
    P["n_gold"] = len(golds)
    P["n_filaments_requested"] = int(n_fil)
    P["timing_s"] = {
        "scene": round(t_scene, 2),
        "tilt_series": round(t_proj, 2),
        "recon": round(time.time() - tstart - t_scene - t_proj, 2),
    }
    return rec, labels, P


# ================================================================ output
def bin2(a):
    s = [n // 2 * 2 for n in a.shape]
    a = a[: s[0], : s[1], : s[2]]
    return a.reshape(s[0] // 2, 2, s[1] // 2, 2, s[2] // 2, 2).mean((1, 3, 5)).astype(np.float32)


def write_zarr(path, vol):
    import zarr

    try:
        import numcodecs

        comp = numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.BITSHUFFLE)
    except Exception:  # pragma: no cover - fall back to zarr's default codec
        comp = "auto"
    g = zarr.open_group(str(path), mode="w", zarr_format=2)
    levels = [vol]
    levels.append(bin2(levels[-1]))
    levels.append(bin2(levels[-1]))
    for i, a in enumerate(levels):
        g.create_array(str(i), data=a, chunks=tuple(min(64, n) for n in a.shape), compressors=comp)
    ax = [{"name": n, "type": "space", "unit": "angstrom"} for n in ("z", "y", "x")]
    ds = [
        {"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": [VS * 2**i] * 3}]} for i in range(3)
    ]
    g.attrs["multiscales"] = [{"axes": ax, "datasets": ds, "name": "denoised", "version": "0.4"}]


def picks_json(run, name, pts):
    points = []
    for k, (x, y, z, R) in enumerate(pts):
        Tm = np.eye(4)
        Tm[:3, :3] = R
        points.append(
            {
                "location": {"x": float(x), "y": float(y), "z": float(z)},
                "transformation_": Tm.tolist(),
                "instance_id": k,
            }
        )
    return {
        "pickable_object_name": name,
        "user_id": "curation",
        "session_id": "0",
        "run_name": run,
        "voxel_spacing": None,
        "unit": "angstrom",
        "trust_orientation": True,
        "points": points,
    }


def run_paths(root, run):
    st = Path(root) / "train" / "static" / "ExperimentRuns" / run
    ov = Path(root) / "train" / "overlay" / "ExperimentRuns" / run
    return st, ov


def run_complete(root, run):
    st, ov = run_paths(root, run)
    if not (st / "VoxelSpacing10.000" / "denoised.zarr" / ".zattrs").exists():
        return False
    return all((ov / "Picks" / ("%s.json" % n)).exists() for n, _ in CLASSES)


def generate_run(root, run, seed, k, shape):
    rng = np.random.default_rng([seed, k])
    vol, labels, P = simulate_run(shape, rng)
    P.update(run=run, seed=seed, run_index=k, shape=list(shape), voxel_size=VS)
    for stale in (Path(root) / "train").glob(".tmp_%s_*" % run):  # left by a killed process
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(root) / "train" / (".tmp_%s_%d" % (run, os.getpid()))
    tst, tov = tmp / "static", tmp / "overlay"
    write_zarr(tst / "VoxelSpacing10.000" / "denoised.zarr", vol)
    (tst / "params.json").write_text(json.dumps(P, indent=1))
    (tov / "Picks").mkdir(parents=True)
    for name, _ in CLASSES:
        (tov / "Picks" / ("%s.json" % name)).write_text(json.dumps(picks_json(run, name, labels[name])))
    st, ov = run_paths(root, run)
    st.parent.mkdir(parents=True, exist_ok=True)
    ov.parent.mkdir(parents=True, exist_ok=True)
    for d in (st, ov):
        if d.exists():
            shutil.rmtree(d)
    os.rename(tst, st)
    os.rename(tov, ov)  # overlay last: its presence marks completion
    shutil.rmtree(tmp, ignore_errors=True)
    return P


# ================================================================ self-check
def self_check(root):
    """Read every run back; average sub-volumes at labelled positions (and at +30 voxels in x)."""
    import zarr

    base = Path(root) / "train" / "static" / "ExperimentRuns"
    runs = sorted(p.name for p in base.iterdir() if p.is_dir())
    acc = {}
    for run in runs:
        g = zarr.open_group(str(base / run / "VoxelSpacing10.000" / "denoised.zarr"), mode="r")
        a0 = g["0"][:]
        shp = [g[str(i)].shape for i in range(3)]
        ms = g.attrs["multiscales"][0]
        sc = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
        print(
            "%s shapes %s scales %s axes %s std %.3g mean %.3g"
            % (run, shp, [[round(v, 6) for v in s_] for s_ in sc], [x["name"] for x in ms["axes"]], a0.std(), a0.mean())
        )
        mu, sd = a0.mean(), a0.std()
        ov = Path(root) / "train" / "overlay" / "ExperimentRuns" / run / "Picks"
        for name, rad in CLASSES:
            box = int(math.ceil(rad / VS)) + 5
            pts = json.loads((ov / ("%s.json" % name)).read_text())["points"]
            for shift in (0, 30):
                for p in pts:
                    c = np.array([p["location"]["z"], p["location"]["y"], p["location"]["x"]]) / VS
                    c[2] += shift
                    ci = np.round(c).astype(int)
                    if np.all(ci - box >= 0) and np.all(ci + box < a0.shape):
                        sub = a0[
                            ci[0] - box : ci[0] + box + 1, ci[1] - box : ci[1] + box + 1, ci[2] - box : ci[2] + box + 1
                        ]
                        acc.setdefault((name, shift), []).append((sub - mu) / sd)
    print("values in units of the tomogram sd; centre r<=max(1.5,0.3R), ball r<=R, ring R+1..R+4 voxels")
    for name, rad in CLASSES:
        for shift in (0, 30):
            subs = acc.get((name, shift))
            if not subs:
                print("%-20s shift %2d  n=0" % (name, shift))
                continue
            av = np.mean(subs, 0)
            box = av.shape[0] // 2
            zz, yy, xx = np.meshgrid(*[np.arange(-box, box + 1)] * 3, indexing="ij")
            rr = np.sqrt(zz**2 + yy**2 + xx**2)
            R = rad / VS
            cen = av[rr <= max(1.5, 0.3 * R)].mean()
            ball = av[rr <= R].mean()
            ring = av[(rr >= R + 1) & (rr <= R + 4)].mean()
            print(
                "%-20s shift %2d  n=%3d  centre %+.2f  ball %+.2f  ring %+.2f  centre-ring %+.2f  ball-ring %+.2f"
                % (name, shift, len(subs), cen, ball, ring, cen - ring, ball - ring)
            )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shape", type=int, nargs=3, default=[96, 256, 256], metavar=("D", "H", "W"))
    ap.add_argument("--first", type=int, default=1)
    ap.add_argument("--check", action="store_true", help="only run the self-check on --out")
    a = ap.parse_args()
    if a.check:
        self_check(a.out)
        return
    for k in range(a.first, a.first + a.runs):
        run = "TS_D_%d" % k
        if run_complete(a.out, run):
            print("%s: complete, skipped" % run, flush=True)
            continue
        t0 = time.time()
        P = generate_run(a.out, run, a.seed, k, tuple(a.shape))
        print("%s: %.1f s  counts %s  (%s)" % (run, time.time() - t0, P["counts_labelled"], P["timing_s"]), flush=True)


if __name__ == "__main__":
    main()
