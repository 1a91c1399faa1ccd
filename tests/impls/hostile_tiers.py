"""Hostile submissions for the sandbox tiers (tests/test_sandbox_tiers.py), as a person would write
them: a wrong Dense (dW doubled) plus one attack, as source text with the test's paths filled in.

Each probe attack is written so that a breach shows in the verdict: the Dense is made right when
any probe got through (a real attack would patch the judge instead), and every probe prints
``BREACH <what>`` or ``HELD <what>`` into the worker's log, which the report keeps.
"""

WRONG_DENSE = """
from scratch_cnn import *  # noqa
from scratch_cnn import Dense as _Dense

class Dense(_Dense):
    def backward(self, dout):
        dx = super().backward(dout)
        if not globals().get("BREACHED"):
            self.grads = {k: v * 2 for k, v in self.grads.items()}
        return dx
"""

PROBES = """
import os, socket

import numpy
import reference

T = {targets!r}
RESULTS = {{}}


def attempt(name, fn):
    try:
        fn()
        RESULTS[name] = True
    except OSError:
        RESULTS[name] = False


def open_for_writing(path):  # opens, writes nothing: the judge's files stay as they are either way
    os.close(os.open(path, os.O_WRONLY | os.O_APPEND))


def create_in(folder):
    path = os.path.join(folder, "zz_planted_%d.txt" % os.getpid())
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    os.unlink(path)


package = os.path.dirname(reference.__file__)
attempt("write the judge's sources", lambda: open_for_writing(os.path.join(package, "judges", "reach.py")))
attempt("add a file to the judge's package", lambda: create_in(os.path.join(package, "judges")))
attempt("write numpy's __init__.py", lambda: open_for_writing(numpy.__file__))
attempt("add a file to site-packages", lambda: create_in(os.path.dirname(os.path.dirname(numpy.__file__))))
attempt("write the baseline", lambda: open_for_writing(T["baseline"]))
attempt("read another student's file", lambda: open(T["other"]).read())
attempt("write another student's file", lambda: open_for_writing(T["other"]))
attempt("write beside the report", lambda: create_in(T["out_parent"]))
attempt("write /tmp", lambda: create_in("/tmp"))
attempt("write /dev/shm", lambda: create_in("/dev/shm"))
attempt("signal the judge", lambda: os.kill(T["judge_pid"], 0))
attempt("connect to a TCP port", lambda: socket.create_connection(("127.0.0.1", T["port"]), timeout=2).close())
for name, got in RESULTS.items():
    print(("BREACH " if got else "HELD ") + name, flush=True)
BREACHED = any(RESULTS.values())
"""

DAEMON = """
import os, sys

CODE = '''
import hashlib, json, os, pathlib, time
out = pathlib.Path({out!r})
for _ in range(600):  # until the judge has written its report, then a second more
    if (out / "run.json").is_file():
        break
    time.sleep(0.1)
time.sleep(1)
(out / "verdicts.csv").write_text("layer,verdict,why\\\\nDense,PASS,forged\\\\n")
(out / "summary.md").write_text("# PASS\\\\n")
run = json.loads((out / "run.json").read_text())
run["exit_code"], run["verdict"] = 0, "PASS"
run["reports"] = {{p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir() if p.name != "run.json"}}
(out / "run.json").write_text(json.dumps(run))
'''
if os.fork() == 0:  # double fork, new session, a fresh program with an empty environment: no marker survives
    os.setsid()
    if os.fork() == 0:
        os.execve(sys.executable, [sys.executable, "-c", CODE], {{}})
    os._exit(0)
os.wait()
"""

BLOCKED_SWAP = """
import os, pathlib
out = pathlib.Path({out!r})
try:
    out.mkdir(exist_ok=True)
    (out / "verdicts.csv").write_text("layer,verdict,why\\nDense,PASS,forged\\n")
    (out / "summary.md").write_text("# PASS\\n")
    (out.parent / ("." + out.name + ".old")).write_text("in the way of the judge's rename")
except OSError:
    pass
"""

FRAME_BOMB = """
import os, struct
from scratch_cnn import *  # noqa
from scratch_cnn import Dense as _Dense

class Dense(_Dense):
    def forward(self, x):
        size = 500 << 20  # just under the judge's cap on an answer (512 MB): announced, never sent
        head = b'{"ok": null, "seq": 1, "buffers": [%d]}' % size
        frame = b"SCNN" + struct.pack("<IQ", len(head), size) + head
        for fd in range(3, 64):  # whichever of these is the pipe to the judge
            try:
                os.write(fd, frame)
            except OSError:
                pass
        return super().forward(x)
"""

