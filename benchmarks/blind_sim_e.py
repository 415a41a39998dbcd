#!/usr/bin/env python
# ruff: noqa: UP031, E741, F841, B007, F401, I001
# A second simulator written blind (source E), for training experiments. A helper wrote this file on 2026-12-06
# without reading cryopoint's code, its simulator, source D's simulator (benchmarks/blind_sim.py), the notes or the
# reference documents: from the CZII data contract, the six classes with their radii and a physics brief only. It is
# kept as its author wrote it (formatting only). Unlike source D it may be trained on: docs/models.md ("A second
# blind generator in the training corpus") trains a stage on 64 of its runs with 64 of ours and scores it on D.
#   python benchmarks/blind_sim_e.py --out ROOT --runs 64 --seed 1 --shape 96 256 256
"""sim_e: an independent, fast cryo-electron-tomography simulator.

Scene: coarse-grained "residue clouds" (points on a jittered 3.8 A grid filling
subunit volumes, replicated by each complex's symmetry group) voxelised by
nearest-voxel splatting of occupancy and material potential, embedded in a
vitreous-ice slab with distractor proteins, membranes, filaments, gold,
carbon and ice contamination.
Imaging: voxel-driven sparse projector about the y axis (tilt series), weak-phase
CTF with defocus gradient across the tilt, astigmatism, coherence + B-factor +
exposure-filter + drift envelopes, inelastic loss, detector MTF, Poisson noise,
per-tilt misalignment.  Reconstruction: weighted back-projection (several
windows / SIRT-like weighting, optional CTF correction) and a drawn post-processing
"look".  Output: OME-NGFF (zarr v2) + picks JSON.
Usage: python sim_e.py --out ROOT --runs N --seed S --shape D H W [--first 1]
"""

import argparse
import json
import math
import os
import shutil
import sys
import time

import numpy as np
from scipy import ndimage, sparse
import zarr

VOX = 10.012444
SP = 3.8  # residue spacing (A)
PT_OCC = SP**3 / VOX**3  # fraction of a voxel one residue point fills
CLASSES = [
    ("apo-ferritin", 60.0),
    ("beta-amylase", 65.0),
    ("beta-galactosidase", 90.0),
    ("ribosome", 150.0),
    ("thyroglobulin", 130.0),
    ("virus-like-particle", 135.0),
]
REF_VOL = 96 * 256 * 256


# ----------------------------------------------------------------- rotations
def quat_rot(q):
    a, b, c, d = q / np.linalg.norm(q)
    return np.array(
        [
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
        ]
    )


def rand_rot(rng):
    return quat_rot(rng.normal(size=4))


def axis_angle(axis, ang):
    k = np.asarray(axis, float)
    k = k / np.linalg.norm(k)
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(ang) * K + (1 - math.cos(ang)) * K @ K


def small_rots(rng, n, deg):
    ax = rng.normal(size=(n, 3))
    ax /= np.linalg.norm(ax, axis=1, keepdims=True)
    ang = np.deg2rad(rng.normal(0, deg, n))
    K = np.zeros((n, 3, 3))
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -ax[:, 2], ax[:, 1], -ax[:, 0]
    K[:, 1, 0], K[:, 2, 0], K[:, 2, 1] = ax[:, 2], -ax[:, 1], ax[:, 0]
    s, c = np.sin(ang)[:, None, None], np.cos(ang)[:, None, None]
    return np.eye(3)[None] + s * K + (1 - c) * K @ K


def close_group(gens, cap=200):
    G = [np.eye(3)]
    keys = {tuple(np.round(np.eye(3), 5).ravel())}
    frontier = [np.eye(3)]
    while frontier:
        nxt = []
        for g in frontier:
            for h in gens:
                m = h @ g
                k = tuple(np.round(m, 5).ravel() + 0.0)
                if k not in keys:
                    keys.add(k)
                    G.append(m)
                    nxt.append(m)
        frontier = nxt
        if len(G) > cap:
            raise RuntimeError("group closure diverged")
    return np.array(G)


PHI = (1 + 5**0.5) / 2
OCTA = close_group([axis_angle((0, 0, 1), np.pi / 2), axis_angle((1, 1, 1), 2 * np.pi / 3)])
ICO = close_group([axis_angle((0, 1, PHI), 2 * np.pi / 5), axis_angle((1, 1, 1), 2 * np.pi / 3)])
D2 = np.array([np.eye(3), np.diag([1, -1, -1]), np.diag([-1, 1, -1]), np.diag([-1, -1, 1])], float)
C2 = np.array([np.eye(3), np.diag([-1, -1, 1])], float)
assert len(OCTA) == 24 and len(ICO) == 60


# ----------------------------------------------------------- residue clouds
def jgrid(lo, hi, rng):
    ax = [np.arange(lo[i], hi[i] + SP, SP) for i in range(3)]
    P = np.stack(np.meshgrid(*ax, indexing="ij"), -1).reshape(-1, 3)
    return P + rng.uniform(-0.45 * SP, 0.45 * SP, P.shape)


def wobble(rng, amp, scale):
    """random smooth scalar field (sum of plane waves) used to roughen surfaces"""
    k = 5
    W = rng.normal(size=(k, 3)) / scale
    ph = rng.uniform(0, 2 * np.pi, k)
    return lambda P: amp * np.cos(P @ W.T + ph).sum(1) / np.sqrt(k)


def prim_inside(P, prim):
    """prim: ('sq', centre, axes, exponent, R, wob) or ('sph', centre, r)"""
    if prim[0] == "sph":
        return ((P - prim[1]) ** 2).sum(1) < prim[2] ** 2
    _, c, ab, e, R, wob = prim
    L = (P - c) @ R
    g = (np.abs(L / ab) ** e).sum(1)
    thr = 1.0 + (wob(L) if wob is not None else 0.0)
    return g < thr


def prim_extent(prim):
    if prim[0] == "sph":
        return prim[1] - prim[2], prim[1] + prim[2]
    r = max(prim[2]) * 1.25
    return prim[1] - r, prim[1] + r


def union_cloud(prims, rng):
    lo = np.min([prim_extent(p)[0] for p in prims], 0)
    hi = np.max([prim_extent(p)[1] for p in prims], 0)
    P = jgrid(lo, hi, rng)
    m = np.zeros(len(P), bool)
    for p in prims:
        m |= prim_inside(P, p)
    return P[m]


