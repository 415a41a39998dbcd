"""The ONNX Runtime path (``infer.runtime``): the same heatmaps and peaks as PyTorch, exported once, clear errors."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from cryopoint.config import InferConfig, PostConfig
from cryopoint.errors import ConfigError
from cryopoint.infer import predict_heatmaps, predict_peaks, resolve_runtime
from cryopoint.model import onnx_runtime
from cryopoint.model.heatmap25d import Heatmap25D
from cryopoint.tomogram import Tomogram

needs_ort = pytest.mark.skipif(
    not onnx_runtime.available(), reason="onnxruntime/onnx not installed (the cryopoint[onnx] extra; dev installs it)"
)
INFER = InferConfig(roi=[16, 64, 64], overlap=0.25, batch_size=2, tta=False, fast_cpu=True, cpu_bf16=False)
POST = PostConfig(kernel_factor=0.5, min_score=0.0, top_k=50)


@pytest.fixture
def model():
    torch.manual_seed(0)
    net = Heatmap25D(encoder="test_resnet", slab=3, decoder_channels=(16, 8, 8, 8), prior=0.3).eval()
    for m in net.modules():  # non-trivial BatchNorm statistics, so folding (ORT's and ours) has work to do
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 1.5)
    return net


@needs_ort
def test_onnxruntime_gives_the_pytorch_heatmaps_and_peaks(model, tmp_path, monkeypatch):
    monkeypatch.setenv("CRYOPOINT_CACHE", str(tmp_path))
    volume = np.random.default_rng(0).standard_normal((20, 80, 72), dtype=np.float32)  # several windows per axis
    tomo = Tomogram(volume, 10.0)
    with torch.inference_mode():
        plain, _ = predict_heatmaps(model, tomo, roi=(16, 64, 64), normalized=True)
        ort, _ = predict_heatmaps(model, tomo, roi=(16, 64, 64), normalized=True, runtime="onnxruntime")
    np.testing.assert_allclose(ort, plain, atol=1e-4)
    exported = list((tmp_path / "onnx").glob("*.onnx"))
    assert len(exported) == 1  # one window shape: one export

    peaks_torch, _ = predict_peaks(model, tomo, infer=replace(INFER, runtime="torch"), post=POST, normalized=True)
    peaks_ort, _ = predict_peaks(model, tomo, infer=replace(INFER, runtime="onnxruntime"), post=POST, normalized=True)
    assert len(peaks_torch) > 10
    cols = ["particle_type", "x", "y", "z"]
    assert peaks_ort[cols].equals(peaks_torch[cols])
    np.testing.assert_allclose(peaks_ort["score"], peaks_torch["score"], atol=1e-4)
    assert list((tmp_path / "onnx").glob("*.onnx")) == exported  # the second run reused the cached export


@needs_ort
def test_the_export_is_keyed_by_the_weights(model, tmp_path):
    first = onnx_runtime.exported_model_path(model, (1, 1, 8, 32, 32), tmp_path)
    with torch.no_grad():
        model.head.bias.add_(1.0)
    second = onnx_runtime.exported_model_path(model, (1, 1, 8, 32, 32), tmp_path)
    assert first != second and first.is_file() and second.is_file()


def test_runtime_resolution_and_a_clear_error_without_the_extra(monkeypatch):
    assert resolve_runtime("torch") == "torch"
    assert resolve_runtime("onnxruntime", "cuda") == "torch"  # ONNX Runtime is the CPU path only
    monkeypatch.setattr(onnx_runtime, "available", lambda: False)
    assert resolve_runtime("auto") == "torch"
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[onnx\]'"):
        resolve_runtime("onnxruntime")
    with pytest.raises(ConfigError, match="infer.runtime"):
        resolve_runtime("tensorrt")
