"""The pipeline. Each session is a verb: verify, tests, lint, train.

nox uses the venv backend with pip (never uv): torch is pinned to the CPU wheel (torch==2.13.0),
and uv would ignore the local pip configuration and download a multi-GB CUDA build.
"""

import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "verify"]

PYTHON = "3.11"


def install(session: nox.Session, extras: str) -> None:
    session.install("-e", f".[{extras}]")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit and property tests (pytest + hypothesis, fixed 'ci' profile); JUnit XML in reports/latest/."""
    install(session, "test,reference")
    os.makedirs("reports/latest", exist_ok=True)
    # -v: each test's name as it starts (a grading test runs for minutes: the log shows which); the 20 slowest at the end
    session.run("pytest", "-v", "--durations=20", "--junitxml=reports/latest/junit-tests.xml", *session.posargs)


@nox.session(python=PYTHON)
def verify(session: nox.Session) -> None:
    """The proof: MNIST, the three judges, the fault catalogue, reports/latest/, then the gate.

    `nox -s verify -- --quick` for a reduced run; `nox -s verify -- --update-baseline` to accept
    this run's figures as reports/baseline/ (only when every judge passed).
    """
    install(session, "reference")
    session.run("python", "-m", "reference", "verify", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The performance report in reports/latest/bench/: step and per-layer times as ratios against PyTorch
    (same machine, same run), conv GFLOP/s against the measured sgemm rate, images/s, peak memory."""
    install(session, "reference")
    session.run("python", "-m", "reference.bench", *session.posargs)


@nox.session(python=PYTHON)
def mutants(session: nox.Session) -> None:
    """The mutation run: 200 seeded first-order mutants of scratch_cnn, each judged by the judges
    (reports/latest/mutants/; exit 1 when a non-equivalent mutant survives). `-- --all` for every one,
    `-- --only ID,...` to rejudge some."""
    install(session, "reference")
    session.run("python", "-m", "reference", "mutants", *session.posargs)


@nox.session(python=PYTHON)
def train(session: nox.Session) -> None:
    """Train on MNIST with NumPy alone: `nox -s train -- --arch lenet --epochs 5`."""
    session.install("-e", ".")
    session.run("python", "-m", "scratch_cnn", "train", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff lint and format check over every package."""
    session.install("ruff")
    session.run("ruff", "check", "scratch_cnn", "reference", "tests", "noxfile.py")
    session.run("ruff", "format", "--check", "scratch_cnn", "reference", "tests", "noxfile.py")
