"""Test configuration: x64 on, so that float64 can be tested; every test names its dtype."""

import jax
import jax.numpy as jnp
import pytest
from helpers import DTYPES

jax.config.update("jax_enable_x64", True)


@pytest.fixture(params=DTYPES, ids=lambda dtype: jnp.dtype(dtype).name)
def dtype(request):
    """Runs a test once in float32 (JAX's default, and the GPU's) and once in float64."""
    return request.param


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drops JAX's compiled programs after each test module, so one long suite process stays small."""
    yield
    jax.clear_caches()
