#!/usr/bin/env bash
# Builds JobSet's and Kubeflow Trainer's controller managers from the Go modules pinned in
# controlplane/training/ (the versions Kueue v0.17.0 requires: JobSet v0.11.1, Trainer v2.2.0)
# into a cache outside the clone keyed on those pins, once, with each module's manifests
# (JobSet's config/, Trainer's manifests/: CRDs, RBAC, webhooks, runtimes). Prints the folder
# on the last line. --print: print it without building (exit 1 when not built). Kept apart
# from build_controlplane.sh so that its cache (the slow build) keeps its key.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${HURRICANE_CACHE:-$HOME/.cache/hurricane-nas}"
key=$(cat "$here"/controlplane/training/*/go.mod "$here"/controlplane/training/*/go.sum \
        "$here"/controlplane/training/*/tools.go "$here/scripts/build_training_operators.sh" \
        | sha256sum | cut -c1-16)
out="$cache/training-operators-$key"
if [ -f "$out/.complete" ]; then echo "$out"; exit 0; fi
if [ "${1:-}" = "--print" ]; then echo "$out"; exit 1; fi
command -v go >/dev/null || { echo "build_training_operators: Go is missing (see README)" >&2; exit 1; }
mkdir -p "$out/bin"
t0=$(date +%s)
d="$here/controlplane/training"
jobset=$(sed -n 's/^require sigs.k8s.io\/jobset \(v[0-9.]*\)$/\1/p' "$d/jobset/go.mod")
trainer=$(sed -n 's/^require github.com\/kubeflow\/trainer\/v2 \(v[0-9.]*\)$/\1/p' "$d/trainer/go.mod")
echo "build_training_operators: JobSet $jobset and Kubeflow Trainer $trainer into $out (first time: 10-20 min on 2 cores)" >&2
(cd "$d/jobset" && GOFLAGS=-mod=mod go build -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/jobset/pkg/version.GitVersion=$jobset" \
    -o "$out/bin/jobset-manager" sigs.k8s.io/jobset)
(cd "$d/trainer" && GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" \
    -o "$out/bin/trainer-controller-manager" github.com/kubeflow/trainer/v2/cmd/trainer-controller-manager)
src=$(cd "$d/jobset" && GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' sigs.k8s.io/jobset)
rm -rf "$out/jobset-config" && cp -r "$src/config" "$out/jobset-config"
src=$(cd "$d/trainer" && GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' github.com/kubeflow/trainer/v2)
rm -rf "$out/trainer-manifests" && cp -r "$src/manifests" "$out/trainer-manifests"
chmod -R u+w "$out/jobset-config" "$out/trainer-manifests"
printf '{"jobset": "%s", "trainer": "%s", "build_s": %d}\n' "$jobset" "$trainer" \
    $(( $(date +%s) - t0 )) > "$out/versions.json"
touch "$out/.complete"
echo "$out"
