"""What every ``tools/`` script shares: one way to report user errors, a log-friendly console, thresholds files.

A script builds its parser with :class:`ArgumentParser` (which adds ``--debug``) and decorates its ``main`` with
:func:`entry_point`::

    @entry_point
    def main(argv=None) -> int:
        p = ArgumentParser(description=...)
        ...

A :class:`~cryopoint.errors.CryopointError` (bad path, bad setting, an output that exists, ...) then prints one
line, ``<script>: error: <message>``, and exits with status 2 (argparse's status for a bad command line); with
``--debug`` (or ``CRYOPOINT_DEBUG=1``) it propagates with its traceback. Any other exception is a bug and keeps
its traceback. cryopoint's warnings print once each, as ``<script>: warning: <message>`` instead of Python's
file-and-line form.

This module imports nothing heavy, so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryopoint.errors import ConfigError, CryopointError, DataNotFoundError

__all__ = ["ArgumentParser", "entry_point", "make_console", "read_thresholds", "DEBUG_ENV", "USER_ERROR_STATUS"]

#: Exit status of a run stopped by a user error (bad input, bad setting, refused overwrite).
USER_ERROR_STATUS = 2
#: Setting this environment variable to 1 shows tracebacks of user errors, like ``--debug``.
DEBUG_ENV = "CRYOPOINT_DEBUG"
#: Width a console uses when it writes to a file or pipe: wide enough that no table column is cut.
LOG_WIDTH = 1000


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with the ``--debug`` flag every cryopoint script accepts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument("--debug", action="store_true", help="show the full traceback of an error")


def _wants_debug(argv: list[str]) -> bool:
    words = argv[: argv.index("--")] if "--" in argv else argv
    return "--debug" in words or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _warning_printer() -> Callable[..., None]:
    """A ``warnings.showwarning`` that prints ``<prog>: warning: <message>``, each distinct message once."""
    shown: set[tuple[type, str]] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        if (category, str(message)) not in shown:  # the same note for each of 500 tomograms: print it once
            shown.add((category, str(message)))
            print(f"{Path(sys.argv[0]).name or 'cryopoint'}: warning: {message}", file=file or sys.stderr)

    return show


def entry_point(main: Callable[[list[str] | None], int | None]) -> Callable[[list[str] | None], int]:
    """Decorate a script's ``main(argv)``: user errors become one message and exit status 2.

    The wrapped function returns ``main``'s status (``None`` counts as 0), or 2 after printing
    ``<prog>: error: <message>`` to stderr for a :class:`~cryopoint.errors.CryopointError`.
    """

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        words = list(sys.argv[1:] if argv is None else argv)
        debug = _wants_debug(words)
        with warnings.catch_warnings():
            if not debug:
                warnings.showwarning = _warning_printer()
            try:
                return int(main(argv) or 0)
            except CryopointError as exc:
                if debug:
                    raise
                prog = Path(sys.argv[0]).name or "cryopoint"
                print(f"{prog}: error: {exc}\n(--debug shows the traceback)", file=sys.stderr)
                return USER_ERROR_STATUS

    return wrapper


def make_console(**kwargs: Any):
    """A rich ``Console`` that does not cut tables to 80 columns when the output goes to a file or a pipe.

    In a terminal it uses the terminal's width; elsewhere (a log file, ``| tee``, a batch system) rich would
    assume 80 columns and cut run names and statuses to "TS_S…": there it is :data:`LOG_WIDTH` wide instead,
    unless ``$COLUMNS`` says otherwise.
    """
    from rich.console import Console

    console = Console(**kwargs)
    if not console.is_terminal and "width" not in kwargs and not os.environ.get("COLUMNS"):
        console = Console(width=LOG_WIDTH, **kwargs)
    return console


def read_thresholds(path: str | os.PathLike) -> dict[str, float]:
    """Per-class thresholds from a YAML file: ``tools/tune_thresholds.py``'s output or a plain ``{class: score}``.

    Raises:
        DataNotFoundError: no file at ``path``.
        ConfigError: not YAML, not a mapping of class names to numbers, or a score that is not finite.
        UnknownParticleError: a class that is not in the catalogue.
    """
    import yaml

    from cryopoint.particles import get_particle

    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(
            f"No thresholds file at {path}. Write one with `python tools/tune_thresholds.py ... --out {path}`."
        )
    try:
        doc = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid YAML ({exc}).") from exc
    table = doc.get("thresholds", doc) if isinstance(doc, Mapping) else doc
    example = "thresholds: {apo-ferritin: 0.4, ribosome: 0.3}"
    if not isinstance(table, Mapping) or not table:
        raise ConfigError(f"{path} holds no per-class thresholds; expected e.g. `{example}`.")
    out: dict[str, float] = {}
    for name, value in table.items():
        get_particle(str(name))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{path}: threshold of {name} must be a finite number; got {value!r}.")
        out[str(name)] = float(value)
    return out
