#!/usr/bin/env bash
# A reproducibility gate for any CI: install the locked environment, rerun the locked specs.
# The install is pinned by exp.constraints.txt (written by `exp lock` next to exp.lock):
# an unpinned install would compare against another environment class and prove nothing.
# Each locked spec gets one of five verdicts:
#   reproduced           the locked bits reproduce                              (passes)
#   trajectory_changed   a trajectory field changed: re-record with `exp lock`  (fails)
#   input_changed        data, base weights or custom code changed: names them  (fails)
#   environment_changed  package versions or settings differ: names them and
#                        the install command (fails; `--allow-other-environment` skips it)
#   regression           all of the above equal, other bits                     (fails)
# Exit codes: 0 every spec reproduced, 1 any other verdict, 2 a spec or the lockfile could not be used.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv="$(mktemp -d)/venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet -c examples/ci/exp.constraints.txt .
"$venv/bin/exp" audit --lock examples/ci/exp.lock --allow-import lab --junit "${REPORT:-report.xml}"
