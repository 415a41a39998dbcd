"""An oracle template matcher on our own simulator's runs: what a classical detector reaches that knows the generator.

A diagnostic, not a detector for users: it needs what no user has. For each run it replays the run from its seed
(:func:`cryopoint.synth.dataset.run_rng`) and so knows the run's exact transfer (defocus, missing wedge, tilt
comb, CTF with its B-factor envelope and the Fourier path's Wiener weights), the power of the noise and of the
specimen, and every class's exact analytic shape (:mod:`cryopoint.synth.shapes`). The tomogram is whitened by that
power; each template is the shape seen through the same transfer and whitening; the score is the local
normalised cross-correlation under a sphere of the shape's extent (the form template matching tools use), the
maximum over a rotation grid. Peaks come from cryopoint's own peak finder; per-class F-beta at thresholds tuned on
the scored runs themselves ("ranking"), beside a checkpoint's peaks on the same runs.

Rotations: beta-galactosidase's model is exactly D2-symmetric, so its grid covers SO(3) modulo D2 (the body z axis on
a hemisphere, the spin in [0°, 180°)); thyroglobulin's is not (its lobes sit off the axes: a D2 turn of it
correlates 0.85-0.94 with itself), so it gets that grid times the four D2 turns, the whole of SO(3); apo-ferritin's
near-spherical cage gets one orientation. Ribosome and virus-like particle are not matched by default
(``--classes``): the network already ranks them near 1.

Only the Fourier imaging path can be replayed exactly (source A, the ``realistic`` preset): the real-space path
draws its noise tilt by tilt and is refused.

::

    python -m benchmarks.template_ceiling --offset 17000 --step 20   # source A's 16 fresh runs: ~1 h on 2 cores
    python -m benchmarks.template_ceiling --root ROOT --runs 4       # the first 4 runs of any Fourier-path root

Writes ``benchmarks/results/template_ceiling.{md,json}``. The matcher's peaks (every local maximum, one file per run)
stay in the cryopoint cache (``template_ceiling/<key>/``, printed at the start): a stopped run resumes where it
stopped, and a rerun with the same root, step and classes only rescores them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.fft
import torch
from rich.console import Console
from rich.progress import track

from benchmarks.bench_common import machine

REPO = Path(__file__).resolve().parents[1]
console = Console()
#: Classes matched by default: the two hard classes and apo-ferritin (one orientation).
DEFAULT_CLASSES = ("apo-ferritin", "beta-galactosidase", "thyroglobulin")
#: Classes matched with one orientation (near-spherical models).
SPHERICAL = ("apo-ferritin", "virus-like-particle")
#: Classes whose model is exactly D2-symmetric: their grid covers SO(3) modulo D2, a quarter of the rotations.
D2_SYMMETRIC = ("beta-galactosidase",)
#: The 180° turns about x, y and z, and the identity.
D2 = tuple(np.diag(d) for d in ((1.0, 1.0, 1.0), (1.0, -1.0, -1.0), (-1.0, 1.0, -1.0), (-1.0, -1.0, 1.0)))
#: Peaks kept per class and run (far more than the particles; ranking needs the background too).
TOP_K = 2000
#: Bump when the matcher's peaks would change (grids, masks, whitening): the per-run cache is keyed by it.
GRID_VERSION = 2


def so3_d2_grid(step_deg: float) -> np.ndarray:
    """Rotations ``(N, 3, 3)`` (local to lab) covering SO(3) modulo D2 with spacing about ``step_deg``.

    The body z axis takes Fibonacci points on the upper hemisphere (one per ``step²`` of solid angle), and the
    spin about it ``180° / step`` values in [0°, 180°): the D2 elements (180° about x, y or z) map the rest of
    SO(3) onto these.
    """
    if not 1.0 <= step_deg <= 90.0:
        raise ValueError(f"step_deg must be between 1 and 90 degrees; got {step_deg}.")
    step = np.radians(step_deg)
    n_dir = max(1, int(round(2 * np.pi / step**2)))
    i = np.arange(n_dir) + 0.5
    z = 1 - i / n_dir
    phi = np.pi * (1 + 5**0.5) * i
    r = np.sqrt(1 - z * z)
    dirs = np.stack([r * np.cos(phi), r * np.sin(phi), z], 1)
    n_psi = max(1, int(round(np.pi / step)))
    out = []
    for d in dirs:
        v = np.cross([0.0, 0.0, 1.0], d)
        s, c = np.linalg.norm(v), d[2]
        align = np.eye(3)
        if s > 1e-9:  # Rodrigues: the rotation taking e_z to d
            k = v / s
            kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
            align = np.eye(3) + s * kx + (1 - c) * kx @ kx
        for p in np.arange(n_psi) * np.pi / n_psi:
            rz = np.array([[np.cos(p), -np.sin(p), 0], [np.sin(p), np.cos(p), 0], [0, 0, 1]])
            out.append(align @ rz)
    return np.array(out)


def class_rotations(name: str, step_deg: float) -> np.ndarray:
    """The rotations a class is matched over: one for a near-spherical model, SO(3) modulo D2 for an exactly
    D2-symmetric one, else the whole of SO(3) (the D2 grid composed with the four D2 elements)."""
    if name in SPHERICAL:
        return np.eye(3)[None]
    grid = so3_d2_grid(step_deg)
    return grid if name in D2_SYMMETRIC else np.concatenate([grid @ g for g in D2])


def render_template(shape, rot: np.ndarray, voxel_size: float) -> tuple[np.ndarray, int]:
    """A shape's density rotated by ``rot`` (local to lab), centred in a cube of half-width ``h`` voxels."""
    h = int(np.ceil(shape.extent / voxel_size)) + 1
    ax = np.arange(-h, h + 1, dtype=np.float32) * voxel_size
    dz, dy, dx = ax[:, None, None], ax[None, :, None], ax[None, None, :]
    r = rot.astype(np.float32)
    local = tuple(r[0, i] * dx + r[1, i] * dy + r[2, i] * dz for i in range(3))  # as the simulator pastes
    return np.asarray(shape(local), dtype=np.float32), h


