"""Ray internals this project relies on, in one place: Ray's own reading of an address, and the switch
that keeps a local Ray instance on 127.0.0.1. Neither has a public API. ``tests/test_compat.py`` fails,
naming the name and Ray's version, when one of them moves or Ray leaves ``CHECKED``.

Ray is imported inside the functions: importing this module imports nothing of Ray's.
"""

from __future__ import annotations

import contextlib
import os

CHECKED = {"ray": ">=2.60,<2.61"}  # the versions these internals were read in (pyproject pins ray 2.60.*)

# Ray on Linux takes the machine's network address for a node and serves its GCS, raylet and workers on
# all interfaces; on macOS and Windows it takes 127.0.0.1 instead, and they bind that. This switch (Ray's
# own, read when ray is imported) gives a local Linux instance the same: nothing reachable from outside.
RAY_LOCAL_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def starts_local_ray(address: str | None) -> bool:
    """Whether ``ray.init(address=...)`` starts a new instance (no --address, no RAY_ADDRESS and no `ray start`
    instance on this machine; or 'local') rather than joining a cluster. Ray's own reading of the address."""
    from ray._private.services import canonicalize_bootstrap_address

    try:
        return canonicalize_bootstrap_address(address) is None
    except (ConnectionError, ValueError):  # not an address ray.init can join either: it says why
        return False


@contextlib.contextmanager
def loopback_only():
    """A Ray instance started in here serves on 127.0.0.1 only: its own processes (GCS, raylet, agents,
    workers) inherit the switch, this one, which imported ray before, gets Ray's constant set too. Both are
    put back on the way out: a later ray.init in this process (a test, a notebook) may join a cluster."""
    from unittest import mock  # the standard library's set-and-restore, for an environment variable and a constant

    from ray._private import ray_constants

    switch = mock.patch.dict(os.environ, {RAY_LOCAL_ONLY: "0"})
    with switch, mock.patch.object(ray_constants, "ENABLE_RAY_CLUSTER", False):
        yield
