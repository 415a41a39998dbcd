"""Reading and writing tomograms and picks in every format users bring (filled in by the I/O issue)."""

from cryopoint.io.atomic import atomic_dir, atomic_path, atomic_write_text

__all__ = ["atomic_dir", "atomic_path", "atomic_write_text"]
