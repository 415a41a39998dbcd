"""Synthetic cryo-ET tomograms in the challenge layout: the embedded default dataset."""
