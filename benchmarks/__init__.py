"""cryopoint's benchmarks: scripts that measure speed, memory and scores and write ``benchmarks/results/``.

Run each from the repository root as a module, e.g. ``python -m benchmarks.nms``; the scripts share helpers
(``benchmarks.bench_common``) and report modules by ordinary package imports. Not installed with cryopoint.
"""
