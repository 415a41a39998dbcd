"""Synthetic cryo-ET tomograms in the challenge layout: the embedded default dataset.

``generate_dataset`` writes runs; ``simulate_run`` returns one volume and its truth; ``get_preset`` gives the
``easy`` / ``realistic`` parameters (:class:`SynthParams`).
"""

from cryopoint.synth.dataset import generate_dataset, run_names
from cryopoint.synth.params import PRESETS, SynthParams, get_preset
from cryopoint.synth.simulate import simulate_run

__all__ = ["generate_dataset", "simulate_run", "run_names", "get_preset", "SynthParams", "PRESETS"]