def replay_run(root: Path, name: str):
    """``(params, defocus_um, dose, density)`` of one run of a synthetic root, replayed from its seed.

    Raises:
        ValueError: the root is not the Fourier path's, or the replayed particles differ from the run's truth
            (a root written by another version of the simulator).
    """
    from cryopoint.io import read_truth
    from cryopoint.synth.dataset import run_rng
    from cryopoint.synth.params import get_preset
    from cryopoint.synth.sample import build_sample
    from cryopoint.synth.simulate import _draw_run_knobs

    meta = json.loads((Path(root) / "cryopoint_synthetic.json").read_text())
    params = get_preset(meta["preset"], **meta.get("overrides", {}))
    rng = run_rng(meta["seed"], "train", name)
    params, defocus, dose, _gain = _draw_run_knobs(params, rng)
    if params.imaging != "fourier":
        raise ValueError(
            f"{root}: run {name} uses the {params.imaging!r} imaging path; only the Fourier path replays exactly "
            "(its noise is one draw over the whole volume). Use a root with imaging=fourier (source A)."
        )
    density, picks = build_sample(tuple(meta["shape"]), params, rng)
    cols = ["particle_type", "x", "y", "z"]
    want = read_truth(root, runs=[name]).sort_values(cols)[cols].to_numpy()
    got = picks.sort_values(cols)[cols].to_numpy()
    same = len(want) == len(got) and (want[:, 0] == got[:, 0]).all()
    if not same or not np.allclose(want[:, 1:].astype(float), got[:, 1:].astype(float), atol=0.1):
        raise ValueError(
            f"{root}: replaying run {name} from its seed does not give its particles; the root was written by "
            "another version of the simulator. Regenerate it with this version."
        )
    return params, defocus, dose, density


