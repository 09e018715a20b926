"""What an installer relies on: ranges in pyproject.toml, the exact tested set in constraints.txt (inside
those ranges, for every supported Python), the installed set being that one, the licence and the
changelog."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PYTHONS = ["3.11", "3.12", "3.13"]


def applying(lines: list[str], version: str) -> list[Requirement]:
    env = {"python_version": version, "python_full_version": f"{version}.0"}
    reqs = [Requirement(line.split("#")[0].strip()) for line in lines if line.split("#")[0].strip()]
    return [r for r in reqs if r.marker is None or r.marker.evaluate(env)]


def pins(version: str) -> dict[str, Version]:
    out = {}
    for r in applying((ROOT / "constraints.txt").read_text().splitlines(), version):
        [spec] = r.specifier
        assert spec.operator == "==", r
        out[canonicalize_name(r.name)] = Version(spec.version)
    return out


@pytest.mark.parametrize("version", PYTHONS)
def test_every_requirement_is_a_range_with_a_pin_inside_it(version: str) -> None:
    pinned = pins(version)
    reqs = applying([*PROJECT["dependencies"], *PROJECT["optional-dependencies"]["test"]], version)
    for r in reqs:
        name = canonicalize_name(r.name)
        assert name in pinned, f"{r.name} has no pin in constraints.txt for Python {version}"
        assert r.specifier.contains(pinned[name], prereleases=True), (version, str(r), pinned[name])
    runtime = applying(PROJECT["dependencies"], version)
    ranged = [r for r in runtime if not any(s.operator == "==" for s in r.specifier)]
    assert ranged == runtime, "library dependencies are ranges, not exact pins"
    # exactly one package provides the `coincurve` module on each Python
    assert len({"coincurve", "coincurve-cp314-fix"} & set(pinned)) == 1


def test_bip32_is_only_a_test_dependency() -> None:
    assert not any(Requirement(r).name == "bip32" for r in PROJECT["dependencies"])
    assert any(Requirement(r).name == "bip32" for r in PROJECT["optional-dependencies"]["test"])
    for path in (ROOT / "frostfed").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n == "bip32" or n.startswith("bip32.") for n in names), path


def test_the_installed_packages_are_the_tested_set() -> None:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    pinned = pins(version)
    runtime = applying(PROJECT["dependencies"], version)
    for r in runtime:
        assert Version(metadata.version(r.name)) == pinned[canonicalize_name(r.name)], r.name


def test_the_licence_is_the_mit_text_pyproject_declares() -> None:
    assert PROJECT["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge, to any person obtaining a copy" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text


def test_the_changelog_names_this_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert f"## {PROJECT['version']} " in text
    assert "## Unreleased" in text
