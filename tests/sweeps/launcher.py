"""Ray's cluster launcher on one machine: a head and a worker node reached over SSH, each in namespaces of its own.

`cluster_for_local_nodes` turns cluster.yaml into the file `ray up` is given here: the provider, the SSH user
and the node types (Ray's `local` provider has one node type of its own, with the resources Ray detects) are
replaced, and in the commands only the text that names the cloud (`CLOUD_ONLY`: the EFS mount, the S3
bucket); every other command runs as written.

`LocalNodes` makes the machines. Each node is a process tree in its own PID, mount, network and UTS
namespaces (`unshare`): its own hostname, home directory (/root), /tmp (Ray's session, the launcher's state)
and /run, an `sshd` on its private address, and this test's virtual environment under an overlay, so the
node's `pip install -e ~/cvsweep` writes into the node and not into the test's environment. A third such
namespace is the user's machine, where `ray up` runs. The three are joined by a bridge in the user's
network namespace, on addresses that exist only there; nothing outside is reachable from them, nor they
from outside. A node's `ray stop` sees only its own processes, and stopping a node is killing the first
process of its PID namespace: the kernel ends every process in it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

from tests.conftest import REPO
from tests.sweeps.conftest import wait_for

COMMAND_KEYS = (
    "initialization_commands",
    "setup_commands",
    "head_setup_commands",
    "worker_setup_commands",
    "head_start_ray_commands",
    "worker_start_ray_commands",
)
# Text of cluster.yaml's commands that only the cloud can run -> what the local nodes run instead. Each
# must occur in cluster.yaml's commands (tests/sweeps/test_ray_up.py checks it), so a change there that
# drops it is seen.
CLOUD_ONLY = {
    # the shared storage: EFS over NFS on AWS, a directory of the test bound to the same mount point here
    "mount -t nfs4 -o nfsvers=4.1 EFS_ID.efs.us-west-2.amazonaws.com:/ /mnt/shared": (
        "mount --bind {shared} /mnt/shared"
    ),
    # MLflow's artifacts: an S3 bucket on AWS, the head's disk here
    "--artifacts-destination s3://BUCKET/mlflow-artifacts": "--artifacts-destination $HOME/mlflow/artifacts",
}
NET = "10.77.0"  # the user's machine .1, the head .2, the worker .3: addresses inside the test's namespaces only


def cloud_config() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def localize(command: str, shared: Path | str) -> str:
    for cloud, local in CLOUD_ONLY.items():
        command = command.replace(cloud, local.format(shared=shared))
    return command


def cluster_for_local_nodes(head_ip: str, worker_ips: list[str], key: Path, shared: Path) -> dict:
    """cluster.yaml with Ray's `local` provider for these nodes, reached as root with this key."""
    config = cloud_config()
    config["provider"] = {"type": "local", "head_ip": head_ip, "worker_ips": worker_ips}
    config["auth"] = {"ssh_user": "root", "ssh_private_key": str(key)}
    del config["available_node_types"], config["head_node_type"]  # the local provider's own node type
    config["max_workers"] = len(worker_ips)
    for k in COMMAND_KEYS:
        if k in config:
            config[k] = [localize(c, shared) for c in config[k]]
    return config


def command_differences(cloud: dict, local: dict, shared: Path | str) -> list[str]:
    """Where the local file's commands are not cluster.yaml's, the cloud's text aside: [] when they match."""
    found = []
    for key in COMMAND_KEYS:
        theirs, mine = [localize(c, shared) for c in cloud.get(key, [])], local.get(key, [])
        here = [f"{key}: {c!r} only in cluster.yaml" for c in theirs if c not in mine]
        here += [f"{key}: {c!r} only in the local file" for c in mine if c not in theirs]
        if not here and theirs != mine:
            here.append(f"{key}: the same commands, in another order or repeated")
        found += here
    return found