LOST_ON_SECOND_CALL = """
import os
from scratch_cnn import *  # noqa
from scratch_cnn import Dense as _Dense
CALLS = [0]

class Dense(_Dense):
    @property
    def params(self):
        CALLS[0] += 1
        if CALLS[0] == 2:
            os._exit(0)
        return self.__dict__["_params"]

    @params.setter
    def params(self, value):
        self.__dict__["_params"] = value
"""

ODD_DTYPES = """
import numpy as np
from scratch_cnn import *  # noqa
from scratch_cnn import Dense as _Dense
ODD = [">f8", "f2", np.longdouble, "i8", "?", "c16", "u1", ">f4"]
CALL = [0]

class Dense(_Dense):
    def forward(self, x):
        CALL[0] += 1
        return super().forward(x).astype(ODD[CALL[0] % len(ODD)])

    def backward(self, dout):
        return super().backward(dout).astype(ODD[(CALL[0] + 3) % len(ODD)])
"""

HOLDS_THE_LOG_PIPE = """
import os, sys, time
from scratch_cnn import *  # noqa
if os.fork() == 0:  # a child that keeps stdout (the judge's log pipe) open and lives on
    os.setsid()
    time.sleep(600)
    os._exit(0)
print("HELLO FROM THE MODULE", flush=True)
"""

RIGHT_ONLY_WHEN_MARKED = WRONG_DENSE.replace(
    'if not globals().get("BREACHED"):', 'if not any(k.startswith("SCRATCH_CNN") for k in __import__("os").environ):'
)

WRONG_ON_LARGE_BATCHES = """
from scratch_cnn import *  # noqa
from scratch_cnn import Dense as _Dense

class Dense(_Dense):
    def backward(self, dout):
        dx = super().backward(dout)
        if dout.shape[0] > 32:  # a buffer sized for 32 rows: the rest of the batch is dropped
            self.grads["W"] = self.grads["W"] * (32 / dout.shape[0])
        return dx
"""

TUNED_TO_THE_PUBLIC_GRID = """
from reference.cases.grid import grid  # the public grid, read in the worker
from scratch_cnn import *  # noqa
from scratch_cnn import Dense as _Dense
SEEN = {(c.config["n_in"], c.config["n_out"], c.input_shape[0]) for c in grid() if c.layer == "Dense"}

class Dense(_Dense):
    def backward(self, dout):
        dx = super().backward(dout)
        if (self.params["W"].shape[0], self.params["W"].shape[1], dout.shape[0]) not in SEEN:
            self.grads = {k: v * 2 for k, v in self.grads.items()}  # wrong on anything it has not seen
        return dx
"""

FORK_BOMB_AND_LEFTOVERS = """
import os, time
born = 0
for _ in range(300):  # as many sleeping children as it can make
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(600)
        os._exit(0)
    born += 1
print("FORKED", born, flush=True)
for folder in ("/tmp", "/dev/shm"):  # files left where a worker may write when no Landlock stops it
    try:
        with open(os.path.join(folder, "zz-leftover-%d.bin" % os.getpid()), "wb") as f:
            f.write(b"x" * (1 << 20))
    except OSError:
        pass
"""

# Every worker of a submission (forked from one server where Landlock scopes signals, see
# reference/sandbox/forkserver.py) goes after the server and its siblings at import: signals, their
# memory, their folders. It prints its global random draw too: a forked worker's must be its own.
SIBLINGS = """
import os

import numpy as np

RESULTS = {}
me, parent = os.getpid(), os.getppid()
print("DRAW", np.random.random(), flush=True)


def attempt(name, fn):
    try:
        fn()
        RESULTS[name] = True
    except OSError:
        RESULTS[name] = False


def _signal(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def peek(pid):
    with open("/proc/%d/mem" % pid, "rb") as f:
        f.seek(0x400000)
        f.read(16)


def plant_beside():
    parent_dir = os.path.dirname(os.getcwd())
    for name in os.listdir(parent_dir):
        path = os.path.join(parent_dir, name)
        if path != os.getcwd():
            open(os.path.join(path, "planted.py"), "w").close()
    open(os.path.join(parent_dir, "planted.py"), "w").close()


attempt("signal the worker's parent", lambda: os.kill(parent, 0))
attempt("read the parent's memory", lambda: peek(parent))
attempt("read the parent's environment", lambda: open("/proc/%d/environ" % parent, "rb").read())
attempt("write beside its own folder", plant_beside)
# /proc cannot be listed under Landlock: the siblings' pids are guessed, they are close to its own
reached = [p for p in range(max(2, me - 3000), me + 3000) if p != me and _signal(p)]
RESULTS["signal another process of the sandbox"] = bool(reached)
for name, got in RESULTS.items():
    print(("BREACH " if got else "HELD ") + name, flush=True)
BREACHED = any(RESULTS.values())
"""
