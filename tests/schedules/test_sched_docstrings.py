"""The runnable examples in the schedule modules' docstrings stay true."""
import doctest
import importlib

import pytest

MODULES = ["neox_cpt.schedules", "neox_cpt.schedules.shapes", "neox_cpt.schedules.schedule",
           "neox_cpt.schedules.plan", "neox_cpt.schedules.recipes", "neox_cpt.schedules.keys",
           "neox_cpt.schedules.config", "neox_cpt.schedules.loader", "neox_cpt.schedules.torch_adapter"]


@pytest.mark.parametrize("name", MODULES)
def test_module_examples(name):
    if name.endswith("torch_adapter"):
        pytest.importorskip("torch")
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
