"""The runnable examples in the NeoX adapter's docstrings stay true (none needs NeoX)."""
import doctest
import importlib

import pytest

MODULES = ["neox_cpt.neox", "neox_cpt.neox.hook", "neox_cpt.neox.compat", "neox_cpt.neox.plan",
           "neox_cpt.neox.runtime", "neox_cpt.neox.patches", "neox_cpt.neox.stages", "neox_cpt.neox.integration",
           "neox_cpt.neox.keys", "neox_cpt.neox.graft", "neox_cpt.neox.scheduler", "neox_cpt.data.neox_index"]


@pytest.mark.parametrize("name", MODULES)
def test_module_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
