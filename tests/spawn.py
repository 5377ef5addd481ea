"""Start a two-process gloo group on a free loopback port, retrying when the port is taken.

Picking a free port (bind to port 0, read it, close) leaves a window in which another process on the machine can
take it before rank 0's TCPStore binds it; the group then fails with EADDRINUSE. That is a race of the test machine,
not a defect of the code under test, so the spawn is retried on a fresh port. Any other failure is raised at once.
"""
from __future__ import annotations

import socket

import torch.multiprocessing as mp

_PORT_TAKEN = ("EADDRINUSE", "Address already in use", "address already in use")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn_on_free_port(fn, args: tuple, nprocs: int = 2, tries: int = 4) -> None:
    """mp.spawn(fn, args=(port, *args)); fn(rank, port, *args) must rendezvous on 127.0.0.1:port."""
    for attempt in range(tries):
        try:
            mp.spawn(fn, args=(free_port(), *args), nprocs=nprocs, join=True)
            return
        except mp.ProcessRaisedException as err:
            if attempt == tries - 1 or not any(s in str(err) for s in _PORT_TAKEN):
                raise
