"""uv.lock is what gets installed: in the test venv, in the Docker image, and on CI.

pyproject.toml keeps compatible ranges for whoever embeds the packages; uv.lock pins one
version (with hashes) of everything for the service and its test tools, and
scripts/setup.sh installs exactly that with the uv pinned in scripts/requirements-uv.txt.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
UV = ROOT / "scripts" / "uv.sh"
# What `python -m venv` seeds a venv with; uv sync leaves them in a venv made that way
# (an older scripts/setup.sh made .venv so), and they are no dependency of cinemate's.
VENV_SEEDS = {"pip", "setuptools", "wheel"}


def uv(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(UV), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def locked_for_this_interpreter(*extras: str) -> dict[str, str]:
    """Name -> version that the lock installs here (markers evaluated for this Python)."""
    flags = [flag for extra in extras for flag in ("--extra", extra)]
    exported = uv("export", "--frozen", "--no-hashes", "--no-header", "--no-annotate",
                  "--no-emit-project", *flags)  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    pins: dict[str, str] = {}
    for line in exported.stdout.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", line
        pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


def installed_in_this_venv() -> dict[str, str]:
    """Name -> version of every distribution in the running interpreter's site-packages."""
    folders = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    return {
        canonicalize_name(dist.metadata["Name"]): dist.version
        for dist in metadata.distributions(path=folders)
    }


def test_the_test_venv_holds_exactly_the_locked_versions() -> None:
    assert Path(sys.prefix) == ROOT / ".venv", "run the tests with .venv/bin/python"
    installed = installed_in_this_venv()
    assert installed.pop("cinemate") == pyproject()["project"]["version"]  # type: ignore[index]
    locked = locked_for_this_interpreter("test")
    assert "numpy" in locked and "pytest" in locked and "onnxruntime" in locked
    missing = {name: version for name, version in locked.items() if name not in installed}
    extra = {
        name: version
        for name, version in installed.items()
        if name not in locked and name not in VENV_SEEDS
    }
    wrong = {
        name: (installed[name], version)
        for name, version in locked.items()
        if name in installed and installed[name] != version
    }
    assert (missing, extra, wrong) == ({}, {}, {}), "run scripts/setup.sh --test"


def test_the_lock_matches_pyproject() -> None:
    checked = uv("lock", "--check", "--offline")
    assert checked.returncode == 0, checked.stderr + "\nrefresh it with: scripts/uv.sh lock"


def test_the_lock_check_catches_a_pyproject_edit(tmp_path: Path) -> None:
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    assert uv("lock", "--check", "--offline", cwd=tmp_path).returncode == 0
    project = tmp_path / "pyproject.toml"
    text = project.read_text()
    edited = re.sub(r'"numpy>=[^"]*"', '"numpy>=1.26,<2"', text)
    assert edited != text
    project.write_text(edited)
    assert uv("lock", "--check", "--offline", cwd=tmp_path).returncode != 0


def test_every_dependency_range_is_bounded_above() -> None:
    """Embedders get ranges, but never an untried next major release."""
    project = pyproject()["project"]
    assert isinstance(project, dict)
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    for line in requirements:
        operators = {spec.operator for spec in Requirement(line).specifier}
        assert operators & {"<", "==", "~="}, f"{line}: add an upper bound like <next major"


def test_setup_and_the_image_use_the_same_pinned_uv() -> None:
    pin = (ROOT / "scripts" / "requirements-uv.txt").read_text()
    (version,) = re.findall(r"^uv==(\S+)", pin, flags=re.MULTILINE)
    assert "--hash=sha256:" in pin
    tool = pyproject()["tool"]
    assert isinstance(tool, dict)
    assert tool["uv"]["required-version"] == f"=={version}"
    reported = uv("--version")
    assert reported.returncode == 0 and reported.stdout.split()[1] == version


def test_the_image_holds_every_package_of_the_project() -> None:
    packages = pyproject()["tool"]["setuptools"]["packages"]  # type: ignore[index]
    dockerfile = (ROOT / "Dockerfile").read_text()
    for top in {package.split(".")[0] for package in packages}:
        assert f"\nCOPY {top} ./{top}\n" in dockerfile, top


def test_the_dockerfile_installs_from_the_lock() -> None:
    """The image's only installs: the hash-pinned uv, then uv.lock's packages, as locked."""
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in dockerfile.splitlines()]
    stages = [line.split() for line in lines if line.startswith("FROM ")]
    (build,) = [stage[1] for stage in stages if stage[-2:] == ["AS", "build"]]
    assert stages[-1][1:] == [build]  # the venv's interpreter is in the final image too
    runs = [line.removeprefix("RUN ") for line in lines if line.startswith("RUN ")]
    installs = [run for run in runs if re.search(r"\b(pip|uv)\b", run)]
    bootstrap = "pip install --no-deps --require-hashes --only-binary :all: -r "
    assert installs[0] == bootstrap + "scripts/requirements-uv.txt"
    syncs = installs[1:]
    assert syncs and all(run.startswith("uv sync --locked --no-editable") for run in syncs)
    assert not any("--extra" in run or "--upgrade" in run for run in syncs)
    copied = " ".join(line for line in lines if line.startswith("COPY "))
    assert "scripts/requirements-uv.txt" in copied
    assert re.search(r"COPY pyproject\.toml uv\.lock ", dockerfile)
    assert dockerfile.index("COPY pyproject.toml uv.lock") < dockerfile.index("RUN uv sync")
    assert "COPY --from=build /app/.venv /app/.venv" in dockerfile
    assert "PATH=/app/.venv/bin:$PATH" in dockerfile
