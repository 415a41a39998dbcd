#!/usr/bin/env python
# ruff: noqa
# A third simulator written blind (source F), for training experiments. A helper wrote this file on 2026-12-06
# without reading cryopoint's code, its simulator, sources D and E (benchmarks/blind_sim.py, blind_sim_e.py), the
# notes or the reference documents: from the CZII data contract, the six classes with their radii and a physics
# brief only. It is kept as its author wrote it (formatting only). Like source E it may be trained on; source D
# stays for evaluation only. docs/models.md ("A third blind generator") trains a stage on it.
#   python benchmarks/blind_sim_f.py --out ROOT --runs 43 --seed 1 --first 1 --shape 96 256 256
"""sim_f.py - an independent, self-contained cryo-electron-tomogram simulator ("source F").

Usage:
    python sim_f.py --out ROOT --runs N --seed S --shape D H W [--first K]

Pipeline per run (all random draws from np.random.default_rng([seed, run_index])):
  1. scene  : vitreous-ice slab (uneven, tilted) + 6 labelled particle classes + many
              distractors (globular / oligomeric / hollow / rod proteins, aggregates,
              vesicles, actin & microtubule filaments, gold beads, surface contamination,
              carbon edge).  Everything is a cloud of pseudo-atoms carrying an excess
              Coulomb potential (Volts), splatted trilinearly onto a 10.012 A grid.
  2. imaging: weak-phase tilt series at 300 kV in Fourier space (central-slice theorem):
              every tilt contributes a thin plane (with the real back-projection width)
              carrying CTF(defocus, astigmatism, amplitude contrast, optional phase plate),
              exposure-dependent radiation damage, motion blur, detector/binning MTF,
              residual alignment shifts and per-tilt shot noise (dose, zero-loss fraction,
              DQE).  Dose-symmetric acquisition, missing wedge.
  3. reconstruction: weighted back-projection equivalent (overlapping planes averaged,
              gaps beyond the Crowther limit left empty) or SIRT-like filtering, optional
              phase flipping, then "denoising" (Wiener filter built from the signal and
              noise spectra, low-/high-pass), optional soft clipping, arbitrary scale/offset.
"""

import argparse
import json
import os
import shutil
import sys
import time

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

PX = 10.012444  # A per voxel
CLASSES = ["apo-ferritin", "beta-amylase", "beta-galactosidase", "ribosome", "thyroglobulin", "virus-like-particle"]
RADIUS = {
    "apo-ferritin": 60.0,
    "beta-amylase": 65.0,
    "beta-galactosidase": 90.0,
    "ribosome": 150.0,
    "thyroglobulin": 130.0,
    "virus-like-particle": 135.0,
}
COUNTS = {
    "apo-ferritin": (2, 10),
    "beta-amylase": (0, 3),
    "beta-galactosidase": (0, 4),
    "ribosome": (1, 8),
    "thyroglobulin": (1, 6),
    "virus-like-particle": (0, 3),
}
REF_VOL = 96 * 256 * 256

# excess mean inner potentials (Volts) relative to vitreous ice (ice itself ~4 V vs vacuum)
V_ICE = 4.0
DV_PROT = 1.8
DV_RNA = 3.4
DV_HEAD = 2.4
DV_TAIL = -0.6
DV_GOLD = 22.0
V_CARBON = 9.0

# microscope constants (300 kV)
LAMBDA = 0.019687  # A
SIGMA_E = 6.526e-4  # rad / (V A)
CS = 2.7e7  # A
LAMBDA_INEL = 3500.0  # inelastic mean free path, A


# --------------------------------------------------------------------------- geometry helpers
def rand_rot(rng):
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


def grid_points(half, s, rng):
    n = int(np.ceil(2 * half / s)) + 1
    g = (np.arange(n) * s - (n - 1) * s / 2).astype(np.float32)
    P = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    P += rng.uniform(-s / 2, s / 2, P.shape).astype(np.float32)
    return P


def wave_noise(P, rng, n=8, lam=(25.0, 80.0), amp=0.1):
    """Smooth random field: sum of n random plane waves (float32)."""
    if amp <= 0:
        return np.zeros(P.shape[:-1], np.float32)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    k = ((2 * np.pi / rng.uniform(lam[0], lam[1], n))[:, None] * d).astype(np.float32)
    ph = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    out = np.zeros(P.shape[:-1], np.float32)
    for i in range(n):
        arg = P @ k[i]
        arg += ph[i]
        out += np.cos(arg)
    out *= np.float32(amp / np.sqrt(n / 2.0))
    return out


def grid_wave_noise(g, rng, n=8, lam=(25.0, 80.0), amp=0.1):
    """Same random field as wave_noise, evaluated separably on the regular grid g^3."""
    m = len(g)
    if amp <= 0:
        return np.zeros((m, m, m), np.float32)
    if m > 64:  # smooth field: evaluate on every 2nd node and repeat
        sub = grid_wave_noise(g[::2], rng, n, lam, amp)
        return np.repeat(np.repeat(np.repeat(sub, 2, 0), 2, 1), 2, 2)[:m, :m, :m]
    out = np.zeros((m, m, m), np.float32)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    k = (2 * np.pi / rng.uniform(lam[0], lam[1], n))[:, None] * d
    ph = rng.uniform(0, 2 * np.pi, n)
    for i in range(n):
        ez = np.exp(1j * (k[i, 0] * g + ph[i])).astype(np.complex64)
        ey = np.exp(1j * k[i, 1] * g).astype(np.complex64)
        ex = np.exp(1j * k[i, 2] * g).astype(np.complex64)
        out += (ez[:, None, None] * (ey[:, None] * ex[None, :])[None]).real
    out *= np.float32(amp / np.sqrt(n / 2.0))
    return out


def ellipsoids_to_points(doms, s, rng, noise_amp=0.1, lam=(25.0, 80.0), extra=None, extra_all=False):
    """doms: list of (centre, semi-axes, rotation(3x3, columns=body axes), excess potential).
    Inside/outside is decided on a regular grid of spacing s (each ellipsoid evaluated only on
    its own block, boundary roughened by a smooth random field); kept nodes are then jittered
    by +-s/2 so that they act as pseudo-atoms.  Returns body-frame points (A) and the excess
    potential of each point."""
    ext = max(
        float(np.sqrt(np.dot(c, c))) + max(a) for c, a, R, v in ((np.asarray(c, float), a, R, v) for c, a, R, v in doms)
    )
    half = ext * 1.12 + s
    n = int(np.ceil(2 * half / s)) + 1
    g0 = -(n - 1) * s / 2
    g = (np.arange(n) * s + g0).astype(np.float32)
    nzf = grid_wave_noise(g, rng, amp=noise_amp, lam=lam)
    dens = np.zeros((n, n, n), np.float32)
    for c, a, R, v in doms:
        c = np.asarray(c, np.float32)
        m = max(a) * 1.15 + s
        lo = np.clip(np.floor((c - m - g0) / s).astype(int), 0, n)
        hi = np.clip(np.ceil((c + m - g0) / s).astype(int) + 1, 0, n)
        if np.any(hi <= lo):
            continue
        sl = tuple(slice(lo[i], hi[i]) for i in range(3))
        Rm = np.asarray(R, np.float32) / np.asarray(a, np.float32)[None, :]
        gz, gy, gx = g[sl[0]] - c[0], g[sl[1]] - c[1], g[sl[2]] - c[2]
        e = np.zeros((len(gz), len(gy), len(gx)), np.float32)
        for j in range(3):
            qj = gz[:, None, None] * Rm[0, j] + (gy[:, None] * Rm[1, j] + gx[None, :] * Rm[2, j])[None]
            e += qj * qj
        d = dens[sl]
        ins = (e <= 1.0 + nzf[sl]) & (np.abs(d) < abs(v))
        d[ins] = v
    if extra is not None and extra_all:
        P = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
        P += rng.uniform(-s / 2, s / 2, P.shape).astype(np.float32)
        dens = extra(P, dens.reshape(-1))
        keep = dens != 0
        return P[keep], dens[keep]
    idx = np.nonzero(dens)
    P = np.stack([g[i] for i in idx], 1)
    P += rng.uniform(-s / 2, s / 2, P.shape).astype(np.float32)
    dens = dens[idx]
    if extra is not None:
        dens = extra(P, dens)
        keep = dens != 0
        P, dens = P[keep], dens[keep]
    return P, dens


