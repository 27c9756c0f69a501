#!/usr/bin/env bash
# Builds the local control plane's binaries from the Go modules pinned in controlplane/:
#   controlplane/kube:  etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl
#   controlplane/kueue: kueue (the manager), plus its config/ (CRDs, RBAC, webhooks)
# into a cache outside the clone keyed on the pins (like the virtualenv), once. Prints the bin
# folder on the last line. --print: print it without building (exit 1 when not built).
# Needs Go (the machine's; see README) and the Go module proxy.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${HURRICANE_CACHE:-$HOME/.cache/hurricane-nas}"
key=$(cat "$here"/controlplane/*/go.mod "$here"/controlplane/*/go.sum "$here"/controlplane/*/tools.go \
        "$here/scripts/build_controlplane.sh" | sha256sum | cut -c1-16)
out="$cache/controlplane-$key"
if [ -f "$out/.complete" ]; then echo "$out/bin"; exit 0; fi
if [ "${1:-}" = "--print" ]; then echo "$out/bin"; exit 1; fi
command -v go >/dev/null || { echo "build_controlplane: Go is missing (see README)" >&2; exit 1; }
mkdir -p "$out/bin"
t0=$(date +%s)
kube_version=$(sed -n 's/^\s*k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' "$here/controlplane/kube/go.mod")
major=${kube_version#v}; minor=${major#*.}; major=${major%%.*}; minor=${minor%%.*}
ld="-s -w -X k8s.io/component-base/version.gitVersion=$kube_version"
ld="$ld -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor"
ld="$ld -X k8s.io/component-base/version.gitTreeState=clean"
ld="$ld -X k8s.io/client-go/pkg/version.gitVersion=$kube_version"
echo "build_controlplane: building Kubernetes $kube_version and etcd into $out (first time: 10-30 min on 2 cores)" >&2
(cd "$here/controlplane/kube" && GOFLAGS=-mod=mod go build -trimpath -ldflags "$ld" -o "$out/bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
(cd "$here/controlplane/kube" && GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$out/bin/etcd" \
    go.etcd.io/etcd/server/v3)
kueue_version=$(sed -n 's/^require sigs.k8s.io\/kueue \(v[0-9.]*\)$/\1/p' "$here/controlplane/kueue/go.mod")
echo "build_controlplane: building Kueue $kueue_version" >&2
(cd "$here/controlplane/kueue" && GOFLAGS=-mod=mod go build -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$kueue_version" \
    -o "$out/bin/kueue" sigs.k8s.io/kueue/cmd/kueue)
src=$(cd "$here/controlplane/kueue" && GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' sigs.k8s.io/kueue)
rm -rf "$out/kueue-config" && cp -r "$src/config" "$out/kueue-config" && chmod -R u+w "$out/kueue-config"
printf '{"kubernetes": "%s", "kueue": "%s", "build_s": %d}\n' "$kube_version" "$kueue_version" \
    $(( $(date +%s) - t0 )) > "$out/versions.json"
touch "$out/.complete"
echo "$out/bin"
