"""The filesystem Tune writes a sweep through (``sweeps.storage``): on a full disk a rewritten state
file keeps its previous content, where Tune's own local filesystem leaves it truncated."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.sweeps.conftest import Disk

# Run inside the disk's mount namespace: Tune's own upload (the call its experiment sync makes) rewrites a
# state file with a larger version while the disk is full, then writes once more after space is freed.
REWRITE = """
import json, os, pickle, subprocess, sys, tempfile
from ray.train._internal.storage import _upload_to_fs_path
from sweeps.storage import storage_filesystem

root = sys.argv[1]
dest = f"{root}/sweep/tuner.pkl"
os.makedirs(os.path.dirname(dest))
fs = storage_filesystem()
src = tempfile.mkdtemp()
def upload(n):
    with open(f"{src}/tuner.pkl", "wb") as f:
        pickle.dump(list(range(n)), f)
    _upload_to_fs_path(f"{src}/tuner.pkl", fs, dest)
upload(20_000)
subprocess.run(f"dd if=/dev/zero of={root}/filler bs=64k 2>/dev/null", shell=True)
try:
    upload(40_000)
    error = None
except OSError as e:
    error = str(e)
out = {"error": error, "kept": len(pickle.load(open(dest, "rb"))), "files": sorted(os.listdir(f"{root}/sweep"))}
os.unlink(f"{root}/filler")
upload(40_000)
out["after"] = len(pickle.load(open(dest, "rb")))
print(json.dumps(out))
"""


def test_a_state_file_rewritten_on_a_full_disk_keeps_its_last_complete_version(tmp_path):
    disk = Disk(tmp_path / "disk", size="1m")
    try:
        out = disk.run(sys.executable, "-c", REWRITE, str(disk.path))
    except subprocess.CalledProcessError as e:
        raise AssertionError(e.stderr) from None
    finally:
        disk.close()
    result = json.loads(out.strip().splitlines()[-1])
    assert "No space left on device" in result["error"]  # the failure is raised, for the sweep to stop on
    assert result["kept"] == 20_000  # the previous version, whole: Tune can still restore from it
    assert result["files"] == ["tuner.pkl"]  # no half-written file left beside it
    assert result["after"] == 40_000  # with space again, the new version replaces it


def test_a_checkpoint_on_the_sweeps_storage_is_read_in_place_and_one_elsewhere_from_a_copy(tmp_path):
    """The driver reads each finished trial's checkpoint to upload its evidence, and a retried trial reads its
    last one: on the sweep's storage (a local filesystem of its own, which Tune's ``as_directory`` would copy
    whole, weights and all, through Python) the files are read where they are; on any other a copy is made."""
    import pyarrow.fs
    from ray.tune import Checkpoint

    from sweeps.storage import storage_filesystem
    from trainables.contracts import checkpoint_files

    ckpt = tmp_path / "trial" / "checkpoint_000001"
    (ckpt / "mlflow_model").mkdir(parents=True)
    (ckpt / "state.pt").write_bytes(b"w" * 1000)
    (ckpt / "mlflow_model" / "MLmodel").write_text("flavors: {}\n")
    for fs in (storage_filesystem(), pyarrow.fs.LocalFileSystem()):
        with checkpoint_files(Checkpoint(str(ckpt), filesystem=fs)) as d:
            assert d == ckpt
    remote = pyarrow.fs.SubTreeFileSystem(str(tmp_path), pyarrow.fs.LocalFileSystem())  # not this machine's paths
    with checkpoint_files(Checkpoint("trial/checkpoint_000001", filesystem=remote)) as d:
        assert d != ckpt and not d.is_relative_to(tmp_path)
        assert (d / "state.pt").read_bytes() == b"w" * 1000
        assert (d / "mlflow_model" / "MLmodel").read_text() == "flavors: {}\n"
    assert not d.exists()  # the copy goes with the context
