"""A spy on the workflow a sensitivity sweep calls: the tests check that planted and plain runs go through
the published workflow, with which config, and what it returned."""
from __future__ import annotations

from contextlib import contextmanager

import pytest


@contextmanager
def spy_on(module, name: str):
    """Within the block `module.<name>(model, config, **kw)` still runs, and each call's (config, result)
    is appended to the yielded list; the real function is back afterwards, even on error."""
    calls = []
    real = getattr(module, name)

    def spy(model, config, **kw):
        result = real(model, config, **kw)
        calls.append((config, result))
        return result

    patch = pytest.MonkeyPatch()
    patch.setattr(module, name, spy)
    try:
        yield calls
    finally:
        patch.undo()
