"""The contract every registered architecture keeps; a test module subclasses :class:`ModelContract`.

Subclasses set ``arch`` and ``kwargs`` (small, so the tests run in seconds on a CPU), the input sizes to
check, and the registered losses that fit the model's targets::

    class TestMyNet(ModelContract):
        arch = "mynet"
        kwargs = {"channels": (4, 8)}
        losses = ("dice_ce",)
"""

from __future__ import annotations

import pytest
import torch
from timm.layers import DropPath
from torch import nn

from cryopoint.engine.losses import get_loss
from cryopoint.errors import CryopointError
from cryopoint.model import ARCHITECTURES, build_model

#: Layers whose computation depends on train/eval by design; everything else must compute the same in both.
MODE_DEPENDENT_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd, DropPath)


def _ceil_div(n: int, s: int) -> int:
    return -(-n // s)


class ModelContract:
    """Shape, gradient, empty-crop, save/load and size contracts of a model built by ``build_model``."""

    arch: str = ""
    kwargs: dict = {}
    #: (D, H, W) input sizes whose output shape is checked.
    input_sizes: tuple[tuple[int, int, int], ...] = ((8, 32, 32), (16, 64, 32))
    #: An awkward size (no multiple of ``input_multiple``); every model takes any size.
    odd_size: tuple[int, int, int] = (7, 33, 35)
    #: Names in ``cryopoint.engine.losses.LOSSES`` that train this model.
    losses: tuple[str, ...] = ("mse", "focal")
    batch_size: int = 2

    def build(self, seed: int = 0) -> torch.nn.Module:
        torch.manual_seed(seed)
        return build_model(self.arch, **self.kwargs)

    def empty_target(self, model: torch.nn.Module, logits: torch.Tensor) -> torch.Tensor:
        """Target of a crop with no particle, in the form the model's losses take."""
        if model.target_kind == "heatmap":
            return torch.zeros_like(logits, dtype=torch.float32)
        return torch.zeros((logits.shape[0], *logits.shape[2:]), dtype=torch.int64)  # all background

    def test_registered_with_declared_attributes(self):
        assert self.arch in ARCHITECTURES
        model = self.build()
        assert model.target_kind in ("heatmap", "segmentation")
        assert isinstance(model.output_stride, int) and model.output_stride >= 1
        assert isinstance(model.num_classes, int) and model.num_classes >= 1
        assert len(model.input_multiple) == 3 and all(int(m) >= 1 for m in model.input_multiple)

    def test_output_shape_for_several_sizes(self):
        model = self.build().eval()
        sizes = [*self.input_sizes, tuple(int(m) * 2 for m in model.input_multiple)]
        for size in sizes:
            with torch.no_grad():
                logits = model(torch.randn(self.batch_size, 1, *size))
            s = model.output_stride
            assert tuple(logits.shape[2:]) == tuple(_ceil_div(n, s) for n in size), f"input {size}"
            assert logits.shape[0] == self.batch_size
            assert model.heatmaps(logits).shape == (self.batch_size, model.num_classes, *logits.shape[2:])

    def test_forward_is_the_same_computation_in_train_and_eval(self):
        """No train-only branch (auxiliary heads, other padding or cropping): once the layers whose maths
        depend on the mode by design (batch norm statistics, dropout, drop-path) are held in eval, train() and
        eval() give the same logits; and eval() is deterministic."""
        model = self.build()
        x = torch.randn(self.batch_size, 1, *self.input_sizes[0])
        with torch.no_grad():
            eval_out = model.eval()(x)
            assert torch.equal(model(x), eval_out), "two eval passes on one input differ"
            model.train()
            for module in model.modules():
                if isinstance(module, MODE_DEPENDENT_LAYERS):
                    module.eval()
            assert model.training  # everything else, the model's own forward included, runs in train mode
            train_out = model(x)
        assert isinstance(train_out, torch.Tensor) and train_out.shape == eval_out.shape
        torch.testing.assert_close(train_out, eval_out)

    def test_every_parameter_gets_a_gradient(self):
        model = self.build().train()
        logits = model(torch.randn(self.batch_size, 1, *self.input_sizes[0]))
        # Random weights, not a plain sum: a sum can cancel exactly through a normalisation layer.
        (logits * torch.randn_like(logits)).sum().backward()
        no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not no_grad, f"No gradient for {no_grad}"
        bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        assert not bad, f"Non-finite gradient for {bad}"

    def test_finite_loss_on_a_crop_with_no_particle(self):
        assert self.losses, "name at least one registered loss that trains this model"
        for name in self.losses:
            model = self.build().train()
            logits = model(torch.zeros(self.batch_size, 1, *self.input_sizes[0]))
            loss = get_loss(name)(logits, self.empty_target(model, logits), None)
            assert loss.ndim == 0 and torch.isfinite(loss), f"loss {name!r} is {loss}"
            loss.backward()
            assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None), name

    def test_state_dict_round_trip_gives_identical_outputs(self, tmp_path):
        model = self.build(seed=0).eval()
        path = tmp_path / "model.pt"
        torch.save(model.state_dict(), path)
        again = self.build(seed=1).eval()
        again.load_state_dict(torch.load(path, weights_only=True))
        x = torch.randn(1, 1, *self.input_sizes[0])
        with torch.no_grad():
            assert torch.equal(model(x), again(x))

    def test_any_size_works_and_keeps_indices(self):
        """Every model takes any input size (docs/design.md): it pads the far side internally, so an awkward
        size gives the logits of the input padded by hand to ``input_multiple`` (edge-replicated), cropped to
        ``ceil(size / stride)``; output voxel ``j`` still looks at input voxel ``j * stride``."""
        model = self.build().eval()
        s = model.output_stride
        thin = (1, 13, 21)  # one slice: below input_multiple in depth
        for size in (self.odd_size, thin):
            x = torch.randn(1, 1, *size)
            pad = [(-n) % int(m) for n, m in zip(size, model.input_multiple)]
            padded = torch.nn.functional.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]), mode="replicate")
            with torch.no_grad():
                logits, reference = model(x), model(padded)
            assert tuple(logits.shape[2:]) == tuple(_ceil_div(n, s) for n in size), f"input {size}"
            crop = tuple(slice(0, _ceil_div(n, s)) for n in size)
            torch.testing.assert_close(logits, reference[(..., *crop)], msg=f"input {size}")

    def test_heatmaps_are_probabilities(self):
        model = self.build().eval()
        with torch.no_grad():
            logits = model(torch.randn(1, 1, *self.input_sizes[0]))
        for scaled in (logits, logits * 1e4, -logits * 1e4):
            probs = model.heatmaps(scaled)
            assert torch.isfinite(probs).all() and (probs >= 0).all() and (probs <= 1).all()

    def test_unknown_keyword_is_a_config_error_listing_the_arguments(self):
        with pytest.raises(CryopointError, match="arguments are"):
            build_model(self.arch, **self.kwargs, no_such_argument=1)
