"""Networks: a plain dict registry of architectures that map a volume to per-class heatmap logits."""
