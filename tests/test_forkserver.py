"""The worker server's own protocol (reference/sandbox/forkserver.py), spoken to directly: a fork it
cannot make (the uid's process limit spent by a worker's children) is refused and the server goes on
serving; an empty message ends it. Sandboxed judgements with forked workers are in
tests/test_sandbox_tiers.py."""

import json
import os
import socket
import subprocess
import sys

# the server, with os.fork failing as it does once the uid's process limit (RLIMIT_NPROC) is spent
CANNOT_FORK = (
    "import os, sys\n"
    "from reference.sandbox import forkserver\n"
    "def fork():\n"
    "    raise BlockingIOError(11, 'Resource temporarily unavailable')\n"
    "os.fork = fork\n"
    "forkserver.serve(int(sys.argv[1]))\n"
)


def test_a_fork_the_server_cannot_make_is_refused_and_the_server_goes_on():
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    proc = subprocess.Popen([sys.executable, "-c", CANNOT_FORK, str(theirs.fileno())], pass_fds=(theirs.fileno(),))
    theirs.close()
    try:
        mine.settimeout(60)
        assert json.loads(mine.recv(1 << 16))["ready"] is True
        for _ in range(2):  # refused, and still answering the next request
            fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(3)]
            request = json.dumps({"op": "fork", "dir": "/", "env": {}}).encode()
            socket.send_fds(mine, [request], fds)
            for fd in fds:
                os.close(fd)
            reply = json.loads(mine.recv(1 << 16))
            assert reply["refused"].startswith("fork: ") and "temporarily unavailable" in reply["refused"]
        mine.send(b"")
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        mine.close()
