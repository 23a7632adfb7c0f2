"""Test configuration: x64 on, so that float64 can be tested; every test names its dtype.

Compilation is most of the suite's time, and many programs recur: in each pytest-xdist
worker after a module's programs are released, and in the suite's subprocesses (CLI runs,
the docstring examples, fresh-process replays). One persistent compilation cache per run,
in a fresh temporary folder that workers and subprocesses inherit through the environment,
compiles each of them once. It starts empty, so a run tests compilation as CI's clean
clone does; a folder the user set in ``JAX_COMPILATION_CACHE_DIR`` is used as it is.

The cache runs without a size limit, hence without JAX's file lock (with a limit, every write
rescans the whole folder under the lock, which made the suite slower than no cache at all).
An entry read while another process is still writing it fails to decompress: JAX warns and
compiles the program itself.
"""

import os
import shutil
import tempfile

import jax
import jax.numpy as jnp
import pytest
from helpers import DTYPES

jax.config.update("jax_enable_x64", True)

_CACHE_SETTINGS = {
    "jax_persistent_cache_min_compile_time_secs": 0.0,
    "jax_persistent_cache_min_entry_size_bytes": 0,
}
_OWN_CACHE = pytest.StashKey[str]()


def pytest_configure(config):
    if "JAX_COMPILATION_CACHE_DIR" in os.environ:  # a worker (jax read it on import), or the user's folder
        return
    folder = config.stash[_OWN_CACHE] = tempfile.mkdtemp(prefix="dkjax-tests-jax-cache-")
    settings = {**_CACHE_SETTINGS, "jax_compilation_cache_dir": folder}
    os.environ.update({name.upper(): str(value) for name, value in settings.items()})  # workers, subprocesses
    for name, value in settings.items():  # this process: jax read its environment on import
        jax.config.update(name, value)


def pytest_unconfigure(config):
    if _OWN_CACHE in config.stash:
        shutil.rmtree(config.stash[_OWN_CACHE], ignore_errors=True)


@pytest.fixture(params=DTYPES, ids=lambda dtype: jnp.dtype(dtype).name)
def dtype(request):
    """Runs a test once in float32 (JAX's default, and the GPU's) and once in float64."""
    return request.param


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drops JAX's compiled programs after each test module, so one long suite process stays small."""
    yield
    jax.clear_caches()


# The longest files (a subprocess of every docstring example, the snapshot fits, four forced
# devices) start first: the two workers take whole files, and a long file drawn last would
# leave one worker running it alone at the end.
_LONGEST_FILES = ("test_docstring_examples.py", "test_snapshots.py", "test_sharding.py")


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.path.name not in _LONGEST_FILES)  # stable: order within kept