class Template:
    def __init__(self, pts, pot, lab, radius):
        self.pts = pts.astype(np.float32)
        self.pot = pot.astype(np.float32)
        self.lab = lab.astype(np.int32)
        n = lab.max() + 1
        cnt = np.bincount(lab, minlength=n).clip(1)
        self.sub_c = np.stack([np.bincount(lab, pts[:, i], n) / cnt for i in range(3)], 1)
        self.radius = radius


def assemble(sub_pts, placements, vmat, rng, vjit=0.12, pot_fn=None):
    """replicate a subunit cloud by placements [(R, t)], returning a Template"""
    P, L = [], []
    for i, (R, t) in enumerate(placements):
        P.append(sub_pts @ R.T + t)
        L.append(np.full(len(sub_pts), i))
    P = np.concatenate(P)
    L = np.concatenate(L)
    pot = vmat * (1 + rng.normal(0, vjit, len(P))) if pot_fn is None else pot_fn(P, L)
    rad = np.sqrt((P**2).sum(1)).max()
    return Template(P, pot, L, rad)


def shell_template(rng, r_in, r_out, dirs, groove, bump, vmat, pores=None, pore_cos=1.0):
    lo = -(r_out + bump + 2)
    P = jgrid([lo] * 3, [-lo] * 3, rng)
    r = np.sqrt((P**2).sum(1))
    P, r = P[(r > r_in) & (r < r_out + bump)], r[(r > r_in) & (r < r_out + bump)]
    u = P / r[:, None]
    d = u @ dirs.T
    part = np.partition(d, -2, axis=1)
    d1, d2 = part[:, -1], part[:, -2]
    lab = d.argmax(1)
    cell = np.sqrt(4.0 / len(dirs))  # typical angular cell radius
    ang = np.arccos(np.clip(d1, -1, 1))
    rout = r_out + bump * np.exp(-((ang / (0.6 * cell)) ** 2))
    keep = (r < rout) & ((d1 - d2) > groove)
    if pores is not None:
        keep &= (u @ pores.T).max(1) < pore_cos
    P, lab = P[keep], lab[keep]
    pot = vmat * (1 + rng.normal(0, 0.12, len(P)))
    return Template(P, pot, lab, r_out + bump)


def rnd_sq(rng, c, ab, e=None, wob=0.12):
    e = rng.uniform(1.8, 2.8) if e is None else e
    return ("sq", np.asarray(c, float), np.asarray(ab, float), e, rand_rot(rng), wobble(rng, wob, max(ab) * 0.6))


def build_ferritin(rng, kn):
    s = rng.uniform(0.97, 1.03)
    d0 = np.array([1.0, rng.uniform(0.25, 0.5), rng.uniform(0.05, 0.25)])
    d0 /= np.linalg.norm(d0)
    dirs = d0 @ OCTA.transpose(0, 2, 1)
    tri = np.array([[a, b, c] for a in (1, -1) for b in (1, -1) for c in (1, -1)]) / 3**0.5
    return shell_template(rng, 39 * s, 60 * s, dirs, 0.015, 2.0, kn["v_prot"], tri, math.cos(math.radians(6)))


def build_vlp(rng, kn):
    s = rng.uniform(0.96, 1.0)
    a5 = np.array([0, 1, PHI]) / np.linalg.norm([0, 1, PHI])
    a3 = np.array([1, 1, 1]) / 3**0.5
    perp = np.cross(a3, a5)
    perp /= np.linalg.norm(perp)
    b1 = axis_angle(np.cross(a5, perp), math.radians(10)) @ a5
    b2 = axis_angle(perp, math.radians(11)) @ a3
    b3 = axis_angle(a3, math.radians(60)) @ b2
    base = np.stack([b1, b2, b3])
    dirs = np.concatenate([base @ g.T for g in ICO])
    fivef = np.concatenate([[a5 @ g.T] for g in ICO])
    r_out = rng.uniform(122, 131) * s
    r_in = r_out - rng.uniform(24, 32)
    return shell_template(
        rng, r_in, r_out, dirs, 0.008, rng.uniform(3, 8), kn["v_prot"], fivef, math.cos(math.radians(2.5))
    )


def build_amylase(rng, kn):
    s = rng.uniform(0.95, 1.05)
    sub = union_cloud(
        [
            rnd_sq(rng, (0, 0, 0), np.array([27, 22, 20]) * s),
            ("sph", np.array([rng.uniform(14, 20), rng.uniform(-8, 8), 12.0]), 12 * s),
        ],
        rng,
    )
    t = np.array([20, 17, 5]) * s
    return assemble(sub, [(g, g @ t) for g in D2], kn["v_prot"], rng)


def build_bgal(rng, kn):
    s = rng.uniform(0.96, 1.04)
    sub = union_cloud(
        [
            rnd_sq(rng, (0, 0, 0), np.array([30, 25, 33]) * s, wob=0.1),
            ("sph", np.array([22.0, 10.0, -10.0]) * s, 18 * s),
            ("sph", np.array([-18.0, -12.0, 16.0]) * s, 15 * s),
        ],
        rng,
    )
    t = np.array([46, 33, 6]) * s
    R0 = small_rots(rng, 1, 8)[0]
    return assemble(sub, [(g @ R0, g @ t) for g in D2], kn["v_prot"], rng)


def build_thyro(rng, kn):
    s = rng.uniform(0.95, 1.05)
    n = 5
    xs = np.linspace(-100, 100, n) * s
    bend = rng.uniform(-0.002, 0.002)
    prims = []
    for x in xs:
        c = np.array([x, 17 + bend * x * x + rng.normal(0, 3), rng.normal(0, 6)])
        prims.append(("sph", c, rng.uniform(25, 30) * s))
    prims.append(rnd_sq(rng, (0, 14, 0), np.array([60, 18, 20]) * s))
    sub = union_cloud(prims, rng)
    return assemble(sub, [(g, np.zeros(3)) for g in C2], kn["v_prot"], rng)


