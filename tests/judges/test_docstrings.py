"""The examples in the judges' docstrings run and print what they say."""

import doctest

import pytest

import alinea.judges
import alinea.judges.language


@pytest.mark.parametrize("module", [alinea.judges, alinea.judges.language])
def test_docstring_examples(module):
    result = doctest.testmod(module, verbose=False)
    assert result.attempted > 0 and result.failed == 0
