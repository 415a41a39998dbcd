"""Networks: a plain dict registry of architectures that map a volume to per-class heatmap logits."""

from cryopoint.model.registry import ARCHITECTURES, build_model

__all__ = ["ARCHITECTURES", "build_model"]
