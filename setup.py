"""Package discovery: each top-level package folder ships as ``tutorledger.<folder>``.

The project keeps its architecture folders at the top level (``domain/``, ``api/``, ...) and
installs them under one ``tutorledger`` name. A hand-kept package list once missed
``tutorledger.api.http.routes``; here every directory below those folders is a package and every
file in it (SQL migrations, templates, static assets) is package data, so nothing added
later can be left out of a wheel. ``tests/test_release`` proves it on built artefacts.
Everything else about the project lives in ``pyproject.toml``.
"""

from setuptools import find_namespace_packages, setup

# The runtime's folders only: the local test servers (devtools/) stay in the source checkout.
PACKAGE_FOLDERS = ("domain", "infra", "projections", "consumers", "api", "bench")
SKIP = ("__pycache__", "*.__pycache__", "*.egg-info", "*.egg-info.*")


def discover() -> tuple[list[str], dict[str, str]]:
    """All packages (namespace-style: a folder needs no ``__init__.py``) and their folders."""
    packages: list[str] = []
    package_dir: dict[str, str] = {}
    for folder in PACKAGE_FOLDERS:
        name = f"tutorledger.{folder}"
        package_dir[name] = folder
        packages.append(name)
        packages += [f"{name}.{sub}" for sub in find_namespace_packages(folder, exclude=SKIP)]
    return packages, package_dir


packages, package_dir = discover()
setup(packages=packages, package_dir=package_dir, package_data={"": ["*"]})