def build_ribosome(rng, kn):
    s = rng.uniform(0.96, 1.04)
    lsu_p = [
        rnd_sq(rng, (0, 0, 25), np.array([80, 72, 64]) * s, e=rng.uniform(2.0, 2.6), wob=0.18),
        ("sph", np.array([-72, 38, 48]) * s, 20 * s),  # L1 stalk
        ("sph", np.array([2, 55, 72]) * s, 26 * s),  # central protuberance
        ("sph", np.array([74, 28, 52]) * s, 13 * s),
    ]  # P stalk
    ssu_p = [
        rnd_sq(rng, (0, 10, -62), np.array([92, 50, 38]) * s, wob=0.15),
        ("sph", np.array([-50, 40, -70]) * s, 24 * s),  # head
        ("sph", np.array([45, -20, -72]) * s, 20 * s),
    ]  # platform/foot
    L = union_cloud(lsu_p, rng)
    S = union_cloud(ssu_p, rng)
    inL = prim_inside(S, lsu_p[0])
    S = S[~inL]
    # inter-subunit cleft
    S = S[~((S[:, 2] > -34 * s) & (np.abs(S[:, 0]) < 40 * s))]
    P = np.concatenate([L, S])
    lab = np.concatenate([np.zeros(len(L), int), np.ones(len(S), int)])
    # split into a few flexible "domains" along x for per-instance jitter
    lab = lab * 3 + np.digitize(P[:, 0], [-30 * s, 30 * s])
    c = P.mean(0)
    P = P - c
    r = np.sqrt((P**2).sum(1))
    prna = np.clip(0.9 - 0.55 * r / r.max() + wobble(rng, 0.25, 25)(P), 0.05, 0.95)
    rna = rng.uniform(size=len(P)) < prna
    pot = np.where(rna, kn["v_rna"], kn["v_prot"]) * (1 + rng.normal(0, 0.1, len(P)))
    return Template(P, pot, lab, np.sqrt((P**2).sum(1)).max())


BUILDERS = {
    "apo-ferritin": build_ferritin,
    "beta-amylase": build_amylase,
    "beta-galactosidase": build_bgal,
    "ribosome": build_ribosome,
    "thyroglobulin": build_thyro,
    "virus-like-particle": build_vlp,
}


