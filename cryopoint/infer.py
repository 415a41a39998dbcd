"""Sliding-window inference with bounded memory: whole tomogram in, blended per-class heatmaps out.

Windows of size ``roi`` (voxels, z, y, x) are placed every ``roi x (1 - overlap)`` voxels, the last one
flush with the far edge. Each window's prediction is weighted by an importance map (a Gaussian peaking at
the window centre, so that voxels seen near a window border count less), summed into a canvas and divided
by the summed weights (the scheme of MONAI's ``sliding_window_inference``, written from its idea).

Memory: the full-size canvas lives on the host at the model's output stride; only ``batch_size`` windows
at a time are on the compute device. A 184 x 630 x 630 tomogram with six classes at stride 2 needs a
~0.2 GB canvas; measured peaks are in ``benchmarks/results/inference.md``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from cryopoint.config import RUNTIMES, InferConfig, PostConfig
from cryopoint.data.normalize import normalize_volume
from cryopoint.errors import ConfigError, InvalidVolumeError
from cryopoint.tomogram import Tomogram, check_volume

__all__ = [
    "sliding_window",
    "predict_heatmaps",
    "predict_peaks",
    "window_starts",
    "importance_map",
    "TTA_FLIPS",
    "resolve_runtime",
]

#: Flip test-time augmentation: identity plus one flip per spatial axis of a (B, C, D, H, W) batch.
TTA_FLIPS: tuple[tuple[int, ...], ...] = ((), (2,), (3,), (4,))


def window_starts(size: int, roi: int, step: int) -> list[int]:
    """Start indices of windows of length ``roi`` covering ``[0, size)``; the last one is flush with the end.

    ``size >= roi`` is assumed (smaller volumes are padded first).

    >>> window_starts(10, 4, 3)
    [0, 3, 6]
    """
    last = size - roi
    return sorted(set(range(0, last, step)) | {last})


def importance_map(roi_out: Sequence[int], *, blend: str = "gaussian", sigma_scale: float = 0.125) -> np.ndarray:
    """Per-voxel weight of a window's prediction, shape ``roi_out`` (output voxels), maximum 1.

    ``"gaussian"``: separable Gaussian with sigma ``sigma_scale x window size`` per axis, centred on the
    window (MONAI's default 0.125). ``"constant"``: all ones (plain averaging of overlaps).
    """
    if blend == "constant":
        return np.ones(tuple(roi_out), dtype=np.float32)
    if blend != "gaussian":
        raise ValueError(f"Unknown blend {blend!r}; use 'gaussian' or 'constant'.")
    weights = np.ones((1, 1, 1), dtype=np.float64)
    for axis, n in enumerate(roi_out):
        centred = np.arange(n) + 0.5 - n / 2  # voxel centres relative to the window centre, symmetric
        g = np.exp(-0.5 * (centred / (sigma_scale * n)) ** 2)
        weights = weights * g.reshape([-1 if a == axis else 1 for a in range(3)])
    return (weights / weights.max()).astype(np.float32)


def sliding_window(
    predict: Callable[[torch.Tensor], torch.Tensor],
    volume: np.ndarray,
    *,
    roi: Sequence[int],
    overlap: float = InferConfig.overlap,
    output_stride: int = 1,
    out_channels: int,
    batch_size: int = InferConfig.batch_size,
    device: str | torch.device = "cpu",
    blend: str = InferConfig.blend,
    progress: Callable[[int, int], None] | None = None,
    cpu_bf16: bool = InferConfig.cpu_bf16,
) -> np.ndarray:
    """Run ``predict`` over overlapping windows of ``volume`` and blend the results on the host.

    Args:
        predict: Maps a batch ``(B, 1, D, H, W)`` on ``device`` to ``(B, C, D/s, H/s, W/s)``.
        volume: ``(Z, Y, X)`` or ``(1, Z, Y, X)`` array (normalised already; a memory map is fine).
        roi: Window size in input voxels ``(D, H, W)``, each a multiple of ``output_stride``.
        overlap: Fraction of a window shared with its neighbour, in ``[0, 1)``.
        output_stride: Input voxels per output voxel ``s``.
        out_channels: ``C``, the number of output channels of ``predict``.
        batch_size: Windows sent to the device at once (the device-memory knob).
        device: Compute device for the windows; the volume and the canvas stay on the host.
        blend: ``"gaussian"`` (importance-weighted) or ``"constant"`` (plain mean of overlaps).
        progress: Called as ``progress(windows_done, windows_total)`` after each batch.
        cpu_bf16: Autocast to bfloat16 on a CPU device too (on CUDA it always is).

    Returns:
        float32 array ``(C, ceil(Z/s), ceil(Y/s), ceil(X/s))``. Volumes smaller than a window (or not a
        multiple of ``s``) are zero-padded at the far end and the padding is cropped from the result.
    """
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ConfigError(f"batch_size must be a whole number >= 1 (windows per forward pass); got {batch_size}.")
    vol = np.asarray(volume)
    vol = vol[0] if vol.ndim == 4 and vol.shape[0] == 1 else vol
    check_volume(vol, name="volume")
    s = int(output_stride)
    roi = tuple(int(r) for r in roi)
    if len(roi) != 3 or any(r <= 0 or r % s for r in roi):
        raise ValueError(f"roi must be three positive sizes divisible by the output stride {s}; got {roi}.")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1); got {overlap}.")
    out_shape = tuple(-(-n // s) for n in vol.shape)
    # Pad to at least one window and to a multiple of s, so every window starts on an output voxel.
    padded = tuple(max(r, o * s) for r, o in zip(roi, out_shape))
    if padded != vol.shape:
        vol = np.pad(vol, [(0, p - n) for p, n in zip(padded, vol.shape)])  # zero = mean of a normalised volume
    steps = [max(s, int(r * (1 - overlap)) // s * s) for r in roi]
    corners = list(itertools.product(*(window_starts(n, r, st) for n, r, st in zip(padded, roi, steps))))

    device = torch.device(device)
    roi_out = tuple(r // s for r in roi)
    weight_np = importance_map(roi_out, blend=blend)
    weight = torch.from_numpy(weight_np).to(device)
    canvas = np.zeros((out_channels, *(p // s for p in padded)), dtype=np.float32)
    weight_sum = np.zeros(canvas.shape[1:], dtype=np.float32)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" or cpu_bf16)
    for first in range(0, len(corners), batch_size):
        batch_corners = corners[first : first + batch_size]
        crops = [vol[z : z + roi[0], y : y + roi[1], x : x + roi[2]] for z, y, x in batch_corners]
        x_batch = torch.from_numpy(np.stack(crops).astype(np.float32, copy=False))[:, None].to(device)
        with autocast:
            out = predict(x_batch)  # (B, C, D/s, H/s, W/s)
        if out.shape[1:] != (out_channels, *roi_out):
            raise ValueError(
                f"predict returned {tuple(out.shape)} for windows {roi}; expected (B, {out_channels}, *{roi_out})."
            )
        out = (out.float() * weight).cpu().numpy()
        for pred, (z, y, x) in zip(out, batch_corners):
            region = (
                slice(z // s, z // s + roi_out[0]),
                slice(y // s, y // s + roi_out[1]),
                slice(x // s, x // s + roi_out[2]),
            )
            canvas[(slice(None), *region)] += pred
            weight_sum[region] += weight_np
        if progress is not None:
            progress(min(first + batch_size, len(corners)), len(corners))
    canvas /= weight_sum
    return canvas[:, : out_shape[0], : out_shape[1], : out_shape[2]]


def _flip_tta(predict: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Average ``predict`` over :data:`TTA_FLIPS` (flip the input, predict, flip the output back)."""

    def averaged(x: torch.Tensor) -> torch.Tensor:
        total = None
        for dims in TTA_FLIPS:
            out = predict(x.flip(dims) if dims else x)
            out = out.flip(dims) if dims else out
            total = out.float() if total is None else total + out.float()
        return total / len(TTA_FLIPS)

    return averaged


def predict_heatmaps(
    model: nn.Module,
    tomogram: Tomogram,
    *,
    roi: Sequence[int],
    overlap: float = InferConfig.overlap,
    batch_size: int = InferConfig.batch_size,
    device: str | torch.device = "cpu",
    tta: bool = InferConfig.tta,
    blend: str = InferConfig.blend,
    progress: Callable[[int, int], None] | None = None,
    normalized: bool = False,
    cpu_bf16: bool = InferConfig.cpu_bf16,
    runtime: str = InferConfig.runtime,
) -> tuple[np.ndarray, int]:
    """Per-class heatmaps of a whole tomogram: normalise, slide ``model`` over it, blend probabilities.

    The model must already be on ``device`` and in eval mode (``cryopoint.api`` takes care of both).
    With ``tta``, each window is predicted under :data:`TTA_FLIPS` and the flipped-back *probabilities*
    (``model.heatmaps`` outputs) are averaged: that works the same for sigmoid heatmap and softmax
    segmentation models and keeps scores in [0, 1], so tuned thresholds keep their meaning.

    Args:
        model: A cryopoint model (``output_stride``, ``num_classes``, ``heatmaps(logits)``).
        tomogram: The volume and its voxel size.
        roi: Window size in voxels ``(D, H, W)``; rounded up to the model's ``input_multiple`` and clipped to
            the tomogram (rounded up likewise).
        overlap, batch_size, device, blend, progress: As in :func:`sliding_window`.
        tta: Average over flips (4 passes per window).
        normalized: The volume already went through :func:`~cryopoint.data.normalize.normalize_volume` (the
            training data's cached volumes): do not normalise it again.
        cpu_bf16: On a CPU, run the network under bfloat16 autocast (CUDA always does).
        runtime: What runs the network on a CPU: ``"torch"``, ``"onnxruntime"`` (exported once per window shape,
            cached; needs the ``cryopoint[onnx]`` extra) or ``"auto"`` (ONNX Runtime where installed).

    Returns:
        ``(heatmaps, stride)``: float32 ``(num_classes, Z', Y', X')`` probabilities with
        ``Z' = ceil(Z / stride)``, and the stride (input voxels per heatmap voxel).

    Raises:
        InvalidVolumeError: the volume is not 3-D, holds NaN/Inf, or is smaller than the model's minimum input.
    """
    check_volume(tomogram.data)
    multiple = _input_multiple(model)
    if any(n < m for n, m in zip(tomogram.shape, multiple)):
        raise InvalidVolumeError(
            f"Tomogram {tomogram.name or ''} of shape (z, y, x) = {tomogram.shape} is smaller than the model's field "
            f"of view {multiple}; use a larger tomogram (or a less binned one)."
        )
    stride = int(model.output_stride)
    quanta = [int(np.lcm(m, stride)) for m in multiple]
    # Round the window up to the model's input multiple, and never beyond the (rounded-up) tomogram itself.
    roi = tuple(min(-(-int(r) // q), -(-n // q)) * q for r, q, n in zip(roi, quanta, tomogram.shape))
    volume = tomogram.data if normalized else normalize_volume(tomogram.data)

    if resolve_runtime(runtime, device) == "onnxruntime":
        from cryopoint.model.onnx_runtime import onnx_forward

        forward = onnx_forward(model, roi)
    else:
        forward = model

    def predict(x: torch.Tensor) -> torch.Tensor:
        return model.heatmaps(forward(x))

    heatmaps = sliding_window(
        _flip_tta(predict) if tta else predict,
        volume,
        roi=roi,
        overlap=overlap,
        output_stride=stride,
        out_channels=int(model.num_classes),
        batch_size=batch_size,
        device=device,
        blend=blend,
        progress=progress,
        cpu_bf16=cpu_bf16,
    )
    return heatmaps, stride


def resolve_runtime(runtime: str, device: str | torch.device = "cpu") -> str:
    """What will run the network: ``"torch"`` or ``"onnxruntime"`` (CPU only; ``"auto"``: where installed)."""
    from cryopoint.model import onnx_runtime

    if runtime not in RUNTIMES:
        raise ConfigError(f"infer.runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}.")
    if torch.device(device).type != "cpu" or runtime == "torch":
        return "torch"
    if onnx_runtime.available():
        return "onnxruntime"
    if runtime == "auto":
        return "torch"
    raise ConfigError("infer.runtime='onnxruntime' needs ONNX Runtime: pip install -e '.[onnx]' (or runtime='torch').")


def _input_multiple(model: nn.Module) -> tuple[int, int, int]:
    """The model's required input-size multiple per axis (z, y, x); 1 where it pads internally."""
    multiple = getattr(model, "input_multiple", getattr(model, "size_multiple", 1))
    multiple = (multiple,) * 3 if isinstance(multiple, int) else tuple(multiple)
    return tuple(int(m) for m in multiple)  # type: ignore[return-value]


def predict_peaks(
    model: nn.Module,
    tomogram: Tomogram,
    *,
    infer: InferConfig,
    post: PostConfig,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
    normalized: bool = False,
) -> tuple[pd.DataFrame, int]:
    """Every peak above ``post.min_score`` of one tomogram: the one inference path of cryopoint.

    Validation during training, :func:`cryopoint.detect`, the batch CLI and the benchmarks all come here, so
    the scores that thresholds are tuned on are the scores ``detect`` reproduces (TTA included).

    Args:
        model: A cryopoint model, in eval mode, on ``device``.
        tomogram: Volume and voxel size.
        infer: The config's ``infer`` section (window, overlap, batch, TTA, blend, CPU runtime settings).
        post: The config's ``post`` section (``kernel_factor``, ``min_score``, ``top_k``).
        device: Compute device; the heatmaps stay there for the peak finder.
        progress: As in :func:`sliding_window`.
        normalized: As in :func:`predict_heatmaps`.

    Returns:
        ``(peaks, stride)``: :func:`cryopoint.post.nms.find_peaks`'s table (Å in the tomogram's frame) and the
        model's output stride.
    """
    from cryopoint.model.optimize import inference_copy
    from cryopoint.post.nms import find_peaks

    runtime = resolve_runtime(infer.runtime, device)

    with torch.inference_mode():
        heatmaps, stride = predict_heatmaps(
            # same scores, faster on a CPU; ONNX Runtime does its own folding on the network as trained
            inference_copy(model, device) if infer.fast_cpu and runtime == "torch" else model,
            tomogram,
            roi=infer.roi,
            overlap=infer.overlap,
            batch_size=infer.batch_size,
            device=device,
            tta=infer.tta,
            blend=infer.blend,
            progress=progress,
            normalized=normalized,
            cpu_bf16=infer.cpu_bf16,
            runtime=runtime,
        )
        # on CUDA the heatmaps stay on the device (sparse torch NMS); on the CPU the numpy path is faster
        on_gpu = torch.device(device).type == "cuda"
        peaks = find_peaks(
            torch.from_numpy(heatmaps).to(device) if on_gpu else heatmaps,
            voxel_size=tomogram.voxel_size,
            stride=stride,
            kernel_factor=post.kernel_factor,
            min_score=post.min_score,
            top_k=post.top_k,
        )
    return peaks, stride
