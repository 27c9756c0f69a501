#!/usr/bin/env bash
# Builds the web dashboard (dashboard/: TypeScript, Vite, ECharts) into api/ui/, the package
# data that the API serves at /ui/. Skipped when api/ui/ was built from the same sources; a
# build is cached outside the clone, keyed on the sources' hash (like the venv). Needs Node.js
# >= 20.19 and npm (installed with apt-get when missing and we are root); never at run time.
#   scripts/build_ui.sh [--force]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${HURRICANE_CACHE:-$HOME/.cache/hurricane-nas}"
out="$here/api/ui"
key=$(cd "$here" && { find dashboard/src -type f | LC_ALL=C sort; \
  ls dashboard/package.json dashboard/package-lock.json dashboard/index.html \
     dashboard/vite.config.ts dashboard/tsconfig.json; ls examples/*.yaml | LC_ALL=C sort; } \
  | xargs sha256sum | sha256sum | cut -c1-16)
if [ "${1:-}" != "--force" ] && [ -f "$out/.build-key" ] && [ "$(cat "$out/.build-key")" = "$key" ]; then
  exit 0
fi
built="$cache/ui-$key"
if [ "${1:-}" = "--force" ] || [ ! -f "$built/index.html" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "build_ui: installing nodejs and npm (apt-get)" >&2
      { apt-get install -y -q nodejs npm || { apt-get update -q && apt-get install -y -q nodejs npm; }; } \
        >"$cache/apt-node.log" 2>&1 || { cat "$cache/apt-node.log" >&2; exit 1; }
    else
      echo "build_ui: Node.js and npm are needed to build the dashboard (dashboard/)" >&2
      exit 1
    fi
  fi
  echo "build_ui: building the dashboard (npm ci, vite build)" >&2
  mkdir -p "$cache"
  (cd "$here/dashboard" && npm ci --no-audit --no-fund --loglevel=error >&2 && npm run -s build >&2)
  rm -rf "$built.tmp" && cp -r "$out" "$built.tmp" && rm -rf "$built" && mv "$built.tmp" "$built"
else
  rm -rf "$out" && cp -r "$built" "$out"
fi
echo "$key" > "$out/.build-key"
