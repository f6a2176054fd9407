#!/bin/sh
# The one install path of a release: build the sdist, build the wheel from that sdist, and
# install the wheel (never the source tree) into a target Python environment.
# The Dockerfile runs this script, and so does the release check in tests/e2e, so a green
# check means the image installs exactly what was tested.
#
# usage: install-wheel.sh SOURCE_DIR DIST_DIR TARGET_PYTHON
#   BUILD_PYTHON (default: python3) must have the `build` package.
set -eu
src=$1
dist=$2
target=$3
"${BUILD_PYTHON:-python3}" -m build --outdir "$dist" "$src"
"$target" -m pip install --disable-pip-version-check "$dist"/tutorledger-*.whl
