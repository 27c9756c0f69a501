#!/usr/bin/env bash
# Creates (once) a virtualenv with hurricane-nas's pinned dependencies, cached outside the clone
# and keyed on the dependency hash, then installs this checkout into it (editable, no deps).
# Prints the venv path on the last line. Usage: source <(scripts/bootstrap.sh --env) or
#   VENV=$(scripts/bootstrap.sh | tail -n1)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-python3}"
cache="${HURRICANE_CACHE:-$HOME/.cache/hurricane-nas}"
key=$(cd / && "$py" - "$here/pyproject.toml" <<'PY'
import hashlib, json, sys, tomllib
p = tomllib.load(open(sys.argv[1], "rb"))["project"]
deps = {"deps": p["dependencies"], "extras": p.get("optional-dependencies", {}),
        "python": sys.version_info[:2]}
print(hashlib.sha256(json.dumps(deps, sort_keys=True).encode()).hexdigest()[:16])
PY
)
venv="$cache/venv-$key"
# The service (`hurricane stack`, its tests) runs the OS's redis-server: install it where missing.
if ! command -v redis-server >/dev/null 2>&1; then
  mkdir -p "$cache"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing redis-server (apt-get)" >&2
    { apt-get install -y -q redis-server || { apt-get update -q && apt-get install -y -q redis-server; }; } \
      >"$cache/apt.log" 2>&1 || { cat "$cache/apt.log" >&2; exit 1; }
  else
    echo "bootstrap: redis-server is missing; install it (apt-get install -y redis-server)" >&2
  fi
fi
# The dashboard's browser tests drive Debian's chromium (never a downloaded browser).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  mkdir -p "$cache"
  echo "bootstrap: installing chromium (apt-get)" >&2
  { apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; }; } \
    >"$cache/apt-chromium.log" 2>&1 || { cat "$cache/apt-chromium.log" >&2; exit 1; }
fi
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  echo "bootstrap: creating $venv (first run installs torch: a few minutes)" >&2
  rm -rf "$venv"
  mkdir -p "$cache"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade "pip>=23" "setuptools>=65,<81" wheel >&2
  # Dependencies come from pyproject.toml's pins: install the project's deps without the project.
  (cd / && "$venv/bin/python" - "$here/pyproject.toml") > "$cache/requirements-$key.txt" <<'PY'
import sys, tomllib
p = tomllib.load(open(sys.argv[1], "rb"))["project"]
print("\n".join(p["dependencies"] + [d for ds in p.get("optional-dependencies", {}).values() for d in ds]))
PY
  # (the local pip config names optional file indexes; their "ignored" warnings are noise)
  "$venv/bin/pip" install -q -r "$cache/requirements-$key.txt" 2>&1 \
    | grep -v "^WARNING: Location '.*' is ignored" >&2 || true
  "$venv/bin/python" -c "import torch, onnxruntime, sklearn, pydantic" \
    || { echo "bootstrap: dependency install failed" >&2; exit 1; }
  touch "$venv/.complete"
fi
# The cached venv is shared by clones: (re)point its editable install at this checkout.
if ! "$venv/bin/pip" install -q --no-deps --no-build-isolation -e "$here" >"$cache/editable.log" 2>&1; then
  cat "$cache/editable.log" >&2
  exit 1
fi
# The web dashboard's assets (api/ui/, served at /ui/): built once per source change.
"$here/scripts/build_ui.sh"
ln -sfn "$venv" "$here/.venv"
echo "$venv"
