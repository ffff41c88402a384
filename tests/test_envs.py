r"""The pinned environments agree: requirements.txt, envs/morphoflow.yaml, pyproject.toml, the venv."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _pins_from_lines(lines: list[str], where: str) -> dict[str, Requirement]:
    pins: dict[str, Requirement] = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name not in pins, f"{where}: {req.name} listed twice"
        pins[name] = req
    return pins


def _requirements_txt() -> dict[str, Requirement]:
    return _pins_from_lines((ROOT / "requirements.txt").read_text().splitlines(), "requirements.txt")


def _env_yaml() -> dict:
    return yaml.safe_load((ROOT / "envs" / "morphoflow.yaml").read_text())


def _env_pip_lines(env: dict) -> list[str]:
    pip = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1, "envs/morphoflow.yaml: expected exactly one pip: section"
    return pip[0]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pinned_version(req: Requirement) -> Version:
    specs = list(req.specifier)
    assert len(specs) == 1 and specs[0].operator == "==", f"requirements.txt: {req} is not an exact '==' pin"
    return Version(specs[0].version)


def test_requirements_are_exact_pins() -> None:
    pins = _requirements_txt()
    assert len(pins) >= 10
    for req in pins.values():
        _pinned_version(req)


def test_conda_env_pins_equal_requirements() -> None:
    env = _env_yaml()
    env_pins = _pins_from_lines(_env_pip_lines(env), "envs/morphoflow.yaml")
    req_pins = _requirements_txt()
    assert set(env_pins) == set(req_pins), (
        f"only in envs/morphoflow.yaml: {sorted(set(env_pins) - set(req_pins))}; "
        f"only in requirements.txt: {sorted(set(req_pins) - set(env_pins))}"
    )
    for name, req in req_pins.items():
        assert env_pins[name].specifier == req.specifier, f"{name}: env {env_pins[name].specifier} != {req.specifier}"


def test_conda_env_python_and_project_install() -> None:
    env = _env_yaml()
    conda_deps = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in conda_deps and "pip" in conda_deps
    requires_python = _pyproject()["project"]["requires-python"]
    assert Version("3.11") in Requirement(f"python{requires_python}").specifier
    # The editable project line resolves, from Snakemake's copy of the env file
    # (<workdir>/.snakemake/conda/<hash>.yaml), to the repository root.
    editable = [line for line in _env_pip_lines(env) if line.startswith("-e ")]
    assert editable == ["-e ../.."]
    target = (ROOT / ".snakemake" / "conda" / editable[0][3:]).resolve()
    assert tomllib.loads((target / "pyproject.toml").read_text())["project"]["name"] == "morphoflow"


def test_pins_satisfy_pyproject_ranges() -> None:
    project = _pyproject()["project"]
    declared = [Requirement(r) for r in project["dependencies"]]
    for extra in project.get("optional-dependencies", {}).values():
        declared += [Requirement(r) for r in extra]
    pins = _requirements_txt()
    for req in declared:
        name = canonicalize_name(req.name)
        assert name in pins, f"pyproject.toml declares {req} but requirements.txt does not pin it"
        version = _pinned_version(pins[name])
        assert req.specifier.contains(version, prereleases=True), (
            f"requirements.txt pins {pins[name]} outside pyproject.toml's range {req}"
        )


def test_venv_matches_pins() -> None:
    r"""The running environment (``make install``'s venv) has exactly the pinned versions."""

    mismatched = []
    for name, req in _requirements_txt().items():
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            mismatched.append(f"{req.name} not installed")
            continue
        if Version(installed.public) != _pinned_version(req):  # drop local labels such as +cpu
            mismatched.append(f"{req.name}=={installed} installed, {req} pinned")
    if mismatched and Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.skip(f"not running in the project's .venv ({sys.prefix}): " + "; ".join(mismatched))
    assert not mismatched, "; ".join(mismatched)
