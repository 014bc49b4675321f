#!/usr/bin/env bash
# The project's virtualenv: `venv.sh PYTHON VENV` makes VENV with the project (editable) and its
# dev tools, as one step line; pip's output goes to $TORNADO_OPERATOR_CACHE/logs/venv.log.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=${1:?usage: venv.sh PYTHON VENV}
venv=${2:?usage: venv.sh PYTHON VENV}
export STEP_PHASE=venv STEP_TOTAL=1
# shellcheck source=hack/steps.sh
. "$here/steps.sh"

make_venv() {
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --upgrade pip
  "$venv/bin/pip" install -e '.[dev]'
}
step_run venv "Python virtualenv $venv with the project and its dev tools" "about 1 min cold" make_venv