# PID 1 of a node's namespaces: its own /mnt, /tmp, /run and home, the test's paths under /tmp still visible,
# the virtual environment under an overlay, then (on a node) sshd. Bash as PID 1 reaps orphans (Ray's daemons,
# the nohup'd MLflow server).
NODE_INIT = r"""
set -euo pipefail
name=$1 ip=$2 dir=$3 venv=$4; shift 4
hostname "cvsweep-$name"
mount -t tmpfs -o mode=755 tmpfs /mnt
mkdir /mnt/host-tmp /mnt/host-root && mount --rbind /tmp /mnt/host-tmp && mount --rbind /root /mnt/host-root
mount -t tmpfs -o mode=1777 tmpfs /tmp
case $dir in /tmp/*) home=/mnt/host-tmp/${dir#/tmp/}/home;; *) home=$dir/home;; esac
mount --bind "$home" /root
for p in "$@"; do  # what must stay visible under /tmp and /root: the test's files, the repository, Python
  case $p in /tmp/*) src=/mnt/host-tmp/${p#/tmp/};; /root/*) src=/mnt/host-root/${p#/root/};; esac
  mkdir -p "$p" && mount --rbind "$src" "$p"
done
umount -l /mnt/host-tmp /mnt/host-root && rmdir /mnt/host-tmp /mnt/host-root
ip link set lo up
touch "$dir/mounted"
while [ ! -e "$dir/wired" ]; do sleep 0.1; done  # the test gives the node its address
if [ "$name" = client ]; then touch "$dir/ready"; exec sleep infinity; fi
mkdir -p "$dir/venv-upper" "$dir/venv-work"
mount -t overlay overlay -o "lowerdir=$venv,upperdir=$dir/venv-upper,workdir=$dir/venv-work" "$venv"
mount -t tmpfs -o mode=755 tmpfs /run && mkdir -m 755 /run/sshd
/usr/sbin/sshd -D -e -f "$dir/sshd_config" > "$dir/sshd.log" 2>&1 &
until (exec 3<>"/dev/tcp/$ip/22") 2>/dev/null; do sleep 0.1; done
touch "$dir/ready"
wait
"""

SSHD_CONFIG = """\
ListenAddress {ip}
HostKey {dir}/host_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PidFile none
PrintMotd no
Subsystem sftp internal-sftp
"""

# A node's shell: this test's environment first on PATH (an image with the project's dependencies
# installed), pip offline (no index, no build isolation: setuptools comes from that environment).
NODE_BASHRC = """\
export PATH={venv}/bin:$PATH
export PIP_NO_INDEX=1 PIP_NO_BUILD_ISOLATION=0 PIP_DISABLE_PIP_VERSION_CHECK=1
"""


def _hidden(paths) -> list[str]:
    """Those of these paths that a node's own /tmp or /root would hide, outermost first."""
    keep = sorted({str(Path(p).resolve()) for p in paths if str(Path(p).resolve()).startswith(("/tmp/", "/root/"))})
    return [p for p in keep if not any(p.startswith(q + "/") for q in keep if q != p)]