def whitened_spectra(params, defocus_um: float, dose: float, density: np.ndarray, data: np.ndarray):
    """``(Dw, Ft)`` on the rfft grid: the tomogram divided by the square root of its power, and the template
    filter (the run's transfer times its Wiener weights, divided by the same root).

    The power is the model's (transfer² x the specimen's shell power + the noise's, both through the Wiener
    weights), rescaled per frequency shell to the tomogram's own (its gain, normalisation and drift).
    """
    from cryopoint.synth.imaging import _N_SHELLS, imaging_transfer

    shape = density.shape
    n_vox = float(np.prod(shape))
    rho = scipy.fft.rfftn(density, workers=-1)
    fz_all = scipy.fft.fftfreq(shape[0]).astype(np.float32)
    fy = scipy.fft.fftfreq(shape[1]).astype(np.float32)[:, None]
    fx = scipy.fft.rfftfreq(shape[2]).astype(np.float32)[None, :]
    xw = np.full(fx.shape, 2.0, dtype=np.float32)  # rfft half-spectrum weights (as the simulator's)
    xw[0, 0] = 1.0
    if shape[2] % 2 == 0:
        xw[0, -1] = 1.0
    shell_of = np.float32(_N_SHELLS / (0.5 * np.sqrt(3.0)) * (1 - 1e-6))
    sig_t = np.empty(rho.shape, np.float32)
    noise_t = np.empty(rho.shape, np.float32)
    shells = np.empty(rho.shape, np.int32)
    s_pow, n_pow, rho_pow, count = (np.zeros(_N_SHELLS) for _ in range(4))
    kw = dict(defocus_um=defocus_um, thickness_vox=params.ice_fraction * shape[0], params=params)
    for iz, fz in enumerate(fz_all):
        sig, nf, k = imaging_transfer(float(fz), fy, fx, **kw)
        sig_t[iz], noise_t[iz] = sig, nf
        shells[iz] = (np.sqrt(fx * fx + fy * fy + fz * fz) * shell_of).astype(np.int32)
        a2 = np.abs(rho[iz]) ** 2
        imaging_shell = (k * shell_of).astype(np.int32).ravel()
        s_pow += np.bincount(imaging_shell, (a2 * sig**2 * xw).ravel(), _N_SHELLS)
        n_pow += np.bincount(imaging_shell, (nf**2 * xw).ravel() * n_vox, _N_SHELLS)  # E|FFT(white)|² = N
        rho_pow += np.bincount(shells[iz].ravel(), (a2 * xw).ravel(), _N_SHELLS)
        count += np.bincount(shells[iz].ravel(), np.broadcast_to(xw, a2.shape).ravel(), _N_SHELLS)
    scale2 = (1.0 / (params.snr * dose / 100.0)) / max(n_pow.sum() / n_vox**2, 1e-30)
    n_pow *= scale2
    wiener = np.where(s_pow > 0, s_pow / (s_pow + params.denoise_strength * n_pow + 1e-30), 0.0)
    transfer = wiener.astype(np.float32)[shells] * sig_t
    s_iso = (rho_pow / np.maximum(count, 1)).astype(np.float32)
    noise_power = np.float32(scale2 * n_vox) * noise_t**2
    power = wiener.astype(np.float32)[shells] ** 2 * (sig_t**2 * s_iso[shells] + noise_power)
    spec = scipy.fft.rfftn(np.asarray(data, dtype=np.float32), workers=-1)
    xw3 = np.broadcast_to(xw[None], spec.shape)
    d_pow = np.bincount(shells.ravel(), (np.abs(spec) ** 2 * xw3).ravel(), _N_SHELLS)
    m_pow = np.bincount(shells.ravel(), (power * xw3).ravel(), _N_SHELLS)
    ratio = np.where(m_pow > 1e-30 * m_pow.max(), d_pow / np.maximum(m_pow, 1e-300), 0.0).astype(np.float32)
    power *= ratio[shells]
    ok = power > 1e-8 * power.max()
    inv_root = np.where(ok, 1.0 / np.sqrt(np.where(ok, power, 1.0)), 0.0).astype(np.float32)
    return (spec * inv_root).astype(np.complex64), (transfer * inv_root).astype(np.float32)


