"""Test configuration: float64 everywhere numbers are compared."""

import jax

jax.config.update("jax_enable_x64", True)
