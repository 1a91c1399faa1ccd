"""The pipeline. Each session is a verb: tests, verify, lint, train, fetch_data.

nox uses the venv backend with pip (never uv): torch is pinned to the CPU wheel (torch==2.13.0),
and uv would ignore the local pip configuration and download a multi-GB CUDA build.
"""

import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]

PYTHON = "3.11"


def install(session: nox.Session, extras: str) -> None:
    session.install("-e", f".[{extras}]")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit and property tests (pytest + hypothesis, fixed 'ci' profile); JUnit XML in reports/latest/."""
    install(session, "test,reference")
    os.makedirs("reports/latest", exist_ok=True)
    session.run("pytest", "--junitxml=reports/latest/junit-tests.xml", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff lint and format check over every package."""
    session.install("ruff")
    session.run("ruff", "check", "scratch_cnn", "reference", "tests", "noxfile.py")
    session.run("ruff", "format", "--check", "scratch_cnn", "reference", "tests", "noxfile.py")
