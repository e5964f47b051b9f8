"""Import the scripts of ``benchmarks/`` (not a package) for tests."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@contextmanager
def benchmark_modules(*names: str) -> Iterator[dict[str, ModuleType]]:
    """Load the named scripts, in order, as modules; remove them afterwards.

    A script that imports another (``import fewlabels``) needs it loaded first;
    dataclasses look their module up in ``sys.modules``, so each one is
    registered there while the tests run.
    """
    modules = {}
    try:
        for name in names:
            spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
            modules[name] = importlib.util.module_from_spec(spec)
            sys.modules[name] = modules[name]
            spec.loader.exec_module(modules[name])
        yield modules
    finally:
        for name in names:
            sys.modules.pop(name, None)
