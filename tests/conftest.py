"""Shared fixtures: tiny random models (fast) and one real gemma-3-270m per session."""
from __future__ import annotations

import pytest
import torch

from metalens.testing import tiny_model


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_gemma():
    """Random-weight 3-block Gemma-3-style model with a character tokenizer."""
    return tiny_model("gemma3")


@pytest.fixture(scope="session")
def tiny_llama():
    """Random-weight 3-block Llama-style model with a chat template."""
    return tiny_model("llama")


@pytest.fixture(scope="session")
def gemma():
    """The embedded gemma-3-270m on CPU, loaded once for all integration tests."""
    import metalens

    return metalens.load_model("gemma-3-270m", device="cpu")


@pytest.fixture
def no_model(monkeypatch):
    """Loading a model fails the test: a verb's argument and file checks must all come first."""
    import metalens

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(metalens, "load_model", refuse)
