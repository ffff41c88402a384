"""The docstring examples run (as zuko runs its own): the Generator's, the model files', the config's, the models'."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch

torch.set_num_threads(1)

MODULES = ["morphoflow.generator", "morphoflow.checkpoint", "morphoflow.config", "morphoflow.autoencoder.models"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0, f"{name} has no docstring example"
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {name} failed"
