"""pyproject.toml in the form the build backend (setuptools, newest from the index when pip
builds in isolation) reads without a deprecation notice: `make` setup prints none."""

from __future__ import annotations

import warnings
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version
from setuptools.config.pyprojecttoml import apply_configuration, load_file
from setuptools.dist import Distribution
from setuptools.warnings import SetuptoolsDeprecationWarning

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
# project.license as an SPDX string: the PEP 639 form setuptools reads from 77.0.0 on.
SPDX_LICENSE_SINCE = Version("77.0.0")


def test_the_metadata_reads_without_deprecation_warnings(monkeypatch):
    monkeypatch.chdir(PYPROJECT.parent)  # relative paths (readme) as the backend sees them
    with warnings.catch_warnings():
        warnings.simplefilter("error", SetuptoolsDeprecationWarning)
        dist = apply_configuration(Distribution(), PYPROJECT)
    assert dist.metadata.license_expression == "MIT"


def test_the_build_backend_pinned_is_one_that_reads_the_license_form():
    """An older setuptools (still allowed by a lower bound) rejects the SPDX string."""
    requires = [Requirement(r) for r in load_file(PYPROJECT)["build-system"]["requires"]]
    (setuptools,) = [r for r in requires if r.name == "setuptools"]
    lower = [Version(s.version) for s in setuptools.specifier if s.operator in (">=", "==")]
    assert lower and min(lower) >= SPDX_LICENSE_SINCE, setuptools