def build_distractor(rng, kn):
    R = math.exp(rng.uniform(math.log(14), math.log(110)))
    kind = rng.choice(
        ["glob", "glob", "glob", "multi", "hollow", "barrel", "rod"], p=[0.25, 0.15, 0.1, 0.25, 0.08, 0.07, 0.1]
    )
    if kind == "hollow" and R > 30:
        dirs = rng.normal(size=(int(rng.integers(12, 60)), 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        t = shell_template(rng, R * rng.uniform(0.55, 0.8), R, dirs, 0.01, 2, kn["v_prot"])
        return t, "hollow"
    if kind == "barrel" and R > 40:
        n = int(rng.integers(5, 9))
        prims = []
        for j in range(n):
            a = 2 * np.pi * j / n
            for zz in (-0.45, 0.0, 0.45):
                prims.append(("sph", np.array([0.55 * R * math.cos(a), 0.55 * R * math.sin(a), zz * R]), 0.28 * R))
        sub = union_cloud(prims, rng)
        return assemble(sub, [(np.eye(3), np.zeros(3))], kn["v_prot"], rng), "barrel"
    if kind == "rod":
        L = R
        w = rng.uniform(10, 22)
        prims = [("sph", np.array([x, rng.normal(0, 3), rng.normal(0, 3)]), w) for x in np.linspace(-L, L, 6)]
        sub = union_cloud(prims, rng)
        return assemble(sub, [(np.eye(3), np.zeros(3))], kn["v_prot"], rng), "rod"
    nprim = 1 if kind == "glob" else int(rng.integers(2, 6))
    prims = []
    for j in range(nprim):
        ab = R * rng.uniform(0.4, 0.9, 3) * (1.0 if nprim == 1 else 0.7)
        c = np.zeros(3) if j == 0 else rng.normal(0, 0.45 * R, 3)
        prims.append(rnd_sq(rng, c, ab, wob=0.15))
    sub = union_cloud(prims, rng)
    sub -= sub.mean(0)
    t = assemble(sub, [(np.eye(3), np.zeros(3))], kn["v_prot"], rng)
    # split in domains for flexibility
    t.lab = (np.digitize(t.pts[:, 0], [0.0])).astype(np.int32)
    t.sub_c = np.stack([t.pts[t.lab == i].mean(0) if (t.lab == i).any() else np.zeros(3) for i in range(2)])
    return t, kind


def instance(tpl, rng, R, flex_deg, flex_tr, drop):
    n = len(tpl.sub_c)
    Rs = small_rots(rng, n, flex_deg).astype(np.float32)
    ts = rng.normal(0, flex_tr, (n, 3)).astype(np.float32)
    c = tpl.sub_c.astype(np.float32)[tpl.lab]
    p = np.einsum("nij,nj->ni", Rs[tpl.lab], tpl.pts - c) + c + ts[tpl.lab]
    p *= rng.uniform(0.98, 1.02)
    keep = rng.uniform(size=len(p)) > drop
    return (p[keep] @ R.T.astype(np.float32)), tpl.pot[keep]


# ------------------------------------------------------------- scene
class Scene:
    def __init__(self, shape):
        self.shape = shape
        self.idx, self.occ, self.pot = [], [], []

    def splat(self, pts_A, pot, centre_vox_zyx):
        D, H, W = self.shape
        v = pts_A[:, ::-1] / VOX + centre_vox_zyx  # -> (z, y, x) voxels
        iv = np.rint(v).astype(np.int64)
        ok = ((iv >= 0) & (iv < np.array(self.shape))).all(1)
        iv = iv[ok]
        self.idx.append((iv[:, 0] * H + iv[:, 1]) * W + iv[:, 2])
        self.pot.append(pot[ok])

    def fields(self):
        n = int(np.prod(self.shape))
        if not self.idx:
            z = np.zeros(self.shape, np.float32)
            return z, z.copy()
        idx = np.concatenate(self.idx)
        pot = np.concatenate(self.pot).astype(np.float64)
        occ = np.bincount(idx, minlength=n) * PT_OCC
        pm = np.bincount(idx, weights=pot, minlength=n) * PT_OCC
        over = np.maximum(occ, 1.0)
        return (occ / over).reshape(self.shape).astype(np.float32), (pm / over).reshape(self.shape).astype(np.float32)


def place(rng, placed, r_vox, zlo, zhi, H, W, ntry=60, fac=0.9, margin=0.25):
    for _ in range(ntry):
        lo_z, hi_z = zlo + 0.3 * r_vox, zhi - 0.3 * r_vox
        if hi_z <= lo_z:
            lo_z = hi_z = 0.5 * (zlo + zhi)
        c = np.array(
            [
                rng.uniform(lo_z, hi_z),
                rng.uniform(-margin * r_vox, H - 1 + margin * r_vox),
                rng.uniform(-margin * r_vox, W - 1 + margin * r_vox),
            ]
        )
        if placed:
            P = np.array([p[0] for p in placed])
            rr = np.array([p[1] for p in placed])
            if (np.sqrt(((P - c) ** 2).sum(1)) < fac * (rr + r_vox)).any():
                continue
        return c
    return None


def smooth_ball(shape, c, r, soft=0.7):
    """bbox-limited soft sphere mask; returns (slices, mask)"""
    lo = np.maximum(np.floor(c - r - 3).astype(int), 0)
    hi = np.minimum(np.ceil(c + r + 3).astype(int) + 1, shape)
    if (hi <= lo).any():
        return None, None
    g = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    d = np.sqrt((g[0] - c[0]) ** 2 + (g[1] - c[1]) ** 2 + (g[2] - c[2]) ** 2)
    return tuple(slice(a, b) for a, b in zip(lo, hi)), 1.0 / (1.0 + np.exp((d - r) / soft))


def membrane_profile(dA, kn):
    hs = kn["mem_head_sep"] / 2
    return kn["mem_head_v"] * (np.exp(-((dA - hs) ** 2) / 50.0) + np.exp(-((dA + hs) ** 2) / 50.0)) - kn[
        "mem_tail_v"
    ] * np.exp(-(dA**2) / 120.0)


def build_scene(rng, shape, kn, log):
    D, H, W = shape
    volfrac = D * H * W / REF_VOL
    scene = Scene(shape)
    zlo, zhi = kn["slab_lo"], kn["slab_hi"]
    placed = []  # (centre zyx vox, radius vox, kind)
    picks = {n: [] for n, _ in CLASSES}
    order = sorted(CLASSES, key=lambda t: -t[1])
    crowd = kn["crowd"]
    for name, rad in order:
        base = 2 + 13 * np.clip(crowd + rng.normal(0, 0.25), 0, 1)
        n = int(round(base * volfrac * kn["slab_frac"] / 0.72))
        kn["n_attempt_" + name] = n
        tpl = BUILDERS[name](rng, kn)
        rv = rad / VOX
        for k in range(n):
            c = place(rng, placed, rv, zlo, zhi, H, W)
            if c is None:
                continue
            R = rand_rot(rng)
            p, pot = instance(tpl, rng, R, kn["flex_deg"], kn["flex_tr"], kn["dropout"])
            scene.splat(p, pot, c)
            placed.append((c, rv, name))
            if (c >= -0.5).all() and (c <= np.array(shape) - 0.5).all():
                M = np.eye(4)
                M[:3, :3] = R
                picks[name].append(
                    {
                        "location": {"x": float(c[2] * VOX), "y": float(c[1] * VOX), "z": float(c[0] * VOX)},
                        "transformation_": M.tolist(),
                        "instance_id": 0,
                    }
                )
    # distractor proteins
    bank = [build_distractor(rng, kn) for _ in range(kn["n_bank"])]
    nd = int(round(kn["n_distractors"] * volfrac))
    kinds = {}
    for k in range(nd):
        tpl, kind = bank[int(rng.integers(len(bank)))]
        rv = tpl.radius / VOX
        c = place(rng, placed, rv, zlo, zhi, H, W, ntry=8, fac=0.85, margin=0.6)
        if c is None:
            continue
        p, pot = instance(tpl, rng, rand_rot(rng), 4.0, 2.0, 0.02)
        scene.splat(p, pot, c)
        placed.append((c, rv, "distractor"))
        kinds[kind] = kinds.get(kind, 0) + 1
    kn["distractor_kinds"] = kinds
    # filaments (actin-like double strands)
    tgt = [(p[0], p[1]) for p in placed if p[2] != "distractor"]
    for f in range(kn["n_filaments"]):
        c0 = np.array([rng.uniform(zlo, zhi), rng.uniform(0, H), rng.uniform(0, W)])
        d = rng.normal(size=3)
        d[0] *= 0.2
        d /= np.linalg.norm(d)
        L = rng.uniform(400, 2500)
        s = np.arange(-L / 2, L / 2, SP)
        perp1 = np.cross(d, [1.0, 0, 0])
        perp1 /= np.linalg.norm(perp1)
        perp2 = np.cross(d, perp1)
        ph = 2 * np.pi * s / 720.0
        pts = []
        for strand in (0, np.pi):
            ax = (np.cos(ph + strand)[:, None] * perp1 + np.sin(ph + strand)[:, None] * perp2) * 20.0
            cen = s[:, None] * d + ax  # (n,3) zyx A
            off = rng.normal(0, 11, (len(s), 12, 3))
            pts.append((cen[:, None, :] + off).reshape(-1, 3))
        pts = np.concatenate(pts)
        cv = pts / VOX + c0
        ok = np.ones(len(cv), bool)
        for tc, tr in tgt:
            ok &= ((cv - tc) ** 2).sum(1) > (tr + 1) ** 2
        pts = pts[ok]
        scene.splat(pts[:, ::-1], np.full(len(pts), kn["v_prot"], np.float32), c0)
    occ, pm = scene.fields()
    z = np.arange(D, dtype=np.float32)
    slab = (1 / (1 + np.exp(-(z - zlo) / 0.8)) * 1 / (1 + np.exp((z - zhi) / 0.8))).astype(np.float32)
    V = slab[:, None, None] * kn["v_ice"] * (1 - occ) + pm
    del occ, pm
    if kn["ice_noise"] > 0:
        V += (rng.standard_normal(V.shape, dtype=np.float32) * kn["ice_noise"]) * slab[:, None, None]
    # vesicles
    for v in range(kn["n_vesicles"]):
        for _ in range(10):
            Rv = rng.uniform(12, 70)
            c = np.array([rng.uniform(zlo, zhi), rng.uniform(0, H), rng.uniform(0, W)])
            if all(abs(np.linalg.norm(tc - c) - Rv) > tr + 3 for tc, tr in tgt):
                break
        else:
            continue
        sl, _ = smooth_ball(shape, c, Rv + 3)
        if sl is None:
            continue
        g = np.ogrid[sl[0], sl[1], sl[2]]
        d = np.sqrt((g[0] - c[0]) ** 2 + (g[1] - c[1]) ** 2 + (g[2] - c[2]) ** 2)
        V[sl] += (membrane_profile((d - Rv) * VOX, kn) * slab[sl[0], None, None]).astype(np.float32)
    if kn["planar_membrane"]:
        nrm = rng.normal(size=3)
        nrm[0] *= 0.3
        nrm /= np.linalg.norm(nrm)
        c = np.array([rng.uniform(zlo, zhi), rng.uniform(0, H), rng.uniform(0, W)])
        g = np.ogrid[0:D, 0:H, 0:W]
        sd = (g[0] - c[0]) * nrm[0] + (g[1] - c[1]) * nrm[1] + (g[2] - c[2]) * nrm[2]
        V += (membrane_profile(sd * VOX, kn) * slab[:, None, None]).astype(np.float32)
    # carbon support edge
    if kn["carbon"]:
        a = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:H, 0:W]
        sd = (yy - H / 2) * math.sin(a) + (xx - W / 2) * math.cos(a) - rng.uniform(-0.35, 0.35) * min(H, W)
        m2 = 1 / (1 + np.exp(-sd / 1.0))
        th = rng.uniform(6, 16)
        zc = np.arange(D)
        mz = ((zc >= max(zlo - th, 0)) & (zc < zlo)).astype(np.float32)
        V += (kn["v_carbon"] * mz[:, None, None] * m2[None]).astype(np.float32)
    # gold and contamination
    for gI in range(kn["n_gold"]):
        r = rng.uniform(2.0, 5.5)
        zc = rng.choice([zlo, zhi, rng.uniform(zlo, zhi)]) + rng.normal(0, 1.5)
        c = np.array([zc, rng.uniform(0, H), rng.uniform(0, W)])
        sl, m = smooth_ball(shape, c, r, 0.5)
        if sl is not None:
            V[sl] = V[sl] * (1 - m) + kn["v_gold"] * m
    for cI in range(kn["n_contam"]):
        r = rng.uniform(8, 30)
        top = rng.uniform() < 0.5
        zc = (zhi + 0.5 * r) if top else (zlo - 0.5 * r)
        c = np.array([zc, rng.uniform(0, H), rng.uniform(0, W)])
        sl, m = smooth_ball(shape, c, r, 1.5)
        if sl is not None:
            V[sl] = np.maximum(V[sl], kn["v_contam"] * m)
    return V, slab, picks


# ------------------------------------------------------------- imaging
def proj_matrix(D, W, ang):
    z = np.arange(D) - (D - 1) / 2
    x = np.arange(W) - (W - 1) / 2
    Z, X = np.meshgrid(z, x, indexing="ij")
    Z, X = Z.ravel(), X.ravel()
    cols = np.arange(D * W)
    R, C, Vv = [], [], []
    for t, a in enumerate(ang):
        u = X * math.cos(a) + Z * math.sin(a) + (W - 1) / 2
        i0 = np.floor(u).astype(np.int64)
        f = u - i0
        for ii, ww in ((i0, 1 - f), (i0 + 1, f)):
            ok = (ii >= 0) & (ii < W)
            R.append(t * W + ii[ok])
            C.append(cols[ok])
            Vv.append(ww[ok])
    A = sparse.csr_matrix(
        (np.concatenate(Vv).astype(np.float32), (np.concatenate(R), np.concatenate(C))), shape=(len(ang) * W, D * W)
    )
    return A


def wavelength(kv):
    V = kv * 1e3
    return 12.2643 / math.sqrt(V * (1 + 0.978466e-6 * V))


def interaction(kv):
    lam = wavelength(kv)
    m0c2 = 511e3
    V = kv * 1e3
    return 2 * np.pi / (lam * V) * (m0c2 + V) / (2 * m0c2 + V)


def chi(k2, df, lam, cs):
    return np.pi * lam * df * k2 - 0.5 * np.pi * cs * lam**3 * k2**2


def simulate_tilts(V, slab, rng, kn):
    D, H, W = V.shape
    ang = np.deg2rad(kn["angles"])
    nt = len(ang)
    A = proj_matrix(D, W, ang)
    M = np.ascontiguousarray(V.transpose(0, 2, 1).reshape(D * W, H))
    P = (A @ M).reshape(nt, W, H)  # (tilt, u, y), sum of V
    # analytic completion of the laterally infinite ice slab
    slabproj = (A @ np.repeat(slab, W)).reshape(nt, W)
    T = slab.sum()
    P += (kn["v_ice"] * (T / np.cos(ang)[:, None] - slabproj))[:, :, None].astype(np.float32)
    lam = wavelength(kn["kv"])
    phase = P * (interaction(kn["kv"]) * VOX)
    phase -= phase.mean(axis=(1, 2), keepdims=True)
    F = np.fft.rfft2(phase)
    fu = np.fft.fftfreq(W)[:, None]
    fy = np.fft.rfftfreq(H)[None, :]
    ku, ky = fu / VOX, fy / VOX
    k2 = ku**2 + ky**2
    k = np.sqrt(k2)
    azi = np.arctan2(ky, ku)
    cs = kn["cs_mm"] * 1e7
    w = kn["amp_contrast"]
    # dose bookkeeping in acquisition order
    dose_t = kn["dose_per_tilt"]
    acc = np.zeros(nt)
    running = 0.0
    for i in kn["acq_order"]:
        acc[i] = running + 0.5 * dose_t[i]
        running += dose_t[i]
    Ne = 0.245 * np.maximum(k, 1e-4) ** -1.665 + 2.81
    mtf = np.sinc(fu) * np.sinc(fy) * np.exp(-kn["mtf_decay"] * (fu**2 + fy**2))
    nstrip = kn["n_strips"]
    ucent = np.linspace(0, W - 1, nstrip) if nstrip > 1 else np.array([(W - 1) / 2])
    uu = np.arange(W)
    out = np.empty((nt, W, H), np.float32)
    thick_A = T * VOX
    for t in range(nt):
        dft = kn["defocus"] * 1e4 + kn["df_jitter"][t]
        env = (
            np.exp(-kn["bfac"] * k2 / 4)
            * np.exp(-acc[t] / (2 * Ne))
            * np.exp(-2 * np.pi**2 * kn["drift_px"][t] ** 2 * (fu**2 + fy**2))
            * mtf
        )
        shift = np.exp(-2j * np.pi * (fu * kn["shift_u"][t] + fy * kn["shift_y"][t]))
        img = np.zeros((W, H))
        wsum = np.zeros(W)
        for s_i, uc in enumerate(ucent):
            df = dft + (uc - (W - 1) / 2) * VOX * math.tan(ang[t]) * kn["grad_sign"]
            dfa = df + 0.5 * kn["astig"] * np.cos(2 * (azi - kn["astig_ang"]))
            x = chi(k2, dfa, lam, cs)
            Es = np.exp(-((np.pi * kn["alpha_rad"] / lam) ** 2) * (cs * lam**3 * k**3 + df * lam * k) ** 2)
            Et = np.exp(-0.5 * (np.pi * lam * kn["focus_spread"] * k2) ** 2)
            ctf = -2 * (math.sqrt(1 - w * w) * np.sin(x) + w * np.cos(x)) * Es * Et
            c = np.fft.irfft2(F[t] * ctf * env * shift, s=(W, H))
            if nstrip > 1:
                wt = np.clip(1 - np.abs(uu - uc) / (ucent[1] - ucent[0]), 0, 1)
            else:
                wt = np.ones(W)
            img += c * wt[:, None]
            wsum += wt
        img /= wsum[:, None]
        trans = math.exp(-thick_A / (kn["mfp"] * math.cos(ang[t])))
        I = np.clip(1 + img, 0.02, None)
        N = dose_t[t] * VOX**2 * (trans * I + (1 - trans) * kn["inelastic_keep"])
        cnt = rng.poisson(N).astype(np.float32)
        if kn["read_noise"] > 0:
            cnt += rng.normal(0, kn["read_noise"] * math.sqrt(N.mean()), cnt.shape).astype(np.float32)
        out[t] = cnt / cnt.mean() - 1
    return out, A


def reconstruct(g, A, shape, kn):
    D, H, W = shape
    nt = g.shape[0]
    ang = np.deg2rad(kn["angles"])
    Wp = 2 * W
    fu = np.fft.fftfreq(Wp)[:, None]
    fy = np.fft.rfftfreq(H)[None, :]
    a = np.abs(fu)
    fc = kn["filter_cutoff"] * 0.5
    typ = kn["recon_filter"]
    if typ == "sirt_like":
        n_it, alpha = kn["sirt_iter"], 0.5
        filt = (1 - (1 - alpha * np.minimum(a / 0.5, 1)) ** n_it) * 0.5 / n_it + 0 * a
        filt = filt / max(filt.max(), 1e-9) * 0.5
    else:
        filt = a.copy()
        x = np.minimum(a / fc, 1.0)
        if typ == "shepp_logan":
            filt *= np.sinc(x / 2)
        elif typ == "hamming":
            filt *= 0.54 + 0.46 * np.cos(np.pi * x)
        elif typ == "hann":
            filt *= 0.5 + 0.5 * np.cos(np.pi * x)
        elif typ == "cosine":
            filt *= np.cos(np.pi * x / 2)
        filt[a > fc] = 0
    filt = filt + kn["dc_boost"] * np.exp(-((a / 0.01) ** 2))
    k2 = (fu**2 + fy**2) / VOX**2
    lam = wavelength(kn["kv"])
    out = np.empty((nt, W, H), np.float32)
    for t in range(nt):
        corr = 1.0
        if kn["ctf_corr"] != "none":
            x = chi(k2, kn["defocus"] * 1e4, lam, kn["cs_mm"] * 1e7)
            T = np.sqrt(1 - kn["amp_contrast"] ** 2) * np.sin(x) + kn["amp_contrast"] * np.cos(x)
            corr = np.sign(T) if kn["ctf_corr"] == "phaseflip" else T / (T * T + kn["wiener_eps"])
        Fg = np.fft.rfft2(g[t], s=(Wp, H))
        out[t] = np.fft.irfft2(Fg * filt * corr, s=(Wp, H))[:W]
    rec = A.T @ out.reshape(nt * W, H)
    return np.ascontiguousarray(rec.reshape(D, W, H).transpose(0, 2, 1)).astype(np.float32)


def post_look(v, rng, kn):
    look = kn["look"]
    if look == "gauss":
        return ndimage.gaussian_filter(v, kn["look_sigma"])
    if look == "aniso_gauss":
        s = kn["look_sigma"]
        return ndimage.gaussian_filter(v, (s * 1.8, s, s))
    if look in ("lowpass", "deconv"):
        F = np.fft.rfftn(v)
        fz = np.fft.fftfreq(v.shape[0])[:, None, None]
        fy = np.fft.fftfreq(v.shape[1])[None, :, None]
        fx = np.fft.rfftfreq(v.shape[2])[None, None, :]
        f = np.sqrt(fz**2 + fy**2 + fx**2)
        if look == "lowpass":
            h = 1 / (1 + (f / kn["look_cutoff"]) ** (2 * kn["look_order"]))
        else:  # tom_deconv-like: Wiener with a radial CTF and exponential SNR fall-off
            k2 = (f / VOX) ** 2
            x = chi(k2, kn["defocus"] * 1e4, wavelength(kn["kv"]), kn["cs_mm"] * 1e7)
            T = np.sqrt(1 - kn["amp_contrast"] ** 2) * np.sin(x) + kn["amp_contrast"] * np.cos(x)
            snr = 10 ** (3 * kn["look_strength"]) * np.exp(-100 * f * kn["look_falloff"] / 10)
            h = T / (T * T + 1 / snr)
            h = h / np.abs(h).max()
            h *= 1 / (1 + (f / 0.4) ** 8)
        return np.fft.irfftn(F * h, s=v.shape, axes=(0, 1, 2)).astype(np.float32)
    if look == "bilateral":
        sd = v.std()
        for it in range(kn["look_iters"]):
            acc = v.copy()
            wsum = np.ones_like(v)
            hr = (kn["look_range"] * sd) ** 2
            for ax in range(3):
                for sh in (1, -1):
                    n = np.roll(v, sh, axis=ax)
                    w = np.exp(-((n - v) ** 2) / (2 * hr)) * 0.6
                    acc += w * n
                    wsum += w
            v = acc / wsum
        return v
    if look == "smooth_blend":
        s = ndimage.gaussian_filter(v, kn["look_sigma"] * 1.5)
        return kn["look_blend"] * s + (1 - kn["look_blend"]) * v
    return v


# ------------------------------------------------------------- knobs
def draw_knobs(rng, shape):
    D, H, W = shape
    kn = {}
    frac = rng.uniform(0.5, 0.95)
    th = frac * D
    lo = rng.uniform(0, D - th)
    kn.update(slab_frac=frac, slab_lo=lo, slab_hi=lo + th)
    kn["crowd"] = rng.uniform(0, 1)
    kn["v_ice"] = rng.uniform(3.6, 4.8)
    kn["v_prot"] = kn["v_ice"] + rng.uniform(1.6, 2.6)
    kn["v_rna"] = kn["v_ice"] + rng.uniform(3.2, 5.0)
    kn["flex_deg"] = rng.uniform(0.5, 4)
    kn["flex_tr"] = rng.uniform(0.3, 3)
    kn["dropout"] = rng.uniform(0, 0.08)
    kn["n_bank"] = int(rng.integers(8, 18))
    kn["n_distractors"] = float(rng.uniform(20, 60) + 200 * kn["crowd"] * rng.uniform(0.3, 1.0))
    kn["n_filaments"] = int(rng.integers(0, 5)) if rng.uniform() < 0.4 else 0
    kn["n_vesicles"] = int(rng.integers(1, 5)) if rng.uniform() < 0.55 else 0
    kn["planar_membrane"] = bool(rng.uniform() < 0.25)
    kn["mem_head_sep"] = rng.uniform(32, 42)
    kn["mem_head_v"] = rng.uniform(1.5, 3.0)
    kn["mem_tail_v"] = rng.uniform(0.3, 1.2)
    kn["ice_noise"] = float(rng.uniform(0, 0.3))
    kn["carbon"] = bool(rng.uniform() < 0.2)
    kn["v_carbon"] = rng.uniform(6, 10)
    kn["n_gold"] = int(rng.integers(1, 7)) if rng.uniform() < 0.4 else 0
    kn["v_gold"] = rng.uniform(10, 22)
    kn["n_contam"] = int(rng.integers(1, 4)) if rng.uniform() < 0.25 else 0
    kn["v_contam"] = rng.uniform(5, 9)
    # acquisition
    amax = rng.uniform(45, 70)
    amin = -amax + rng.uniform(-6, 6) if rng.uniform() < 0.3 else -amax
    step = rng.uniform(1.5, 4.0)
    angles = np.arange(amin, amax + 1e-6, step)
    angles -= angles[np.argmin(np.abs(angles))] * (rng.uniform() < 0.7)
    nt = len(angles)
    kn["angles"] = angles
    kn["tilt_range"] = [float(angles.min()), float(angles.max())]
    kn["tilt_step"] = step
    scheme = rng.choice(["dose_symmetric", "bidirectional", "continuous"])
    kn["scheme"] = str(scheme)
    if scheme == "continuous":
        order = np.arange(nt)
    elif scheme == "bidirectional":
        z0 = int(np.argmin(np.abs(angles)))
        order = np.concatenate([np.arange(z0, nt), np.arange(z0 - 1, -1, -1)])
    else:
        order = np.argsort(np.abs(angles) + 1e-3 * (angles < 0), kind="stable")
    kn["acq_order"] = order
    kn["total_dose"] = rng.uniform(40, 160)
    dw = (1 / np.cos(np.deg2rad(angles))) ** rng.uniform(0, 1)
    kn["dose_per_tilt"] = kn["total_dose"] * dw / dw.sum()
    kn["kv"] = float(rng.choice([300.0, 300.0, 200.0]))
    kn["cs_mm"] = rng.uniform(2.0, 2.9)
    kn["amp_contrast"] = rng.uniform(0.05, 0.14)
    kn["defocus"] = rng.uniform(1.5, 6.0)
    kn["df_jitter"] = rng.normal(0, rng.uniform(50, 1500), nt)
    kn["astig"] = rng.uniform(0, 3000)
    kn["astig_ang"] = rng.uniform(0, np.pi)
    kn["grad_sign"] = float(rng.choice([-1.0, 1.0]))
    kn["n_strips"] = int(rng.choice([1, 3, 5]))
    kn["alpha_rad"] = rng.uniform(0.005, 0.06) * 1e-3
    kn["focus_spread"] = rng.uniform(20, 120)
    kn["bfac"] = rng.uniform(0, 2500)
    kn["drift_px"] = np.abs(rng.normal(0, rng.uniform(0.05, 0.7), nt))
    kn["mtf_decay"] = rng.uniform(0, 4)
    sd = rng.uniform(0, 1.5)
    if rng.uniform() < 0.5:
        su, sy = rng.normal(0, sd, nt), rng.normal(0, sd, nt)
    else:
        su, sy = np.cumsum(rng.normal(0, sd / 3, nt)), np.cumsum(rng.normal(0, sd / 3, nt))
        su -= su.mean()
        sy -= sy.mean()
    kn["align_sd_px"] = sd
    kn["shift_u"], kn["shift_y"] = su, sy
    kn["mfp"] = rng.uniform(2800, 4200) if kn["kv"] == 300.0 else rng.uniform(2200, 3200)
    kn["energy_filter"] = bool(rng.uniform() < 0.7)
    kn["inelastic_keep"] = 0.0 if kn["energy_filter"] else rng.uniform(0.3, 0.8)
    kn["read_noise"] = rng.uniform(0, 0.5) if rng.uniform() < 0.25 else 0.0
    # reconstruction
    kn["recon_filter"] = str(rng.choice(["ramlak", "shepp_logan", "hamming", "hann", "cosine", "sirt_like"]))
    kn["filter_cutoff"] = rng.uniform(0.5, 1.0)
    kn["sirt_iter"] = int(rng.integers(5, 40))
    kn["dc_boost"] = rng.uniform(0, 0.02)
    kn["ctf_corr"] = str(rng.choice(["none", "phaseflip", "phaseflip", "wiener"]))
    kn["wiener_eps"] = rng.uniform(0.05, 0.5)
    kn["look"] = str(rng.choice(["none", "gauss", "aniso_gauss", "lowpass", "bilateral", "deconv", "smooth_blend"]))
    kn["look_sigma"] = rng.uniform(0.5, 1.5)
    kn["look_cutoff"] = rng.uniform(0.1, 0.35)
    kn["look_order"] = int(rng.integers(2, 8))
    kn["look_iters"] = int(rng.integers(1, 4))
    kn["look_range"] = rng.uniform(0.5, 2.0)
    kn["look_strength"] = rng.uniform(0.3, 1.0)
    kn["look_falloff"] = rng.uniform(0.5, 1.5)
    kn["look_blend"] = rng.uniform(0.4, 0.9)
    kn["final_sd"] = float(10 ** rng.uniform(-6, -4))
    kn["final_offset"] = float(rng.uniform(-5, 5) * kn["final_sd"])
    return kn


def jsonable(o):
    if isinstance(o, dict):
        return {k: jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return jsonable(o.tolist())
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return o


# ------------------------------------------------------------- output
def bin2(v):
    d, h, w = (s // 2 * 2 for s in v.shape)
    v = v[:d, :h, :w]
    return v.reshape(d // 2, 2, h // 2, 2, w // 2, 2).mean(axis=(1, 3, 5), dtype=np.float64).astype(np.float32)


def write_zarr(path, vol):
    levels = [vol]
    for _ in range(2):
        levels.append(bin2(levels[-1]))
    try:
        g = zarr.open_group(path, mode="w", zarr_format=2)
    except TypeError:
        g = zarr.open_group(path, mode="w")
    for i, a in enumerate(levels):
        ch = tuple(min(64, s) for s in a.shape)
        if hasattr(g, "create_array"):
            arr = g.create_array(str(i), shape=a.shape, dtype="float32", chunks=ch)
        else:
            arr = g.create_dataset(str(i), shape=a.shape, dtype="float32", chunks=ch)
        arr[...] = a
    axes = [{"name": n, "type": "space", "unit": "angstrom"} for n in ("z", "y", "x")]
    ds = [
        {"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": [VOX * 2**i] * 3}]} for i in range(3)
    ]
    g.attrs["multiscales"] = [{"axes": axes, "datasets": ds, "version": "0.4", "name": "/"}]


def make_run(root, run, seed, idx, shape):
    t0 = time.time()
    rng = np.random.default_rng([seed, idx])
    kn = draw_knobs(rng, shape)
    V, slab, picks = build_scene(rng, shape, kn, None)
    t1 = time.time()
    g, A = simulate_tilts(V, slab, rng, kn)
    del V
    t2 = time.time()
    rec = reconstruct(g, A, shape, kn)
    del g, A
    rec = post_look(rec, rng, kn)
    rec = rec.astype(np.float64)
    rec = (rec - rec.mean()) / max(rec.std(), 1e-12)
    rec = (rec * kn["final_sd"] + kn["final_offset"]).astype(np.float32)
    t3 = time.time()
    tmp = os.path.join(root, "train", ".tmp_" + run)
    shutil.rmtree(tmp, ignore_errors=True)
    st = os.path.join(tmp, "static")
    ov = os.path.join(tmp, "overlay", "Picks")
    os.makedirs(os.path.join(st, "VoxelSpacing10.000"))
    os.makedirs(ov)
    write_zarr(os.path.join(st, "VoxelSpacing10.000", "denoised.zarr"), rec)
    counts = {}
    for name, _ in CLASSES:
        pts = picks[name]
        for k, p in enumerate(pts):
            p["instance_id"] = k
        counts[name] = len(pts)
        with open(os.path.join(ov, name + ".json"), "w") as f:
            json.dump(
                {
                    "pickable_object_name": name,
                    "user_id": "curation",
                    "session_id": "0",
                    "run_name": run,
                    "voxel_spacing": None,
                    "unit": "angstrom",
                    "trust_orientation": True,
                    "points": pts,
                },
                f,
            )
    kn["counts"] = counts
    kn["shape"] = list(shape)
    kn["seed"], kn["run_index"] = seed, idx
    kn["timing_s"] = {"scene": t1 - t0, "imaging": t2 - t1, "recon_post": t3 - t2}
    with open(os.path.join(st, "params.json"), "w") as f:
        json.dump(jsonable(kn), f, indent=1)
    sdst = os.path.join(root, "train", "static", "ExperimentRuns", run)
    odst = os.path.join(root, "train", "overlay", "ExperimentRuns", run)
    os.makedirs(os.path.dirname(sdst), exist_ok=True)
    os.makedirs(os.path.dirname(odst), exist_ok=True)
    shutil.rmtree(sdst, ignore_errors=True)
    os.rename(st, sdst)
    os.rename(os.path.join(tmp, "overlay"), odst)
    shutil.rmtree(tmp, ignore_errors=True)
    return counts, time.time() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shape", type=int, nargs=3, default=[96, 256, 256])
    ap.add_argument("--first", type=int, default=1)
    a = ap.parse_args(argv)
    for i in range(a.first, a.first + a.runs):
        run = "TS_E_%d" % i
        s = os.path.join(a.out, "train", "static", "ExperimentRuns", run, "VoxelSpacing10.000", "denoised.zarr")
        o = os.path.join(a.out, "train", "overlay", "ExperimentRuns", run, "Picks")
        if os.path.isdir(s) and os.path.isdir(o) and len(os.listdir(o)) == len(CLASSES):
            print("%s: exists, skipped" % run, flush=True)
            continue
        counts, dt = make_run(a.out, run, a.seed, i, tuple(a.shape))
        print("%s: %.1f s  %s" % (run, dt, " ".join("%s=%d" % (k, v) for k, v in counts.items())), flush=True)


if __name__ == "__main__":
    main()
