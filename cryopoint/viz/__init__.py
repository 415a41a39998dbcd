"""Figures (matplotlib, Agg backend, PNG)."""