def match_classes(Dw: np.ndarray, Ft: np.ndarray, shape, voxel_size: float, rotations: dict) -> np.ndarray:
    """Score maps ``(C, Z, Y, X)`` (catalogue order; -1 for classes not in ``rotations``): for each class the
    maximum over its rotations of the local normalised cross-correlation of the whitened tomogram with the
    filtered, whitened template, under a sphere of the shape's extent plus one voxel. Values lie in [-1, 1]."""
    from cryopoint.particles import PARTICLE_NAMES
    from cryopoint.synth import shapes

    Dwt, Ftt = torch.from_numpy(Dw), torch.from_numpy(Ft)
    dw = torch.fft.irfftn(Dwt, s=shape)
    Dw2 = torch.fft.rfftn(dw * dw)
    maps = np.full((len(PARTICLE_NAMES), *shape), -1.0, dtype=np.float32)
    buf = torch.zeros(shape, dtype=torch.float32)
    for name, rots in rotations.items():
        shp = shapes.particle_shape(name)
        _, h = render_template(shp, np.eye(3), voxel_size)
        idx = np.ix_(*[np.arange(-h, h + 1) % n for n in shape])
        ax = np.arange(-h, h + 1, dtype=np.float32)
        rr = np.sqrt(ax[:, None, None] ** 2 + ax[None, :, None] ** 2 + ax[None, None, :] ** 2)
        mask = torch.from_numpy((rr <= shp.extent / voxel_size + 1.0).astype(np.float32))
        n_m = float(mask.sum())
        buf.zero_()
        buf[idx] = mask
        mc = torch.fft.rfftn(buf).conj()
        mean = torch.fft.irfftn(Dwt * mc, s=shape) / n_m
        var = torch.fft.irfftn(Dw2 * mc, s=shape) / n_m - mean * mean
        denom = torch.sqrt(var.clamp_min(1e-12) * n_m)
        best = torch.full(shape, -1.0)
        for rot in rots:
            t, _ = render_template(shp, rot, voxel_size)
            buf.zero_()
            buf[idx] = torch.from_numpy(t)
            tf = torch.fft.irfftn(torch.fft.rfftn(buf) * Ftt, s=shape)[idx] * mask
            tf = (tf - tf.sum() / n_m) * mask  # zero mean under the mask: the local mean drops out
            tf = tf / tf.norm().clamp_min(1e-30)
            buf.zero_()
            buf[idx] = tf
            corr = torch.fft.irfftn(torch.fft.rfftn(buf).conj() * Dwt, s=shape)
            torch.maximum(best, corr.div_(denom), out=best)
        maps[PARTICLE_NAMES.index(name)] = best.numpy()
    return maps


def run_peaks(root: Path, name: str, classes, step_deg: float) -> pd.DataFrame:
    """The oracle matcher's peaks (every local maximum, at most :data:`TOP_K` per class) on one run."""
    from cryopoint.io import read_tomogram, tomogram_path
    from cryopoint.post.nms import find_peaks

    params, defocus, dose, density = replay_run(root, name)
    tomo = read_tomogram(tomogram_path(root, name))
    rotations = {c: class_rotations(c, step_deg) for c in classes}
    dw, ft = whitened_spectra(params, defocus, dose, density, tomo.data)
    maps = match_classes(dw, ft, tomo.data.shape, float(tomo.voxel_size[0]), rotations)
    peaks = find_peaks(maps, voxel_size=tomo.voxel_size, min_score=-1.0, top_k=TOP_K)
    peaks = peaks[peaks.particle_type.isin(list(classes))].reset_index(drop=True)
    peaks.insert(0, "experiment", name)
    return peaks


def per_class(truth: pd.DataFrame, peaks: pd.DataFrame) -> pd.DataFrame:
    """Per-class ``fbeta, recall, precision`` of ``peaks`` at thresholds tuned on these runs themselves."""
    from cryopoint.metric import score
    from cryopoint.post.thresholds import apply_thresholds, tune_thresholds

    res = score(truth, apply_thresholds(peaks, tune_thresholds(truth, peaks).thresholds))
    return res.table[["fbeta", "recall", "precision", "weight", "n_true"]]


def compare(truth: pd.DataFrame, matcher: pd.DataFrame, network: pd.DataFrame, classes) -> dict:
    """Per class the network's and the matcher's ranking F-beta, and the weighted scores: the network's, and a
    composite with each matched class's F-beta replaced by the higher of the two."""
    net, tm = per_class(truth, network), per_class(truth, matcher)
    rows = {}
    for c in net.index:
        row = {"n_true": int(net.loc[c, "n_true"]), "weight": float(net.loc[c, "weight"])}
        row["network"] = float(net.loc[c, "fbeta"])
        row["matcher"] = float(tm.loc[c, "fbeta"]) if c in classes else None
        row["matcher_recall"] = float(tm.loc[c, "recall"]) if c in classes else None
        rows[c] = row
    total = sum(r["weight"] for r in rows.values())
    network_score = sum(r["weight"] * r["network"] for r in rows.values()) / total
    composite = sum(r["weight"] * max(r["network"], r["matcher"] or 0.0) for r in rows.values()) / total
    return {"classes": rows, "network": network_score, "composite": composite}