def _orth_from(v):
    v = np.asarray(v, float)
    v = v / np.linalg.norm(v)
    a = np.array([1.0, 0, 0]) if abs(v[0]) < 0.9 else np.array([0, 1.0, 0])
    e1 = np.cross(v, a)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(v, e1)
    return v, e1, e2


def octahedral_group():
    import itertools

    G = []
    for perm in itertools.permutations(range(3)):
        for sg in itertools.product([1, -1], repeat=3):
            M = np.zeros((3, 3))
            for i in range(3):
                M[i, perm[i]] = sg[i]
            if np.linalg.det(M) > 0:
                G.append(M)
    return G


def icosa_dirs():
    p = (1 + 5**0.5) / 2
    v5 = []
    for a in (1, -1):
        for b in (p, -p):
            v5 += [(0, a, b), (a, b, 0), (b, 0, a)]
    v5 = np.array(v5, float)
    v5 /= np.linalg.norm(v5, axis=1, keepdims=True)
    # 3-fold = face centres: triples of mutually adjacent vertices
    d = v5 @ v5.T
    adj = d > 0.4
    faces = []
    for i in range(12):
        for j in range(i + 1, 12):
            for k in range(j + 1, 12):
                if adj[i, j] and adj[j, k] and adj[i, k] and i != j:
                    f = v5[i] + v5[j] + v5[k]
                    faces.append(f / np.linalg.norm(f))
    # 2-fold = edge midpoints
    edges = []
    for i in range(12):
        for j in range(i + 1, 12):
            if adj[i, j]:
                f = v5[i] + v5[j]
                edges.append(f / np.linalg.norm(f))
    return v5, np.array(faces), np.array(edges)


D2 = [np.diag([1, 1, 1.0]), np.diag([1, -1, -1.0]), np.diag([-1, 1, -1.0]), np.diag([-1, -1, 1.0])]


# --------------------------------------------------------------------------- the six particles
def _ferritin(rng, s):
    a2 = np.array([1.0, 1.0, 0]) / 2**0.5
    e1 = np.array([0, 0, 1.0])
    e2 = np.array([1.0, -1.0, 0]) / 2**0.5
    c0 = 50.0 * a2 + 8.5 * e1
    Rb = np.stack([e2, e1, a2], 1)
    doms = [(g @ c0, (32.5, 17.0, 12.5), g @ Rb, DV_PROT) for g in octahedral_group()]

    def shell(P, dens):
        r = np.linalg.norm(P, axis=1)
        return np.where((r > 36.5) & (r < 62.0), dens, 0).astype(np.float32)

    return ellipsoids_to_points(doms, s, rng, noise_amp=0.06, lam=(15, 40), extra=shell)


def _amylase(rng, s):
    Rm = rand_rot(rng)
    mono = [
        ((0, 0, 0), (28.0, 23.0, 20.0), Rm, DV_PROT),
        (Rm @ np.array([26.0, 8.0, 0]), (15.0, 12.0, 11.0), Rm, DV_PROT),
        (Rm @ np.array([-10.0, -20.0, 8.0]), (12.0, 10.0, 9.0), Rm, DV_PROT),
    ]
    cm = np.array([23.0, 17.0, 10.0])
    doms = []
    for g in D2:
        for c, a, R, v in mono:
            doms.append((g @ (cm + np.asarray(c)), a, g @ R, v))
    return ellipsoids_to_points(doms, s, rng, noise_amp=0.1, lam=(15, 45))


def _bgal(rng, s):
    cm = np.array([44.0, 30.0, 19.0])
    offs = [(0, 0, 0), (22, 12, 2), (-20, 12, 6), (6, -20, 4), (-8, -6, -8)]
    mono = []
    for o in offs:
        ax = np.array([24.5, 19.5, 18.0]) * rng.uniform(0.9, 1.1, 3)
        mono.append((cm + np.array(o, float), ax, rand_rot(rng), DV_PROT))
    doms = [(g @ c, a, g @ R, v) for g in D2 for c, a, R, v in mono]
    return ellipsoids_to_points(doms, s, rng, noise_amp=0.1, lam=(15, 45))


def _ribosome(rng, s, euk=False):
    I = np.eye(3)
    sc = 1.12 if euk else 1.0
    Rst = np.stack(_orth_from([1.0, 0.2, -0.1]), 1)
    doms = [
        ((0, 0, -30), (85, 80, 65), I, DV_RNA),  # large subunit
        ((0, 58, 30), (28, 22, 25), I, DV_RNA),  # central protuberance
        ((-82, 30, 2), (18, 15, 26), I, DV_PROT),  # L1 stalk
        ((88, 16, -4), (34, 8, 8), Rst, DV_PROT),  # L7/L12 stalk
        ((0, -18, 64), (48, 58, 29), I, DV_RNA),  # small subunit body
        ((0, 58, 70), (33, 28, 27), I, DV_RNA),  # SSU head
        ((-42, 0, 58), (20, 24, 18), I, DV_RNA),  # platform
        ((28, 76, 78), (14, 12, 12), I, DV_PROT),
    ]  # beak
    for _ in range(10):  # peripheral proteins
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        doms.append(
            (d * np.array([80, 78, 70]) + np.array([0, 0, -20]), rng.uniform(12, 20, 3), rand_rot(rng), DV_PROT)
        )
    for _ in range(5):  # inter-subunit bridges
        doms.append(((rng.uniform(-40, 40), rng.uniform(-40, 50), 30), (10, 10, 10), I, DV_RNA))
    if euk:
        for _ in range(6):  # expansion segments
            d = rng.normal(size=3)
            d[2] = -abs(d[2])
            d /= np.linalg.norm(d)
            doms.append(
                (d * np.array([82, 80, 62]) + np.array([0, 0, -30]), rng.uniform(16, 26, 3), rand_rot(rng), DV_RNA)
            )
    doms = [(np.asarray(c, float) / 1.0, np.asarray(a, float), R, v) for c, a, R, v in doms]
    nrng = np.random.default_rng(rng.integers(1 << 30))

    def post(P, dens):
        # cut inter-subunit cleft, exit tunnel, protein patches at the surface of RNA bodies
        z = P[:, 2]
        cleft = (z > 24) & (z < 36) & (np.abs(P[:, 0]) < 45) & (np.abs(P[:, 1] - 5) < 50)
        dens = np.where(cleft & (wave_noise(P, nrng, amp=1.0, lam=(20, 50)) > -0.3), 0, dens)
        a = np.array([0.0, -10.0, -125.0])
        b = np.array([0.0, 0.0, 28.0])
        ab = b - a
        t = np.clip(((P - a) @ ab) / (ab @ ab), 0, 1)
        dist = np.linalg.norm(P - (a + t[:, None] * ab), axis=1)
        dens = np.where(dist < 8.5, 0, dens)
        e_l = (((P - [0, 0, -30]) / [85, 80, 65]) ** 2).sum(1)
        e_s = (((P - [0, -18, 64]) / [48, 58, 29]) ** 2).sum(1)
        surf = np.minimum(e_l, e_s) > 0.55
        prot = surf & (wave_noise(P, nrng, amp=1.0, lam=(25, 60)) > 0.1)
        dens = np.where((dens > 0) & prot, DV_PROT, dens)
        return dens.astype(np.float32)

    P, d = ellipsoids_to_points(doms, s / sc, rng, noise_amp=0.12, lam=(20, 60), extra=post)
    P = P - P.mean(0)
    return P * sc, d


