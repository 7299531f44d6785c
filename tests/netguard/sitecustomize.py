"""Loaded by every Python process started with this directory on PYTHONPATH (the sweep's driver, Ray's
workers, the profiling process): refuses every connection and name lookup that would leave this
machine, and writes each attempt to the file named by $CVSWEEP_NETLOG, with the code that made it.

Tests use it to prove that a default detection sweep downloads nothing (weights, fonts, AMP check
files) and phones nowhere (analytics, update checks). Loopback, this host's own addresses and UDP
"connects" (how Ray learns its node IP; no packet is sent) are allowed. Ray's own usage statistics
(on by default; they probe cloud metadata addresses) are turned off in those tests with
RAY_USAGE_STATS_ENABLED=0: they are Ray's, whatever the sweep.
"""

import ipaddress
import os
import socket
import sys
import traceback

_LOG = os.environ.get("CVSWEEP_NETLOG")
_getaddrinfo = socket.getaddrinfo
_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
_local: set[str] = set()


def _local_addresses() -> set[str]:
    if not _local:
        _local.update({"localhost", socket.gethostname(), socket.getfqdn()})
        for name in (socket.gethostname(), "localhost"):
            try:
                _local.update(info[4][0] for info in _getaddrinfo(name, None))
            except OSError:
                pass
    return _local


def _is_local(host) -> bool:
    host = str(host).strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host in _local_addresses() or host.endswith(".localhost")
    return ip.is_loopback or ip.is_unspecified or host in _local_addresses() or _bindable(ip)


def _bindable(ip) -> bool:
    """An address of one of this machine's interfaces (Ray's node IP, say): one a socket can bind to."""
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((str(ip), 0))
    except OSError:
        return False
    _local.add(str(ip))
    return True


def _refuse(what: str) -> None:
    if _LOG:
        caller = "".join(traceback.format_stack(limit=40)[:-2])
        with open(_LOG, "a") as f:
            f.write(f"--- pid {os.getpid()} {' '.join(sys.argv)[:200]}: {what}\n{caller}\n")
    raise OSError(101, f"network refused by tests/netguard: {what}")


def getaddrinfo(host, *args, **kwargs):
    if host is not None and not _is_local(host.decode() if isinstance(host, bytes) else host):
        _refuse(f"name lookup {host!r}")
    return _getaddrinfo(host, *args, **kwargs)


def _check(sock, address) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
        if not _is_local(address[0]):
            _refuse(f"connect to {address!r}")


def connect(self, address):
    _check(self, address)
    return _connect(self, address)


def connect_ex(self, address):
    _check(self, address)
    return _connect_ex(self, address)


if _LOG:
    socket.getaddrinfo = getaddrinfo
    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    with open(_LOG + ".loaded", "a") as f:
        f.write(f"{os.getpid()} {' '.join(sys.argv)[:200]}\n")
