#!/usr/bin/env bash
# Lint, type-check, and enforce import layers on the *installed* layout (a regular, non-editable
# build puts api/, workers/, operator/ under hurricane/, exactly as users get them).
set -euo pipefail
venv="$1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
"$venv/bin/ruff" check .
"$venv/bin/mypy" hurricane
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$venv/bin/pip" install -q --no-deps --no-build-isolation --target "$tmp/site" . >"$tmp/pip.log" 2>&1 \
  || { cat "$tmp/pip.log" >&2; exit 1; }
for m in api/service.py api/app.py workers/tasks.py workers/app.py operator/manifests.py; do
  test -f "$tmp/site/hurricane/$m" || { echo "lint: wheel lacks hurricane/$m" >&2; exit 1; }
done
# the built dashboard ships as package data (scripts/build_ui.sh; bootstrap builds it)
ls "$tmp/site/hurricane/api/ui/assets/"*.js >/dev/null 2>&1 && test -f "$tmp/site/hurricane/api/ui/index.html" \
  || { echo "lint: wheel lacks the dashboard (hurricane/api/ui): scripts/build_ui.sh" >&2; exit 1; }
for top in api operator workers; do
  test ! -e "$tmp/site/$top" || { echo "lint: wheel installs a top-level '$top'" >&2; exit 1; }
done
# grimp (import-linter's graph builder) needs regular packages: inside hurricane/ they shadow nothing
touch "$tmp/site/hurricane/api/__init__.py" "$tmp/site/hurricane/workers/__init__.py" \
      "$tmp/site/hurricane/operator/__init__.py"
(cd "$tmp" && PYTHONPATH="$tmp/site" "$venv/bin/lint-imports" --config "$here/pyproject.toml")
# the service components type-checked where they are importable (hurricane.api, .workers)
(cd "$tmp/site" && "$venv/bin/mypy" --config-file "$here/pyproject.toml" --cache-dir "$tmp/mypy" \
  -p hurricane.api -p hurricane.workers -p hurricane.operator)