def _thyroglobulin(rng, s):
    mono = []
    n = 13
    for i, t in enumerate(np.linspace(-1, 1, n)):
        c = np.array([100 * t, 26 + 14 * np.cos(np.pi * t), 18 * np.sin(2.2 * np.pi * t)])
        ax = np.array([24.0, 21.0, 20.0]) * rng.uniform(0.85, 1.15, 3)
        mono.append((c, ax, rand_rot(rng), DV_PROT))
    C2 = np.diag([-1.0, -1.0, 1.0])
    doms = mono + [(C2 @ c, a, C2 @ R, v) for c, a, R, v in mono]
    return ellipsoids_to_points(doms, s, rng, noise_amp=0.1, lam=(20, 50))


def _vlp(rng, s):
    v5, v3, v2 = icosa_dirs()
    doms = []
    for d, ax in [(v, (13.0, 24.0, 24.0)) for v in v5] + [(v, (13.0, 22.0, 22.0)) for v in v3]:
        R = np.stack(_orth_from(d), 1)
        doms.append((d * 121.0, ax, R, DV_PROT))
    v5n = v5.copy()

    def shell(P, dens):
        r = np.sqrt((P * P).sum(1)) + np.float32(1e-6)
        cand = (r > 104) & (r < 140)
        Pc, dc, rc = P[cand], dens[cand], r[cand]
        base = (rc > 106) & (rc < 121)
        u = Pc / rc[:, None]
        pore = (u @ v5n.T.astype(np.float32)).max(1) > np.cos(np.radians(4.5))
        dc = np.where(base & ~(pore & (dc == 0)), np.float32(DV_PROT), dc)
        dc = np.where(pore & (rc < 128), 0, dc)
        out = np.zeros_like(dens)
        out[cand] = dc
        return out.astype(np.float32)

    return ellipsoids_to_points(doms, s, rng, noise_amp=0.05, lam=(15, 40), extra=shell, extra_all=True)


_TEMPLATE_CACHE = {}


def target_templates():
    """Fixed (seed-independent) structures of the six labelled classes, 4 A pseudo-atoms."""
    if _TEMPLATE_CACHE:
        return _TEMPLATE_CACHE
    s = 4.0
    makers = {
        "apo-ferritin": _ferritin,
        "beta-amylase": _amylase,
        "beta-galactosidase": _bgal,
        "thyroglobulin": _thyroglobulin,
        "virus-like-particle": _vlp,
    }
    for i, name in enumerate(CLASSES):
        rng = np.random.default_rng([7919, i])
        if name == "ribosome":
            for euk in (False, True):
                P, d = _ribosome(rng, s, euk)
                _TEMPLATE_CACHE[("ribosome", euk)] = (
                    P.astype(np.float32),
                    (d * s**3 / PX**3).astype(np.float32),
                    float(np.linalg.norm(P, axis=1).max()),
                )
        else:
            P, d = makers[name](rng, s)
            P = P - P.mean(0)
            _TEMPLATE_CACHE[name] = (
                P.astype(np.float32),
                (d * s**3 / PX**3).astype(np.float32),
                float(np.linalg.norm(P, axis=1).max()),
            )
    return _TEMPLATE_CACHE


# --------------------------------------------------------------------------- distractors
def _glob_doms(rng, mass):
    vol = mass / 0.81
    nd = int(np.clip(1 + rng.poisson(mass / 90e3), 1, 9))
    fr = rng.dirichlet(np.ones(nd) * 2.0)
    doms = []
    pos = np.zeros(3)
    prev_r = 0
    for f in fr:
        v = vol * f
        asp = rng.uniform(0.6, 1.5, 3)
        asp /= np.prod(asp) ** (1 / 3)
        r = (3 * v / (4 * np.pi)) ** (1 / 3)
        ax = r * asp
        if doms:
            d = rng.normal(size=3)
            d /= np.linalg.norm(d)
            pos = pos + d * 0.8 * (prev_r + r)
        doms.append((pos.copy(), ax, rand_rot(rng), DV_PROT))
        prev_r = r
    cen = np.mean([c for c, a, R, v in doms], 0)
    return [(c - cen, a, R, v) for c, a, R, v in doms]


def _grid_axes(half, s):
    n = int(np.ceil(2 * half / s)) + 1
    g = (np.arange(n) * s - (n - 1) * s / 2).astype(np.float32)
    return g, (g[:, None, None], g[None, :, None], g[None, None, :])


def _grid_select(g, mask, s, rng):
    idx = np.nonzero(mask)
    P = np.stack([g[i] for i in idx], 1).astype(np.float32)
    return P + rng.uniform(-s / 2, s / 2, P.shape).astype(np.float32)


def make_distractor(rng, s=6.0):
    t = rng.choice(["glob", "oligo", "shell", "rod", "aggr"], p=[0.5, 0.2, 0.07, 0.1, 0.13])
    if t == "glob":
        mass = np.exp(rng.uniform(np.log(15e3), np.log(1.5e6)))
        doms = _glob_doms(rng, mass)
        P, d = ellipsoids_to_points(doms, s, rng, noise_amp=0.12)
    elif t == "oligo":
        n = int(rng.integers(3, 9))
        mono = _glob_doms(rng, np.exp(rng.uniform(np.log(15e3), np.log(120e3))))
        rm = max(np.linalg.norm(c) + max(a) for c, a, R, v in mono)
        ring_r = rm / np.sin(np.pi / n) * rng.uniform(0.75, 0.95)
        nring = int(rng.choice([1, 2, 4], p=[0.5, 0.3, 0.2]))
        doms = []
        for k in range(nring):
            zoff = (k - (nring - 1) / 2) * 1.6 * rm
            for j in range(n):
                a = 2 * np.pi * (j + 0.5 * (k % 2)) / n
                Rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
                for c, ax, R, v in mono:
                    doms.append((Rz @ (np.asarray(c) + [ring_r, 0, 0]) + [0, 0, zoff], ax, Rz @ R, v))
        P, d = ellipsoids_to_points(doms, s, rng, noise_amp=0.08)
    elif t == "shell":
        ranges = [(28, 46), (78, 112), (160, 210)]
        lo, hi = ranges[rng.integers(3)]
        R = rng.uniform(lo, hi)
        th = rng.uniform(12, 28)
        g, (Z, Y, X) = _grid_axes(R + s, s)
        r = np.sqrt(Z * Z + Y * Y + X * X) + grid_wave_noise(g, rng, amp=4.0, lam=(20, 60))
        P = _grid_select(g, (r < R) & (r > R - th), s, rng)
        d = np.full(len(P), DV_PROT, np.float32)
    elif t == "rod":
        L = rng.uniform(90, 420)
        rad = rng.uniform(18, 60)
        hollow = rng.random() < 0.4
        g, (Z, Y, X) = _grid_axes(max(L / 2, rad) + s, s)
        rr = np.sqrt(Y * Y + X * X) + grid_wave_noise(g, rng, amp=3.0, lam=(15, 40))
        keep = (rr < rad) & (np.abs(Z) < L / 2)
        if hollow:
            keep &= rr > rad * rng.uniform(0.45, 0.7)
        P = _grid_select(g, keep, s, rng)
        d = np.full(len(P), DV_PROT, np.float32)
    else:
        Rc = rng.uniform(60, 220)
        nb = int(rng.integers(8, 50))
        doms = []
        for _ in range(nb):
            c = rng.normal(size=3) * Rc / 2.2
            doms.append((c, rng.uniform(10, 30, 3), rand_rot(rng), DV_PROT * rng.uniform(0.6, 1.0)))
        P, d = ellipsoids_to_points(doms, s, rng, noise_amp=0.15)
    if len(P) == 0:
        P = np.zeros((1, 3), np.float32)
        d = np.full(1, DV_PROT, np.float32)
    P = P - P.mean(0)
    return (P.astype(np.float32), (d * s**3 / PX**3).astype(np.float32), float(np.linalg.norm(P, axis=1).max()) + 2.0)


