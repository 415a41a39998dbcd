"""Reading and writing tomograms and picks in every format users bring.

The copick helpers need the optional copick package (``pip install 'cryopoint[copick]'``), imported only when called.

All zarr access lives in :mod:`cryopoint.io.zarr_store`; every output goes through :mod:`cryopoint.io.atomic`.
"""

from cryopoint.io.atomic import atomic_dir, atomic_path, atomic_write_text, refuse_inputs
from cryopoint.io.copick import copick_runs, copick_tomogram_paths, open_copick, read_copick_picks, write_copick_picks
from cryopoint.io.layout import (
    list_runs,
    overlay_picks_dir,
    read_overlay_picks,
    read_picks,
    read_truth,
    tomogram_path,
    write_overlay_picks,
    write_run_picks,
)
from cryopoint.io.picks import check_picks_table, check_points_in_volume, read_copick_json, write_copick_json
from cryopoint.io.star import read_star, write_star
from cryopoint.io.submission import read_submission_csv, write_submission_csv
from cryopoint.io.tomograms import read_tomogram, write_mrc
from cryopoint.io.zarr_store import write_ome_zarr

__all__ = [
    "atomic_dir",
    "atomic_path",
    "atomic_write_text",
    "refuse_inputs",
    "read_tomogram",
    "write_ome_zarr",
    "write_mrc",
    "list_runs",
    "tomogram_path",
    "read_picks",
    "read_truth",
    "write_run_picks",
    "overlay_picks_dir",
    "read_overlay_picks",
    "write_overlay_picks",
    "read_copick_json",
    "write_copick_json",
    "check_picks_table",
    "check_points_in_volume",
    "write_submission_csv",
    "read_submission_csv",
    "write_star",
    "read_star",
    "open_copick",
    "copick_runs",
    "copick_tomogram_paths",
    "read_copick_picks",
    "write_copick_picks",
]
