#!/usr/bin/env bash
# A reproducibility gate for any CI: install, rerun the locked specs, fail on exit 1.
#   exit 0  the locked bits reproduce (or the environment class differs: distances reported)
#   exit 1  a regression, or a trajectory change that needs `exp lock` rerun
#   exit 2  a spec or the lockfile could not be used
set -euo pipefail
cd "$(dirname "$0")/../.."

venv="$(mktemp -d)/venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet .
"$venv/bin/exp" audit --lock examples/ci/exp.lock --allow-import lab --junit "${REPORT:-report.xml}"