# --------------------------------------------------------------------------- scene
class Occupancy:
    def __init__(self):
        self.c = np.zeros((256, 3))
        self.r = np.zeros(256)
        self.n = 0
        self.shells = []

    def free(self, c, r):
        n = self.n
        if n:
            d2 = ((self.c[:n] - c) ** 2).sum(1)
            if np.any(d2 < (self.r[:n] + r) ** 2):
                return False
        for sc, R, h in self.shells:
            if abs(np.linalg.norm(sc - c) - R) < r + h:
                return False
        return True

    def free_many(self, C, r):
        n = self.n
        if n == 0:
            return np.ones(len(C), bool)
        d2 = ((self.c[None, :n] - C[:, None]) ** 2).sum(2)
        return ~np.any(d2 < (self.r[None, :n] + r[:, None]) ** 2, axis=1)

    def add(self, c, r):
        if self.n == len(self.r):
            self.c = np.concatenate([self.c, np.zeros_like(self.c)])
            self.r = np.concatenate([self.r, np.zeros_like(self.r)])
        self.c[self.n] = c
        self.r[self.n] = r
        self.n += 1


def smooth_field(rng, shape, corr, amp):
    f = rng.normal(size=shape)
    f = ndimage.gaussian_filter(f, corr, mode="wrap")
    f /= f.std() + 1e-9
    return (f * amp).astype(np.float32)


class Scene:
    def __init__(self, rng, D, Hp, Wp, crop):
        self.rng = rng
        self.D, self.Hp, self.Wp = D, Hp, Wp
        self.crop = crop  # (y0, y1, x0, x1) labelled region in padded grid
        self.occ = Occupancy()
        self.pts, self.wts = [], []
        self.labels = {c: [] for c in CLASSES}
        self.nobj = 0
        self.make_slab()

    # ice slab -----------------------------------------------------------------
    def make_slab(self):
        rng, D = self.rng, self.D
        frac = rng.uniform(0.45, 0.82)
        th = np.clip(frac * D, min(36.0, 0.88 * D), 0.9 * D)
        Y, X = np.meshgrid(np.arange(self.Hp) - self.Hp / 2, np.arange(self.Wp) - self.Wp / 2, indexing="ij")
        room = max(0.0, 0.92 * D - th)
        ang = np.radians(rng.uniform(0, 7))
        phi = rng.uniform(0, 2 * np.pi)
        span = np.tan(ang) * (abs(np.cos(phi)) * self.Hp + abs(np.sin(phi)) * self.Wp)
        if span > 0.6 * room:
            ang = np.arctan(0.6 * room / max(abs(np.cos(phi)) * self.Hp + abs(np.sin(phi)) * self.Wp, 1))
        slope = np.tan(ang) * (np.cos(phi) * Y + np.sin(phi) * X)
        rough = rng.uniform(0, 0.07) * th
        curv = rng.uniform(-1, 1) * 0.1 * th * ((Y / self.Hp) ** 2 + (X / self.Wp) ** 2) * 4
        mid = D / 2 + rng.uniform(-0.5, 0.5) * max(room - 0.6 * room, 0) + slope + curv
        top = mid + th / 2 + smooth_field(rng, (self.Hp, self.Wp), 25, rough)
        bot = mid - th / 2 + smooth_field(rng, (self.Hp, self.Wp), 25, rough)
        self.top = np.clip(top, 2, D - 2).astype(np.float32)
        self.bot = np.clip(bot, 1, D - 3).astype(np.float32)
        self.thick_A = float(np.mean(self.top - self.bot)) * PX
        self.interface_frac = rng.uniform(0.0, 0.5)

    def ice_volume(self):
        V = np.empty((self.D, self.Hp, self.Wp), np.float32)
        for z0 in range(0, self.D, 16):
            z = np.arange(z0, min(z0 + 16, self.D), dtype=np.float32)[:, None, None]
            a = np.minimum(self.top[None] - z, z - self.bot[None]) + 0.5
            V[z0 : z0 + len(z)] = V_ICE * np.clip(a, 0, 1)
        return V

    # placement ----------------------------------------------------------------
    def sample_pos(self, r, region=None, interface=None):
        rng = self.rng
        y0, y1, x0, x1 = region if region is not None else (0, self.Hp, 0, self.Wp)
        y = rng.uniform(y0, y1 - 1e-3)
        x = rng.uniform(x0, x1 - 1e-3)
        yi, xi = int(y), int(x)
        lo = self.bot[yi, xi] + 0.92 * r
        hi = self.top[yi, xi] - 0.92 * r
        if hi < lo:
            return None
        if interface is None:
            interface = rng.random() < self.interface_frac
        if interface:
            z = hi - rng.uniform(0, 0.15) * r if rng.random() < 0.5 else lo + rng.uniform(0, 0.15) * r
        else:
            z = rng.uniform(lo, hi)
        return np.array([z, y, x])

    def add_points(self, P_body, w, R, c):
        self.pts.append(((P_body @ R.T.astype(np.float32)) / PX + c.astype(np.float32)).astype(np.float32))
        self.wts.append(w)

    def place_template(self, tmpl, n, region=None, label=None, tries=60, scale_jit=0.0):
        P, w, rb = tmpl
        placed = 0
        for _ in range(n):
            for _ in range(tries):
                sc = 1.0 + (self.rng.uniform(-scale_jit, scale_jit) if scale_jit else 0.0)
                r = rb * sc / PX
                c = self.sample_pos(r, region)
                if c is None or not self.occ.free(c, r):
                    continue
                R = rand_rot(self.rng)
                self.add_points(P * sc if scale_jit else P, w * sc**3 if scale_jit else w, R, c)
                self.occ.add(c, r)
                if label is not None:
                    self.labels[label].append(c)
                placed += 1
                break
        return placed


