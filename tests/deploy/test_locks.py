"""requirements.lock (the Lambda image) and requirements-dev.lock (.venv, CI) still answer pyproject.toml:
a dependency added or narrowed there without `./dev.sh lock` fails here with the command to run."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.M)


def pins(lock: str) -> dict[str, list[str]]:
    """name -> pinned versions (one per marker branch, e.g. per Python) of each package in a lock."""
    found: dict[str, list[str]] = {}
    for name, version in PIN.findall((REPO_ROOT / lock).read_text()):
        found.setdefault(canonicalize_name(name), []).append(version)
    return found


def hashed(lock: str) -> bool:
    """Every pin in the file carries at least one sha256 (pip --require-hashes refuses the file otherwise)."""
    entries = re.split(r"\n(?=[A-Za-z0-9])", (REPO_ROOT / lock).read_text().split("\n", 2)[-1])
    return all("--hash=sha256:" in entry for entry in entries if PIN.match(entry))


def unmet(requirements: list[str], locked: dict[str, list[str]]) -> list[str]:
    """The requirements whose package is missing from ``locked`` or pinned outside their range."""
    missing = []
    for line in requirements:
        requirement = Requirement(line)
        versions = locked.get(canonicalize_name(requirement.name), [])
        if not versions or not all(requirement.specifier.contains(v, prereleases=True) for v in versions):
            missing.append(f"{line} (locked: {', '.join(versions) or 'absent'})")
    return missing


@pytest.mark.parametrize(
    ("lock", "groups"),
    [("requirements.lock", ()), ("requirements-dev.lock", ("local", "dev"))],
)
def test_lock_answers_pyproject(lock: str, groups: tuple[str, ...]) -> None:
    # GIVEN the lock as committed and what pyproject.toml asks of it
    wanted = PROJECT["dependencies"] + [
        req for group in groups for req in PROJECT["optional-dependencies"][group]
    ]
    locked = pins(lock)
    # THEN every requirement is pinned within its range, and every pin is hash-checked
    assert not unmet(wanted, locked), f"{lock} is stale; run ./dev.sh lock: {unmet(wanted, locked)}"
    assert hashed(lock), f"{lock} has pins without hashes; run ./dev.sh lock"


def test_image_lock_does_not_hold_numpy_below_2() -> None:
    # Only the local extra (nvidia-pytriton) needs numpy<2; the image resolves without that extra.
    assert all(int(version.split(".")[0]) >= 2 for version in pins("requirements.lock")["numpy"])
    assert "nvidia-pytriton" not in pins("requirements.lock")


def test_image_lock_has_protobuf_convert_needs() -> None:
    # service/triton/convert.py uses protobuf APIs from 5.26 on.
    for version in pins("requirements.lock")["protobuf"]:
        major, minor = (int(part) for part in version.split(".")[:2])
        assert (major, minor) >= (5, 26)
