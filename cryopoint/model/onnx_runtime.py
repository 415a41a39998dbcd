"""Run a network's sliding windows through ONNX Runtime on a CPU (the optional ``cryopoint[onnx]`` extra).

The network is exported once per window shape (every window of a sliding-window pass has the same shape) with
PyTorch's TorchScript-based ONNX exporter, and the file is cached under ``<cache>/onnx/`` keyed by a hash of
the weights, the architecture, the window shape and the library versions, so later calls only load it. ONNX
Runtime then fuses and schedules the graph for the CPU. Where ``onnxruntime`` is not installed, callers fall
back to the PyTorch path (:func:`available`). Measured effect: ``benchmarks/results/inference.md``.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["available", "onnx_forward", "exported_model_path"]


def available() -> bool:
    """Whether ONNX Runtime (and the ``onnx`` package the exporter needs) can be imported."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _fingerprint(model: nn.Module, input_shape: Sequence[int]) -> str:
    import onnxruntime

    digest = hashlib.sha256()
    digest.update(repr((type(model).__name__, tuple(input_shape), torch.__version__, onnxruntime.__version__)).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(repr(model).encode())  # the architecture's hyper-parameters
    return digest.hexdigest()[:24]


def exported_model_path(model: nn.Module, input_shape: Sequence[int], cache_dir: str | os.PathLike | None = None):
    """The cached ONNX file of ``model`` for inputs of ``input_shape`` ``(B, 1, D, H, W)``, exported if missing."""
    from cryopoint.data.cache import default_cache_dir, touch
    from cryopoint.io.atomic import atomic_path

    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "onnx"
    path = folder / f"{type(model).__name__.lower()}-{_fingerprint(model, input_shape)}.onnx"
    if not path.is_file():
        example = torch.zeros(tuple(input_shape))
        with atomic_path(path) as tmp, warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic: the shape is fixed here
            torch.onnx.export(model, (example,), str(tmp), dynamo=False, input_names=["volume"],
                              output_names=["logits"], opset_version=17)  # fmt: skip
    else:
        touch(path)
    return path


def onnx_forward(
    model: nn.Module, window: Sequence[int], *, threads: int | None = None, cache_dir: str | os.PathLike | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``model``'s forward pass on ``(B, 1, *window)`` CPU batches, run by ONNX Runtime one window at a time.

    Returns a function with the network's contract (volume batch in, logits out) for
    :func:`cryopoint.infer.sliding_window`; raises ``ImportError`` when ONNX Runtime is not installed.
    """
    import onnxruntime as ort

    path = exported_model_path(model, (1, 1, *window), cache_dir)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def forward(x: torch.Tensor) -> torch.Tensor:
        batch = x.detach().float().cpu().numpy()
        outs = [session.run(None, {"volume": batch[i : i + 1]})[0] for i in range(batch.shape[0])]
        return torch.from_numpy(np.concatenate(outs))

    return forward
