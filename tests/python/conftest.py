"""Shared fixtures: the kiln binary, and model builds cached per session."""
import pytest

from kilntest import Builds, kiln_binary


@pytest.fixture(scope="session")
def builds(tmp_path_factory):
    return Builds(tmp_path_factory.mktemp("kiln-builds"))


@pytest.fixture(scope="session")
def kiln():
    return kiln_binary()
