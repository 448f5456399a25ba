#!/usr/bin/env bash
# Runs the Helm chart check (tests/helm/check_chart.py) in the virtualenv .ci/.venv, creating
# it and installing tests/helm/requirements.txt when missing or changed, then the static wiring
# check of docker-compose.yml (tests/compose/check_compose.py, same venv: PyYAML only). Used by
# `make helm` and .ci/run. Extra arguments go to check_chart.py (e.g. -k KEDA -v). Both checks
# always run; the exit status is non-zero when either failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=.ci/.venv
req=tests/helm/requirements.txt
stamp="$venv/.requirements.sha256"
python=${PYTHON:-python3}

# (Re)create the venv when missing or broken (e.g. its interpreter is gone).
if ! "$venv/bin/python" -c '' 2>/dev/null; then
  rm -rf "$venv"
  "$python" -m venv "$venv" || {
    echo "tests/helm/run.sh: cannot create $venv with $python (on Debian: apt-get install python3-venv)" >&2
    exit 1
  }
fi
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
  echo "$want" >"$stamp"
fi
status=0
"$venv/bin/python" tests/helm/check_chart.py "$@" || status=$?

# docker-compose.yml cannot be started in CI (no Docker engine): check its wiring statically.
echo
echo "== docker-compose.yml wiring (tests/compose/check_compose.py)"
"$venv/bin/python" tests/compose/check_compose.py || status=$?
exit "$status"
