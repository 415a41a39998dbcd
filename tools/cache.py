"""Show what cryopoint's cache holds and remove what can never be reused (or the least recently used).

    python tools/cache.py                                  # entries by kind and state, with sizes
    python tools/cache.py --prune                          # remove unreachable and abandoned entries
    python tools/cache.py --prune --older-than 30 --max-size 20G --dry-run

The cache is ``$CRYOPOINT_CACHE`` or ``~/.cache/cryopoint`` (``--root`` to choose another): generated synthetic
datasets, normalised training volumes and ONNX exports. ``unreachable`` entries (source tomogram gone or changed,
older simulator or normalisation code) and ``incomplete`` ones (interrupted writes, untouched for an hour) are
never read again; ``--prune`` removes them. ``--older-than DAYS`` and ``--max-size SIZE`` also remove reusable
entries, least recently used first; they are remade on demand.
"""

import sys
from collections import defaultdict
from pathlib import Path

from cryopoint.cli import ArgumentParser, entry_point, make_console
from cryopoint.data.cache import default_cache_dir
from cryopoint.data.cache_prune import KINDS, list_cache, parse_size, prune_cache
from cryopoint.errors import ConfigError

STATES = ("live", "unreachable", "incomplete")


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _table(entries, title: str):
    from rich.table import Table

    table = Table(title=title)
    table.add_column("kind")
    for state in STATES:
        table.add_column(state, justify="right")
    table.add_column("total", justify="right")
    sums: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for e in entries:
        sums[e.kind, e.state][0] += 1
        sums[e.kind, e.state][1] += e.bytes
    for kind in KINDS:
        cells = [f"{sums[kind, s][0]} ({_human(sums[kind, s][1])})" for s in STATES]
        n, size = sum(sums[kind, s][0] for s in STATES), sum(sums[kind, s][1] for s in STATES)
        table.add_row(kind, *cells, f"{n} ({_human(size)})")
    return table


@entry_point
def main(argv=None) -> None:
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=None, help="cache root (default: $CRYOPOINT_CACHE, ~/.cache/cryopoint)")
    p.add_argument("--prune", action="store_true", help="remove unreachable and abandoned incomplete entries")
    p.add_argument("--older-than", type=float, default=None, metavar="DAYS", help="with --prune: also unused this long")
    p.add_argument("--max-size", default=None, metavar="SIZE", help="with --prune: then shrink to SIZE (e.g. 20G), LRU")
    p.add_argument("--dry-run", action="store_true", help="say what --prune would remove, remove nothing")
    p.add_argument("--verbose", action="store_true", help="list every entry removed (or to be), with the reason")
    args = p.parse_args(argv)
    root = args.root if args.root is not None else default_cache_dir()
    if args.root is not None and not root.is_dir():
        raise ConfigError(f"No cache folder at {root}; give the folder that holds synthetic/, volumes/ or onnx/.")
    if (args.older_than is not None or args.max_size is not None or args.dry_run) and not args.prune:
        raise ConfigError("--older-than, --max-size and --dry-run only apply with --prune; add --prune.")
    if args.older_than is not None and not args.older_than >= 0:
        raise ConfigError(f"--older-than must be zero or more days; got {args.older_than}.")
    console = make_console()
    max_bytes = parse_size(args.max_size) if args.max_size is not None else None
    if not args.prune:
        entries = list_cache(root)
        console.print(_table(entries, f"cryopoint cache at {root}"))
        stale = [e for e in entries if e.state != "live"]
        if stale:
            console.print(f"{_human(sum(e.bytes for e in stale))} can never be reused: `python tools/cache.py --prune`")
        return
    older_than_s = args.older_than * 86400 if args.older_than is not None else None
    removed = prune_cache(root, older_than_s=older_than_s, max_bytes=max_bytes, dry_run=args.dry_run)
    verb = "Would remove" if args.dry_run else "Removed"
    if args.verbose:
        for e in removed:
            console.print(f"{e.kind}/{e.name}  {_human(e.bytes)}  {e.state}  {e.reason}", markup=False, highlight=False)
    console.print(f"{verb} {len(removed)} entries, {_human(sum(e.bytes for e in removed))}, from {root}")
    console.print(_table(list_cache(root), "what is left" if not args.dry_run else "as it is now"))


if __name__ == "__main__":
    sys.exit(main())