def build_scene(rng, D, H, W, pad, Hp, Wp):
    sc = Scene(rng, D, Hp, Wp, (pad[0], pad[0] + H, pad[1], pad[1] + W))
    f_crop = D * H * W / REF_VOL
    f_pad = D * (Hp * Wp - H * W) / REF_VOL
    slab_vox = float(np.sum(sc.top - sc.bot))

    # vesicles (placed first: large)
    if rng.random() < 0.45:
        nv = rng.poisson(1.5 * D * Hp * Wp / REF_VOL) + 1
        for _ in range(nv):
            for _ in range(20):
                th_vox = sc.thick_A / PX
                Rmax = min(0.45 * th_vox, 90.0)
                if Rmax < 12:
                    break
                R = rng.uniform(12, Rmax)
                c = sc.sample_pos(R + 2.5, interface=False)
                if c is None or not sc.occ.free(c, R + 2.5):
                    continue
                if any(np.linalg.norm(c - s0) < R + R0 + 3 for s0, R0, h in sc.occ.shells):
                    continue
                RA = R * PX
                ncol = int(4 * np.pi * RA**2 / 16.0)
                u = rng.normal(size=(ncol, 3)).astype(np.float32)
                u /= np.linalg.norm(u, axis=1, keepdims=True)
                layers = []
                for off, sd, dv, thick in [
                    (19.0, 3.0, DV_HEAD, 9.0),
                    (-19.0, 3.0, DV_HEAD, 9.0),
                    (0.0, 8.0, DV_TAIL, 28.0),
                ]:
                    rr = RA + off + rng.normal(0, sd, ncol).astype(np.float32)
                    layers.append((u * rr[:, None], np.full(ncol, dv * 16.0 * thick / PX**3, np.float32)))
                sc.pts.append(np.concatenate([l[0] for l in layers]) / PX + c.astype(np.float32))
                sc.wts.append(np.concatenate([l[1] for l in layers]))
                sc.occ.shells.append((c, R, 2.6))
                break

    # labelled particles: biggest first
    tm = target_templates()
    euk = rng.random() < 0.5
    order = sorted(CLASSES, key=lambda c: -RADIUS[c])
    for name in order:
        lo, hi = COUNTS[name]
        n_crop = int(rng.integers(int(round(lo * f_crop)), int(round(hi * f_crop)) + 1))
        lam_pad = 0.5 * (lo + hi) * f_pad
        n_pad = rng.poisson(lam_pad)
        t = tm[("ribosome", euk)] if name == "ribosome" else tm[name]
        sc.place_template(t, n_crop, region=sc.crop, label=name)
        # padding ring (unlabelled context outside the written volume)
        before = {c: len(v) for c, v in sc.labels.items()}
        for _ in range(n_pad):
            for _ in range(20):
                c = sc.sample_pos(t[2] / PX)
                if c is None:
                    continue
                y, x = c[1], c[2]
                if sc.crop[0] <= y < sc.crop[1] and sc.crop[2] <= x < sc.crop[3]:
                    continue
                if not sc.occ.free(c, t[2] / PX):
                    continue
                sc.add_points(t[0], t[1], rand_rot(rng), c)
                sc.occ.add(c, t[2] / PX)
                break

    # filaments
    n_fil = rng.poisson(rng.choice([0.0, 0.7, 2.5], p=[0.45, 0.35, 0.2]) * (f_crop + f_pad))
    for _ in range(n_fil):
        add_filament(sc, rng)

    # gold fiducials
    lam_gold = rng.choice([0.0, rng.uniform(0.5, 4.0)], p=[0.55, 0.45])
    n_gold = rng.poisson(lam_gold * (f_crop + f_pad))
    if n_gold:
        rg = rng.choice([25.0, 50.0]) * rng.uniform(0.9, 1.1)
        Pg = grid_points(rg + 3, 3.0, rng)
        Pg = Pg[np.linalg.norm(Pg, axis=1) < rg]
        wg = np.full(len(Pg), DV_GOLD * 27.0 / PX**3, np.float32)
        sc.place_template((Pg, wg, rg), n_gold)

    # crowding distractors
    lib = [make_distractor(rng) for _ in range(int(rng.integers(25, 55)))]
    vols = np.array([len(p) * 216.0 for p, w, r in lib])
    phi = np.exp(rng.uniform(np.log(0.01), np.log(0.14)))
    target_vol = phi * slab_vox * PX**3
    got, fails = 0.0, 0
    while got < target_vol and fails < 400:
        k = int(rng.integers(len(lib)))
        n0 = sc.occ.n
        if sc.place_template(lib[k], 1, tries=6, scale_jit=0.1) == 0:
            fails += 1
            continue
        got += vols[k]
        if sc.occ.n == n0:
            break

    # surface contamination (outside the ice, on either surface)
    if rng.random() < 0.35:
        nc = rng.poisson(2.0 * (f_crop + f_pad)) + 1
        for _ in range(nc):
            rA = rng.uniform(60, 260)
            doms = []
            for _ in range(int(rng.integers(1, 5))):
                doms.append((rng.normal(size=3) * rA * 0.4, rA * rng.uniform(0.4, 1.0, 3), rand_rot(rng), V_ICE))
            P, d = ellipsoids_to_points(doms, 10.0, rng, noise_amp=0.2)
            if len(P) == 0:
                continue
            y, x = rng.uniform(0, Hp), rng.uniform(0, Wp)
            yi, xi = int(y), int(x)
            up = rng.random() < 0.5
            zc = sc.top[yi, xi] + 0.6 * rA / PX if up else sc.bot[yi, xi] - 0.6 * rA / PX
            R = rand_rot(rng)
            Pv = (P @ R.T.astype(np.float32)) / PX + np.array([zc, y, x], np.float32)
            # keep only the part that is outside the slab
            zi = np.clip(Pv[:, 1].astype(int), 0, Hp - 1)
            xi2 = np.clip(Pv[:, 2].astype(int), 0, Wp - 1)
            out = (Pv[:, 0] > sc.top[zi, xi2]) | (Pv[:, 0] < sc.bot[zi, xi2])
            sc.pts.append(Pv[out])
            sc.wts.append((d[out] * 1000.0 / PX**3).astype(np.float32))
    return sc


def add_filament(sc, rng):
    mt = rng.random() < 0.3
    rad_coll = (130.0 if mt else 42.0) / PX
    L = rng.uniform(400, 2500)
    step = 40.0 if mt else 27.5
    n = int(L / step)
    c = sc.sample_pos(rad_coll, interface=False)
    if c is None:
        return
    a = rng.uniform(0, 2 * np.pi)
    d = np.array([rng.normal(0, 0.15), np.cos(a), np.sin(a)])
    d /= np.linalg.norm(d)
    cen, T = [], []
    p = c.copy()
    for i in range(n):
        yi, xi = int(np.clip(p[1], 0, sc.Hp - 1)), int(np.clip(p[2], 0, sc.Wp - 1))
        if not (0 <= p[1] < sc.Hp and 0 <= p[2] < sc.Wp):
            break
        if p[0] < sc.bot[yi, xi] + rad_coll or p[0] > sc.top[yi, xi] - rad_coll:
            d[0] = -d[0] * 0.5
        cen.append(p.copy())
        T.append(d.copy())
        d = d + rng.normal(0, 0.03, 3)
        d[0] *= 0.9
        d /= np.linalg.norm(d)
        p = p + d * step / PX
    if len(cen) < 4:
        return
    cen, T = np.array(cen), np.array(T)
    # collision: spheres every ~radius along the axis; truncate at first collision
    every = max(1, int(rad_coll * PX / step))
    last = len(cen)
    for i in range(0, len(cen), every):
        if not sc.occ.free(cen[i], rad_coll):
            last = i
            break
    if last < 4:
        return
    cen, T = cen[:last], T[:last]
    for i in range(0, len(cen), every):
        sc.occ.add(cen[i], rad_coll)
    # subunit blob template
    s = 6.0
    blob_ax = (25.0, 22.0, 20.0) if mt else (26.0, 22.0, 19.0)
    Pb, db = ellipsoids_to_points([((0, 0, 0), blob_ax, np.eye(3), DV_PROT)], s, rng, noise_amp=0.1)
    wb = (db * s**3 / PX**3).astype(np.float32)
    # frames
    ref = np.array([1.0, 0, 0])
    pts = []
    for i in range(len(cen)):
        t = T[i]
        nv = np.cross(t, ref)
        if np.linalg.norm(nv) < 1e-3:
            nv = np.cross(t, [0, 1.0, 0])
        nv /= np.linalg.norm(nv)
        bv = np.cross(t, nv)
        if mt:
            for pf in range(13):
                ang = 2 * np.pi * pf / 13
                off = 105.0 * (np.cos(ang) * nv + np.sin(ang) * bv) + t * (pf * 3 * step / 13 - 1.5 * step)
                R = np.stack([t, np.cos(ang) * nv + np.sin(ang) * bv, -np.sin(ang) * nv + np.cos(ang) * bv], 1)
                pts.append(Pb @ R.T + off)
        else:
            ang = np.radians(-166.6) * i
            radial = np.cos(ang) * nv + np.sin(ang) * bv
            R = np.stack([t, radial, np.cross(t, radial)], 1)
            pts.append(Pb @ R.T + 22.0 * radial)
        if mt:
            base = cen[i]
            k = len(pts) - 13
            for j in range(k, len(pts)):
                pts[j] = (pts[j] / PX + base).astype(np.float32)
        else:
            pts[-1] = (pts[-1] / PX + cen[i]).astype(np.float32)
    P = np.concatenate(pts).astype(np.float32)
    sc.pts.append(P)
    sc.wts.append(np.tile(wb, len(pts)))


