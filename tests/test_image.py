"""The Dockerfile's layers, user and healthcheck, checked offline (Docker's engine does not run
here): the dependencies are installed from the metadata alone before any code is copied, so a
code edit reuses that layer; the image never runs as root; the HEALTHCHECK follows `--listen`.

The slow case replays the Dockerfile's own two pip steps in a fresh virtual environment, from
the files its COPY instructions bring, so a dependency the first layer misses fails here.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import string
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def instructions() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments and parser
    directives dropped."""
    found: list[Instruction] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        pending = ""
        keyword, _, arguments = text.partition(" ")
        found.append(Instruction(keyword.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return found


def copies(steps: list[Instruction]) -> list[tuple[int, list[str], str]]:
    """(index, sources, destination) of each COPY, in order."""
    found = []
    for index, step in enumerate(steps):
        if step.keyword == "COPY":
            *sources, destination = shlex.split(step.arguments)
            assert not any(s.startswith("--") for s in sources), "COPY flags are not expected"
            found.append((index, sources, destination))
    return found


def run_steps(steps: list[Instruction]) -> list[tuple[int, str]]:
    return [(index, step.arguments) for index, step in enumerate(steps) if step.keyword == "RUN"]


def dependency_step(steps: list[Instruction]) -> int:
    (index,) = [i for i, text in run_steps(steps) if "image-requirements" in text]
    return index


def code_step(steps: list[Instruction]) -> int:
    (index,) = [i for i, text in run_steps(steps) if "--no-deps" in text]
    return index


def test_dependencies_install_before_any_code_is_copied() -> None:
    """Everything copied before the dependency layer is metadata: pyproject.toml, the
    client's folder (its code is exporter/'s) and the script reading them."""
    steps = instructions()
    deps = dependency_step(steps)
    before = [source for index, sources, _ in copies(steps) if index < deps for source in sources]
    assert set(before) == {"pyproject.toml", "client", "scripts/image-requirements"}
    # The tracked files: a local build of the client (client/build) is in .dockerignore.
    listed = subprocess.run(
        ["git", "ls-files", "client"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    client_files = {Path(name).name for name in listed}
    assert client_files and client_files <= {"pyproject.toml", "README.md"}, "client/ has code"
    code_copy = next(index for index, sources, _ in copies(steps) if "exporter" in sources)
    assert deps < code_copy < code_step(steps)
    assert "pip install" in steps[deps].arguments and " -r " in steps[deps].arguments


def test_the_code_layer_installs_no_dependency() -> None:
    """After the code is copied, pip installs the two distributions with --no-deps and no
    build isolation (nothing downloaded), and pip check fails the build if a requirement of
    theirs was not in the layer before."""
    steps = instructions()
    text = steps[code_step(steps)].arguments
    assert "--no-deps" in text and "--no-build-isolation" in text
    assert "./client" in text and text.index("./client") < text.index(" . ")
    assert "pip check" in text
    later = [i for i, t in run_steps(steps) if i > dependency_step(steps) and "pip install" in t]
    assert later == [code_step(steps)]


def test_image_requirements_are_the_projects_own() -> None:
    """The script lists every dependency of both distributions and of the image's extras,
    and none of the project's own distributions."""
    steps = instructions()
    (arg,) = [s.arguments for s in steps if s.keyword == "ARG" and s.arguments.startswith("EXTRAS")]
    extras = " ".join(shlex.split(arg.partition("=")[2])).split()
    assert extras, "the image has a PostgreSQL store only with its extra"
    assert set(extras) <= set(PROJECT["optional-dependencies"])
    result = subprocess.run(
        [sys.executable, "scripts/image-requirements", *extras],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    listed = result.stdout.splitlines()
    client = tomllib.loads((ROOT / "client/pyproject.toml").read_text(encoding="utf-8"))
    server = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    expected = [
        *server["build-system"]["requires"],
        *client["build-system"]["requires"],
        *PROJECT["dependencies"],
        *client["project"]["dependencies"],
        *(r for extra in extras for r in PROJECT["optional-dependencies"][extra]),
    ]
    own = ("job-exporter==", "job-exporter-client==", "job-exporter[")
    assert set(listed) == {r for r in expected if not r.startswith(own)}
    assert len(listed) == len(set(listed))


def test_the_revision_comes_after_every_install() -> None:
    """REVISION changes with every commit: declared after the last RUN, so a new commit
    rebuilds no layer, and handed to the exporter's build_info as JOB_EXPORTER_REVISION."""
    steps = instructions()
    (declared,) = [
        i for i, s in enumerate(steps) if s.keyword == "ARG" and "REVISION" in s.arguments
    ]
    assert declared > max(index for index, _ in run_steps(steps))
    assert any(
        s.keyword == "ENV" and s.arguments == "JOB_EXPORTER_REVISION=$REVISION" for s in steps
    )


def test_the_image_never_runs_as_root() -> None:
    """The last USER is the numeric uid (so Kubernetes' runAsNonRoot can check it) of the user
    created in the image, and it comes before the ENTRYPOINT."""
    steps = instructions()
    users = [(index, step.arguments) for index, step in enumerate(steps) if step.keyword == "USER"]
    assert users, "no USER: the image runs as root"
    index, user = users[-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert any(f"--uid {uid}" in step.arguments for step in steps if step.keyword == "RUN")
    entrypoint = next(i for i, step in enumerate(steps) if step.keyword == "ENTRYPOINT")
    assert index < entrypoint


def test_the_healthcheck_follows_the_listen_address() -> None:
    """HEALTHCHECK runs `job-exporter healthcheck`, which reads the address from serve's own
    command line: it names no port of its own."""
    (step,) = [s for s in instructions() if s.keyword == "HEALTHCHECK"]
    options, _, command = step.arguments.partition("CMD ")
    assert json.loads(command) == [*PROJECT["scripts"], "healthcheck"]
    assert "9188" not in command
    timeout = next(o for o in options.split() if o.startswith("--timeout="))
    assert timeout == "--timeout=3s"  # above the check's own 2 s request timeout


def _context_files(sources: list[str], stage: Path) -> None:
    """Copy what COPY brings from the build context into `stage`, as .dockerignore leaves it."""
    for source in sources:
        path = ROOT / source
        target = stage / source
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
            shutil.copytree(path, target, ignore=ignore)
        else:
            shutil.copy2(path, target)


@pytest.mark.slow
def test_the_pip_steps_install_a_working_exporter(tmp_path: Path) -> None:
    """The Dockerfile's two pip RUN steps, replayed as written in a fresh virtual environment:
    the first from the metadata alone, the second after the code; then the console script
    runs, and the extras' drivers import."""
    steps = instructions()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    stage = tmp_path / "app"
    stage.mkdir()
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    for step in steps:
        if step.keyword == "ENV":
            for pair in shlex.split(step.arguments):
                name, _, value = pair.partition("=")
                env[name] = string.Template(value).safe_substitute(env)
        if step.keyword == "ARG":
            name, _, value = step.arguments.partition("=")
            env[name] = " ".join(shlex.split(value))
    env["PIP_NO_CACHE_DIR"] = "0"  # the image keeps no cache; a test run may use one
    deps, code = dependency_step(steps), code_step(steps)
    for index, step in enumerate(steps):
        if step.keyword == "COPY":
            *sources, _ = shlex.split(step.arguments)
            _context_files(sources, stage)
        elif index in (deps, code):
            result = subprocess.run(
                ["bash", "-c", step.arguments.replace("/tmp/", f"{tmp_path}/")],
                cwd=stage,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    script = venv / "bin" / next(iter(PROJECT["scripts"]))
    result = subprocess.run(
        [str(script), "--version"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0 and PROJECT["version"] in result.stdout, result.stderr
    imports = "import psycopg, psycopg_pool, redis, exporter.client, exporter.integrations"
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-c", imports], env=env, cwd=tmp_path, check=True, timeout=60)