class LocalNodes:
    """The user's machine ("client") and the nodes ("head", "worker"), each in its own namespaces."""

    def __init__(self, root: Path, nodes=("head", "worker")) -> None:
        self.root, self.venv = root, Path(sys.prefix)
        self.ips = {"client": f"{NET}.1", **{n: f"{NET}.{i}" for i, n in enumerate(nodes, start=2)}}
        self.procs: dict[str, subprocess.Popen] = {}
        self.pids: dict[str, int] = {}  # each node's PID 1, as the host sees it
        self.key = root / "id_ed25519"
        self.shared = root / "shared"

    def dir(self, name: str) -> Path:
        return self.root / name

    def start(self) -> None:
        self.shared.mkdir()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.key], check=True)
        keep = _hidden([self.root, REPO, self.venv, sys.base_prefix, Path(sys.executable).resolve().parent])
        for name, ip in self.ips.items():
            d = self.dir(name)
            (d / "home").mkdir(parents=True)
            os.chmod(d / "home", 0o700)
            if name != "client":
                (d / "home" / ".ssh").mkdir(mode=0o700)
                (d / "home" / ".ssh" / "authorized_keys").write_text(self.key.with_suffix(".pub").read_text())
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", d / "host_key"], check=True)
                (d / "sshd_config").write_text(SSHD_CONFIG.format(ip=ip, dir=d))
                (d / "home" / ".bashrc").write_text(NODE_BASHRC.format(venv=self.venv))
            cmd = ["unshare", "--pid", "--mount", "--net", "--uts", "--fork", "--mount-proc", "--propagation",
                   "private", "bash", "-c", NODE_INIT, "init", name, ip, str(d), str(self.venv), *keep]  # fmt: skip
            with open(d / "init.log", "w") as log:
                self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._wait_all("mounted", "namespaces")
        self._wire()
        for name in self.ips:
            (self.dir(name) / "wired").touch()
        self._wait_all("ready", "sshd")

    def _wait_all(self, flag: str, what: str) -> None:
        """Until every node's init has written `flag` (its script's progress), or said why it ended."""
        for name, proc in self.procs.items():
            wait_for(lambda n=name: (self.dir(n) / flag).exists(), f"node {name}'s {what}", 30, proc)

    def init_pid(self, name: str) -> int:
        """The host's PID of the node's PID 1 (the child `unshare --fork` made)."""
        if name not in self.pids:
            proc = self.procs[name]
            wait_for(lambda: psutil.Process(proc.pid).children(), f"node {name}'s first process", 30, proc)
            self.pids[name] = psutil.Process(proc.pid).children()[0].pid
        return self.pids[name]

    def _ip(self, name: str, *args: str) -> None:
        subprocess.run(["nsenter", f"--net=/proc/{self.init_pid(name)}/ns/net", "ip", *args], check=True)

    def _wire(self) -> None:
        """A bridge in the client's network namespace, one veth pair to each node."""
        self._ip("client", "link", "add", "br0", "type", "bridge")
        self._ip("client", "addr", "add", f"{self.ips['client']}/24", "dev", "br0")
        self._ip("client", "link", "set", "br0", "up")
        for name in self.ips:
            if name == "client":
                continue
            pid = str(self.init_pid(name))
            self._ip("client", "link", "add", f"to-{name}", "type", "veth", "peer", "name", "eth0", "netns", pid)
            self._ip("client", "link", "set", f"to-{name}", "master", "br0", "up")
            self._ip(name, "addr", "add", f"{self.ips[name]}/24", "dev", "eth0")
            self._ip(name, "link", "set", "eth0", "up")
            # a route for Ray to find the node's address by (nothing answers beyond the bridge)
            self._ip(name, "route", "add", "default", "via", self.ips["client"])

    def run(self, name: str, command: str, timeout_s: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        """A shell command on the user's machine (or a node), in its namespaces, from the repository."""
        env = {"HOME": "/root", "PATH": f"{self.venv}/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               "PYTHONUNBUFFERED": "1", "USER": "root"}  # fmt: skip
        cmd = ["nsenter", "--target", str(self.init_pid(name)), "--pid", "--mount", "--net", "--uts",
               f"--wd={REPO}", "bash", "-c", command]  # fmt: skip
        t0 = time.monotonic()
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
        with open(self.root / "commands.log", "a") as log:
            took = time.monotonic() - t0
            log.write(f"$ [{name}] {command}\n{out.stdout}{out.stderr}[rc {out.returncode}, {took:.0f} s]\n")
        if check and out.returncode != 0:
            tail = f"{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
            raise AssertionError(f"[{name}] {command} -> rc {out.returncode}\n{tail}")
        return out

    def processes(self, name: str) -> list[str]:
        """The command lines of every process in the node's PID namespace, seen from the host."""
        ns = os.readlink(f"/proc/{self.init_pid(name)}/ns/pid")
        found = []
        for p in psutil.process_iter(["pid"]):
            try:
                if os.readlink(f"/proc/{p.pid}/ns/pid") == ns:
                    found.append(" ".join(p.cmdline()))
            except (OSError, psutil.Error):
                pass
        return found

    def stop(self) -> None:
        """Every node ends with its PID 1: the kernel kills the rest of its namespace."""
        for name, proc in self.procs.items():
            if proc.poll() is None:
                try:
                    os.kill(self.init_pid(name), signal.SIGKILL)
                except (ProcessLookupError, psutil.Error, AssertionError):
                    proc.kill()
                proc.wait(timeout=30)