def write_report(result: dict, meta: dict, out: Path) -> Path:
    rotations = ", ".join(f"{c} {n}" for c, n in meta["rotations"].items())
    lines = [
        "# An oracle template matcher against the network (our own simulator)",
        "",
        f"`{meta['command']}` ({meta['date']}; {meta['machine']}). Data: {meta['root']}, {meta['runs']} runs; "
        f"rotation grid {meta['step']}° ({rotations}); network: `{meta['model']}`.",
        "",
        "Both columns use thresholds tuned on these runs themselves (ranking, an optimistic reading for both). The "
        "matcher knows each run's exact transfer and each class's exact shape: no user has that.",
        "",
        "| class | weight | particles | network | oracle matcher | matcher recall |",
        "|---|---|---|---|---|---|",
    ]
    for c, r in result["classes"].items():
        tm = "not matched" if r["matcher"] is None else f"{r['matcher']:.3f}"
        rec = "" if r["matcher_recall"] is None else f"{r['matcher_recall']:.2f}"
        lines.append(f"| {c} | {r['weight']:g} | {r['n_true']} | {r['network']:.3f} | {tm} | {rec} |")
    lines += [
        "",
        f"Weighted: network {result['network']:.3f}; composite (each matched class at the higher of the two) "
        f"{result['composite']:.3f}. Counts under 50 particles per class carry wide intervals.",
        "",
    ]
    path = out.with_suffix(".md")
    from cryopoint.io.atomic import atomic_write_text

    atomic_write_text(path, "\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--offset", type=int, help="source A's fresh test set at this seed offset (generated once)")
    where.add_argument("--root", type=Path, help="a synthetic root of the Fourier path")
    p.add_argument("--runs", type=int, default=16, help="runs of the fresh set; with --root, the first N (0: all)")
    p.add_argument("--cache-dir")
    p.add_argument("--step", type=float, default=20.0, help="rotation grid spacing, degrees")
    p.add_argument("--classes", default=",".join(DEFAULT_CLASSES))
    p.add_argument("--model", default="default", help="checkpoint whose peaks the matcher is compared with")
    p.add_argument("--network-peaks", type=Path, help="the checkpoint's peaks (thresholds 0), if already made")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "template_ceiling")
    args = p.parse_args(argv)
    from benchmarks.generalization import predict
    from cryopoint.data.cache import default_cache_dir
    from cryopoint.io import list_runs, read_truth
    from cryopoint.io.atomic import atomic_write_text

    if args.root is None:
        from benchmarks.generalization import BUDGETS, source_root

        args.root = source_root("A", BUDGETS["cpu"], args.cache_dir, fresh_runs=args.runs, fresh_offset=args.offset)
    root = args.root.resolve()
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    names = sorted(list_runs(root), key=lambda n: (len(n), n))
    names = names[: args.runs] if args.runs else names
    key = hashlib.sha256(f"{root}|{args.step}|{GRID_VERSION}".encode()).hexdigest()[:12]
    parts = default_cache_dir() / "template_ceiling" / key  # resumable: one peaks file per run and class
    parts.mkdir(parents=True, exist_ok=True)
    console.print(f"per-run peaks in {parts}")
    for name in track(names, description="oracle template matching", console=console):
        missing = [c for c in classes if not (parts / f"{name}.{c}.csv").exists()]
        if missing:
            peaks = run_peaks(root, name, missing, args.step)
            for c in missing:
                atomic_write_text(parts / f"{name}.{c}.csv", peaks[peaks.particle_type == c].to_csv(index=False))
    matcher = pd.concat([pd.read_csv(parts / f"{n}.{c}.csv") for n in names for c in classes], ignore_index=True)
    if args.network_peaks:
        network = pd.read_csv(args.network_peaks)
        network = network[network.experiment.isin(names)]
    else:
        network = predict(args.model, root, names)
    truth = read_truth(root, runs=names)
    result = compare(truth, matcher, network, classes)
    meta = {
        "command": "python -m benchmarks.template_ceiling " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine("cpu"),
        "root": f"source A, seed offset {args.offset}" if args.offset is not None else str(args.root),
        "runs": len(names),
        "step": args.step,
        "rotations": {c: len(class_rotations(c, args.step)) for c in classes},
        "model": str(args.network_peaks or args.model),
    }
    atomic_write_text(args.out.with_suffix(".json"), json.dumps({"meta": meta, "result": result}, indent=1))
    path = write_report(result, meta, args.out)
    console.print(path.read_text())
    return path


if __name__ == "__main__":
    main()