def splat(shape, pts_list, wts_list, base=None, chunk=3_000_000):
    D, H, W = shape
    N = D * H * W
    vol = base if base is not None else np.zeros(shape, np.float32)
    flat = vol.reshape(-1)
    P = np.concatenate(pts_list) if pts_list else np.zeros((0, 3), np.float32)
    w = np.concatenate(wts_list) if wts_list else np.zeros(0, np.float32)
    for i0 in range(0, len(P), chunk):
        p = P[i0 : i0 + chunk]
        ww = w[i0 : i0 + chunk]
        f = np.floor(p)
        t = (p - f).astype(np.float32)
        f = f.astype(np.int64)
        ok = (
            (f[:, 0] >= 0) & (f[:, 0] < D - 1) & (f[:, 1] >= 0) & (f[:, 1] < H - 1) & (f[:, 2] >= 0) & (f[:, 2] < W - 1)
        )
        f, t, ww = f[ok], t[ok], ww[ok]
        b = (f[:, 0] * H + f[:, 1]) * W + f[:, 2]
        idx, val = [], []
        for dz in (0, 1):
            wz = t[:, 0] if dz else 1 - t[:, 0]
            for dy in (0, 1):
                wy = wz * (t[:, 1] if dy else 1 - t[:, 1])
                for dx in (0, 1):
                    wx = wy * (t[:, 2] if dx else 1 - t[:, 2])
                    idx.append(b + (dz * H * W + dy * W + dx))
                    val.append(ww * wx)
        acc = np.bincount(np.concatenate(idx), weights=np.concatenate(val), minlength=N)
        flat += acc.astype(np.float32)
        del acc, idx, val
    return vol


# --------------------------------------------------------------------------- imaging
def draw_imaging(rng):
    p = {}
    p["step"] = float(rng.choice([2.0, 2.5, 3.0], p=[0.3, 0.2, 0.5]))
    amax = rng.uniform(48, 66)
    asym = rng.uniform(-6, 6) if rng.random() < 0.4 else 0.0
    hi = np.floor(min(amax + asym, 65.0) / p["step"]) * p["step"]
    lo = -np.floor(min(amax - asym, 65.0) / p["step"]) * p["step"]
    p["angles"] = np.arange(lo, hi + 1e-6, p["step"])
    p["order"] = "dose-symmetric" if rng.random() < 0.85 else "bidirectional"
    p["dose"] = rng.uniform(80, 160)
    p["dose_scheme"] = "cos" if rng.random() < 0.3 else "flat"
    if rng.random() < 0.1:
        p["phase_plate"] = rng.uniform(0.3, 0.7) * np.pi
        p["defocus"] = rng.uniform(2e3, 1e4)
    else:
        p["phase_plate"] = 0.0
        p["defocus"] = rng.uniform(1.5e4, 5.5e4)
    p["astig"] = rng.uniform(0, 3000)
    p["astig_ang"] = rng.uniform(0, np.pi)
    p["defocus_jit"] = rng.uniform(100, 1200)
    p["ampc"] = rng.uniform(0.05, 0.12)
    p["bfac"] = np.exp(rng.uniform(np.log(30), np.log(700)))
    p["align_sd"] = np.exp(rng.uniform(np.log(0.15), np.log(2.5)))
    p["filter"] = rng.random() < 0.75
    p["dqe"] = rng.uniform(0.5, 0.85)
    p["noise_mult"] = np.exp(rng.uniform(np.log(0.5), np.log(4.5)))
    p["recon"] = str(rng.choice(["wbp", "wbp-hamming", "sirt"], p=[0.45, 0.2, 0.35]))
    p["phaseflip"] = rng.random() < 0.4
    p["hamming_fc"] = rng.uniform(0.3, 0.5)
    p["sirt_iter"] = int(rng.integers(5, 40))
    p["sirt_rc"] = rng.uniform(0.008, 0.03)
    # denoising: always something (the real files are denoised reconstructions)
    p["wiener"] = np.exp(rng.uniform(np.log(0.15), np.log(3.0))) if rng.random() < 0.85 else 0.0
    p["lowpass"] = 1.0 / rng.uniform(22, 65) if rng.random() < 0.6 else 0.0
    if p["wiener"] == 0:  # plain low-pass "denoising": needs to be stronger
        p["lowpass"] = 1.0 / rng.uniform(35, 70)
    p["lp_order"] = rng.uniform(2, 8)
    p["highpass"] = 1.0 / rng.uniform(500, 2500) if rng.random() < 0.5 else 0.0
    p["softclip"] = rng.uniform(2.5, 5.0) if rng.random() < 0.3 else 0.0
    p["axis_x"] = rng.random() < 0.25
    return p


