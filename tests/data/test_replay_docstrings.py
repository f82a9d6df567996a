"""The runnable examples in the replay-index modules' docstrings."""
import doctest
import importlib

import pytest

MODULES = ["neox_cpt.data.spec", "neox_cpt.data.reference", "neox_cpt.data.neox_index", "neox_cpt.data.sources",
           "neox_cpt.data.build", "neox_cpt.data.cache", "neox_cpt.data.dataset", "neox_cpt.data.inspect",
           "neox_cpt.data.fingerprint", "neox_cpt.data.publish", "neox_cpt.data.housekeeping", "neox_cpt.native"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and (result.attempted > 0 or name.endswith("inspect"))
