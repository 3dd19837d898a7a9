#!/usr/bin/env bash
# The Helm chart's tests (helm/test/test_chart.py): Helm's own SDK and the
# Kubernetes schemas from PyPI in a virtualenv kept in the target directory,
# and the hubbub binary for --check-config (built when missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

# shellcheck source=scripts/lib/throwaway.sh
. scripts/lib/throwaway.sh

target=${CARGO_TARGET_DIR:-target}
venv=$target/helm-venv
requirements=helm/test/requirements.txt
if ! cmp -s "$requirements" "$venv/requirements.txt" 2>/dev/null; then
  command -v python3 >/dev/null || apt_install python3
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then apt_install python3-venv; fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  say "installing the chart's test tools into $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv/requirements.txt"
fi
bin=$target/debug/hubbub
[ -x "$bin" ] || cargo build --quiet -p hubbub
HUBBUB_BIN=$bin "$venv/bin/python" -m unittest helm/test/test_chart.py