def acquisition_order(angles, kind):
    a = np.asarray(angles)
    i0 = int(np.argmin(np.abs(a)))
    if kind == "bidirectional":
        pos = [i for i in np.argsort(a) if a[i] >= a[i0]]
        neg = [i for i in np.argsort(-a) if a[i] < a[i0]]
        return pos + neg
    pos = [i for i in np.argsort(a) if a[i] > a[i0]]
    neg = [i for i in np.argsort(-a) if a[i] < a[i0]]
    order = [i0]
    k = 0
    while pos or neg:
        src = pos if (k // 2) % 2 == 0 else neg
        if not src:
            src = pos or neg
        order.append(src.pop(0))
        k += 1
    return order


def image_and_reconstruct(V, p, rng, thick_A):
    D, A, B = V.shape
    V3 = sfft.rfftn(V, workers=2)
    del V
    Br = V3.shape[2]
    kz = sfft.fftfreq(D).astype(np.float32)
    ky = sfft.fftfreq(A).astype(np.float32)
    kx = sfft.rfftfreq(B).astype(np.float32)
    KZ, KX = np.meshgrid(kz, kx, indexing="ij")
    S = np.zeros_like(V3)
    N = np.zeros_like(V3)
    Wt = np.zeros((D, Br), np.float32)

    ang = p["angles"]
    nt = len(ang)
    order = acquisition_order(ang, p["order"])
    dose_w = 1.0 / np.cos(np.radians(ang)) if p["dose_scheme"] == "cos" else np.ones(nt)
    dose_t = p["dose"] * dose_w / dose_w.sum()
    cum = np.zeros(nt)
    acc = 0.0
    for i in order:
        cum[i] = acc + dose_t[i] / 2
        acc += dose_t[i]
    shifts = rng.normal(0, 1, (nt, 2)) * p["align_sd"] * (1 + np.abs(ang)[:, None] / 60.0)
    shifts -= shifts.mean(0)
    dfs = p["defocus"] + rng.normal(0, p["defocus_jit"], nt)
    bf = p["bfac"] * rng.uniform(0.6, 1.6, nt) * (1 + np.abs(ang) / 90.0)
    ca, sa = np.cos(2 * p["astig_ang"]), np.sin(2 * p["astig_ang"])
    w_amp = p["ampc"]
    w_ph = np.sqrt(1 - w_amp**2)
    yy = ky[None, :]
    for t in range(nt):
        th = np.radians(ang[t])
        c, s = np.cos(th), np.sin(th)
        L = D / abs(c) if abs(s) < 1e-6 else min(D / abs(c), B / abs(s))
        w = 1.0 - np.abs(KZ * c + KX * s) * L
        iz, ix = np.nonzero(w > 0)
        wv = w[iz, ix].astype(np.float32)
        u = (-KZ * s + KX * c)[iz, ix].astype(np.float32)
        uu = u[:, None]
        k2p = uu * uu + yy * yy  # cycles/voxel ^2
        k2 = k2p / PX**2  # 1/A^2
        cos2 = np.where(k2p > 0, (uu * uu - yy * yy) / np.maximum(k2p, 1e-12), 1.0)
        sin2 = np.where(k2p > 0, 2 * uu * yy / np.maximum(k2p, 1e-12), 0.0)
        dfe = dfs[t] + 0.5 * p["astig"] * (cos2 * ca + sin2 * sa)
        chi = (np.pi * LAMBDA * dfe * k2 - 0.5 * np.pi * CS * LAMBDA**3 * k2 * k2 + p["phase_plate"]).astype(np.float32)
        ctf = -2.0 * (w_ph * np.sin(chi) + w_amp * np.cos(chi))
        if p["phaseflip"]:
            ctf = -np.abs(ctf)
        kA = np.sqrt(k2) + 1e-6
        ne = 0.245 * kA**-1.665 + 2.81
        env = np.exp(-bf[t] / 4.0 * k2 - cum[t] / (2 * ne)) * np.sinc(uu) * np.sinc(yy)
        path = thick_A / max(abs(c), 0.2)
        zlp = np.exp(-path / LAMBDA_INEL)
        if p["filter"]:
            gain = 1.0
            ne_pix = dose_t[t] * PX**2 * zlp * p["dqe"]
        else:
            gain = zlp
            ne_pix = dose_t[t] * PX**2 * p["dqe"]
        sig_t = p["noise_mult"] / np.sqrt(ne_pix)
        ph = (np.exp(-2j * np.pi * uu * shifts[t, 1]) * np.exp(-2j * np.pi * yy * shifts[t, 0])).astype(np.complex64)
        filt = ((SIGMA_E * PX * gain) * ctf * env).astype(np.float32) * ph
        S[iz, :, ix] += (wv[:, None] * filt) * V3[iz, :, ix]
        img = rng.standard_normal((A, B), dtype=np.float32) * np.float32(sig_t)
        NF = sfft.fft2(img, workers=2)
        iu = np.rint(u * B).astype(np.int64) % B
        N[iz, :, ix] += wv[:, None] * NF[:, iu].T
        Wt[iz, ix] += wv
    del V3
    norm = (1.0 / np.maximum(Wt, 1.0)).astype(np.float32)[:, None, :]
    S *= norm
    N *= norm
    S[0, 0, 0] = 0
    N[0, 0, 0] = 0

    # radial frequency (cycles/voxel), computed per kz slab to save memory
    def kr_slab(i):
        return np.sqrt(kz[i] ** 2 + ky[:, None] ** 2 + kx[None, :] ** 2)

    def kperp_slab(i):
        return np.sqrt(kz[i] ** 2 + kx[None, :] ** 2 + 0 * ky[:, None])

    nb = 96
    edges_max = 0.87
    Ps = np.zeros(nb)
    Pn = np.zeros(nb)
    cnt = np.zeros(nb)
    for i in range(D):
        kr = kr_slab(i)
        b = np.minimum((kr / edges_max * nb).astype(np.int64), nb - 1).ravel()
        Ps += np.bincount(b, (np.abs(S[i]) ** 2).ravel(), nb)
        Pn += np.bincount(b, (np.abs(N[i]) ** 2).ravel(), nb)
        cnt += np.bincount(b, None, nb)
    cnt = np.maximum(cnt, 1)
    Ps /= cnt
    Pn /= cnt
    if p["wiener"] > 0:
        Hw = Ps / (Ps + p["wiener"] * Pn + 1e-30)
        Hw = np.convolve(np.pad(Hw, 2, mode="edge"), np.ones(5) / 5, mode="valid")
    else:
        Hw = np.ones(nb)
    snr_info = float(np.sum(Ps[: nb // 3]) / max(np.sum(Pn[: nb // 3]), 1e-30))
    out = np.empty_like(S)
    for i in range(D):
        kr = kr_slab(i)
        b = np.minimum((kr / edges_max * nb).astype(np.int64), nb - 1)
        Hf = Hw[b]
        if p["recon"] == "wbp-hamming":
            kp = np.sqrt(kr_slab(i) ** 2)
            Hf = Hf * np.where(kp < p["hamming_fc"], 0.54 + 0.46 * np.cos(np.pi * kp / p["hamming_fc"]), 0.0)
        elif p["recon"] == "sirt":
            kp = kperp_slab(i)
            q = np.clip(p["sirt_rc"] / np.maximum(kp, 1e-6), 0, 1)
            Hf = Hf * (1 - (1 - q) ** p["sirt_iter"])
        if p["lowpass"] > 0:
            fc = p["lowpass"] * PX
            Hf = Hf / np.sqrt(1 + (kr / fc) ** (2 * p["lp_order"]))
        if p["highpass"] > 0:
            fh = p["highpass"] * PX
            Hf = Hf * (1 - np.exp(-((kr / fh) ** 2)))
        out[i] = (S[i] + N[i]) * Hf.astype(np.float32)
    del S, N
    R = sfft.irfftn(out, s=(D, A, B), workers=2).astype(np.float32, copy=False)
    return R, snr_info


# --------------------------------------------------------------------------- run
def simulate(seed, index, shape, verbose=False):
    rng = np.random.default_rng([seed, index])
    D, H, W = shape
    prm = draw_imaging(rng)
    pad = (max(8, int(0.06 * H)), max(8, int(0.06 * W)))
    Hp = sfft.next_fast_len(H + 2 * pad[0], real=True)
    Wp = sfft.next_fast_len(W + 2 * pad[1], real=True)
    pad = ((Hp - H) // 2, (Wp - W) // 2)
    t0 = time.time()
    sc = build_scene(rng, D, H, W, pad, Hp, Wp)
    sc.crop = (pad[0], pad[0] + H, pad[1], pad[1] + W)
    t1 = time.time()
    V = sc.ice_volume()
    if rng.random() < 0.12:  # carbon edge on one surface
        Y, X = np.meshgrid(np.arange(Hp), np.arange(Wp), indexing="ij")
        a = rng.uniform(0, 2 * np.pi)
        edge = (
            (np.cos(a) * (Y - Hp / 2) + np.sin(a) * (X - Wp / 2))
            - rng.uniform(0.1, 0.45) * min(Hp, Wp)
            + 0.002 * ((Y - Hp / 2) ** 2 + (X - Wp / 2) ** 2) / max(Hp, Wp) * rng.uniform(-1, 1)
        )
        cth = rng.uniform(8, 25)
        up = rng.random() < 0.5
        for z0 in range(0, D, 16):
            z = np.arange(z0, min(z0 + 16, D), dtype=np.float32)[:, None, None]
            if up:
                inl = (z > sc.top[None]) & (z < sc.top[None] + cth)
            else:
                inl = (z < sc.bot[None]) & (z > sc.bot[None] - cth)
            V[z0 : z0 + len(z)] += V_CARBON * (inl & (edge[None] > 0))
    V = splat(V.shape, sc.pts, sc.wts, base=V)
    npts = sum(len(x) for x in sc.pts)
    sc.pts = sc.wts = None
    t2 = time.time()
    if prm["axis_x"]:
        V = np.ascontiguousarray(V.transpose(0, 2, 1))
    R, snr = image_and_reconstruct(V, prm, rng, sc.thick_A)
    del V
    if prm["axis_x"]:
        R = R.transpose(0, 2, 1)
    R = np.ascontiguousarray(R[:, pad[0] : pad[0] + H, pad[1] : pad[1] + W])
    t3 = time.time()
    sd = float(R.std()) + 1e-20
    m = float(R.mean())
    R = (R - m) / sd
    if prm["softclip"] > 0:
        c = prm["softclip"]
        R = c * np.tanh(R / c)
    scale = 10 ** rng.uniform(-1.5, 1.5)
    offset = rng.normal(0, 3) * scale + rng.choice([0.0, rng.uniform(-100, 100)], p=[0.7, 0.3])
    R = (R * scale + offset).astype(np.float32)
    picks = {}
    for name in CLASSES:
        pl = []
        for c in sc.labels[name]:
            z, y, x = c[0], c[1] - pad[0], c[2] - pad[1]
            if 0 <= z <= D - 1 and 0 <= y <= H - 1 and 0 <= x <= W - 1:
                pl.append((z, y, x))
        picks[name] = pl
    info = dict(
        t_scene=t1 - t0,
        t_splat=t2 - t1,
        t_img=t3 - t2,
        npts=npts,
        snr=snr,
        thick_nm=sc.thick_A / 10,
        prm={k: v for k, v in prm.items() if k != "angles"},
        ntilt=len(prm["angles"]),
        tilt_range=(float(prm["angles"][0]), float(prm["angles"][-1])),
    )
    return R, picks, info


def bin2(a):
    d, h, w = (s // 2 for s in a.shape)
    return a[: 2 * d, : 2 * h, : 2 * w].reshape(d, 2, h, 2, w, 2).mean(axis=(1, 3, 5), dtype=np.float32)


def write_zarr(path, vol):
    import zarr

    levels = [vol, bin2(vol)]
    levels.append(bin2(levels[1]))
    g = zarr.open_group(path, mode="w", zarr_format=2)
    dsets = []
    for i, a in enumerate(levels):
        ch = tuple(min(64, s) for s in a.shape)
        arr = g.create_array(str(i), shape=a.shape, dtype="float32", chunks=ch)
        arr[:] = a
        sc = PX * 2**i
        dsets.append({"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": [sc, sc, sc]}]})
    g.attrs["multiscales"] = [
        {
            "version": "0.4",
            "name": "denoised",
            "axes": [{"name": ax, "type": "space", "unit": "angstrom"} for ax in ("z", "y", "x")],
            "datasets": dsets,
            "metadata": {"method": "mean-pooling 2x per level", "simulator": "sim_f"},
        }
    ]


def write_picks(folder, run, picks):
    os.makedirs(folder, exist_ok=True)
    for name in CLASSES:
        pts = []
        for i, (z, y, x) in enumerate(picks[name]):
            pts.append(
                {
                    "location": {"x": float(x * PX), "y": float(y * PX), "z": float(z * PX)},
                    "transformation_": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
                    "instance_id": i,
                }
            )
        doc = {
            "pickable_object_name": name,
            "user_id": "curation",
            "session_id": "0",
            "run_name": run,
            "voxel_spacing": None,
            "unit": "angstrom",
            "points": pts,
        }
        with open(os.path.join(folder, f"{name}.json"), "w") as f:
            json.dump(doc, f)


def run_complete(static_dir, overlay_dir):
    if not (os.path.isdir(static_dir) and os.path.isdir(overlay_dir)):
        return False
    z = os.path.join(static_dir, "VoxelSpacing10.000", "denoised.zarr")
    if not os.path.isfile(os.path.join(z, ".zattrs")) or not os.path.isfile(os.path.join(z, "2", ".zarray")):
        return False
    return all(os.path.isfile(os.path.join(overlay_dir, "Picks", f"{c}.json")) for c in CLASSES)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", type=int, required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--shape", type=int, nargs=3, required=True, metavar=("D", "H", "W"))
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    root = os.path.abspath(a.out)
    st_root = os.path.join(root, "train", "static", "ExperimentRuns")
    ov_root = os.path.join(root, "train", "overlay", "ExperimentRuns")
    st_tmp = os.path.join(root, "train", "static", ".tmp_sim_f")
    ov_tmp = os.path.join(root, "train", "overlay", ".tmp_sim_f")
    for d in (st_root, ov_root, st_tmp, ov_tmp):
        os.makedirs(d, exist_ok=True)
    for k in range(a.first, a.first + a.runs):
        run = f"TS_F_{k}"
        sd, od = os.path.join(st_root, run), os.path.join(ov_root, run)
        if run_complete(sd, od):
            print(f"{run} exists, skipped", flush=True)
            continue
        t0 = time.time()
        vol, picks, info = simulate(a.seed, k, tuple(a.shape), verbose=a.verbose)
        ts, to = os.path.join(st_tmp, run), os.path.join(ov_tmp, run)
        for d in (ts, to):
            shutil.rmtree(d, ignore_errors=True)
        write_zarr(os.path.join(ts, "VoxelSpacing10.000", "denoised.zarr"), vol)
        write_picks(os.path.join(to, "Picks"), run, picks)
        for d in (sd, od):  # remove partial leftovers of an interrupted call
            shutil.rmtree(d, ignore_errors=True)
        os.rename(ts, sd)
        os.rename(to, od)
        counts = " ".join(f"{c}={len(picks[c])}" for c in CLASSES)
        print(f"{run} {time.time() - t0:.1f}s {counts}", flush=True)
        if a.verbose:
            pr = info["prm"]
            print("   axis_x", pr["axis_x"], "bfac %.0f align %.2f" % (pr["bfac"], pr["align_sd"]), flush=True)
            print(
                f"   scene {info['t_scene']:.1f}s splat {info['t_splat']:.1f}s img {info['t_img']:.1f}s "
                f"pts {info['npts']} ice {info['thick_nm']:.0f}nm tilts {info['ntilt']} {info['tilt_range']} "
                f"df {pr['defocus'] / 1e4:.2f}um pp {pr['phase_plate']:.2f} noise x{pr['noise_mult']:.2f} "
                f"recon {pr['recon']} flip {pr['phaseflip']} wiener {pr['wiener']:.2f} lp {pr['lowpass']:.3f} "
                f"snr {info['snr']:.3g}",
                flush=True,
            )

    for d in (st_tmp, ov_tmp):
        try:
            os.rmdir(d)
        except OSError:
            pass


if __name__ == "__main__":
    main()
