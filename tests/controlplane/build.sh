#!/usr/bin/env bash
# Builds etcd, kube-apiserver and kube-controller-manager from this Go module into a cache
# folder laid out as setup-envtest lays it out, and prints that folder (for KUBEBUILDER_ASSETS).
#
# The folder is keyed by the Kubernetes release and a digest of go.mod, go.sum and the three
# mains, so a cached build is reused until any of them changes. A cold build takes under five
# minutes on two cores; a cached one, a second.
#
#   export KUBEBUILDER_ASSETS="$(tests/controlplane/build.sh)"
#
# ZSP_ENVTEST_CACHE overrides the cache root (default: $XDG_CACHE_HOME or ~/.cache, then
# zsp-operator/envtest). Progress goes to stderr; only the folder goes to stdout.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

if ! command -v go >/dev/null 2>&1; then
  echo "build.sh: no 'go' on PATH: the real control plane is built with Go 1.26 or newer" >&2
  exit 1
fi

release="$(sed -n 's/^\tk8s.io\/kubernetes v\(.*\)$/\1/p' go.mod)"
if [ -z "$release" ]; then
  echo "build.sh: go.mod does not require k8s.io/kubernetes" >&2
  exit 1
fi
goos="$(go env GOOS)"
goarch="$(go env GOARCH)"
digest="$(cat go.mod go.sum ./*/main.go build.sh | sha256sum | cut -c1-16)"
root="${ZSP_ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zsp-operator/envtest}"
folder="$root/k8s/$release-$goos-$goarch"
stamp="$folder/.inputs"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ] \
  && [ -x "$folder/etcd" ] && [ -x "$folder/kube-apiserver" ] && [ -x "$folder/kube-controller-manager" ]; then
  echo "build.sh: reusing the control plane v$release in $folder" >&2
  echo "$folder"
  exit 0
fi

echo "build.sh: building etcd, kube-apiserver and kube-controller-manager v$release into $folder" >&2
started=$(date +%s)
staging="$(mktemp -d "$root.XXXXXX" 2>/dev/null || { mkdir -p "$root" && mktemp -d "$root.XXXXXX"; })"
trap 'rm -rf "$staging"' EXIT
# providerless: no in-tree cloud providers; -s -w: no symbols; the version stamp makes the
# server report the release it is (it would say v0.0.0-master otherwise).
ldflags="-s -w"
ldflags+=" -X k8s.io/component-base/version.gitVersion=v$release"
ldflags+=" -X k8s.io/component-base/version.gitMajor=${release%%.*}"
minor="${release#*.}"
ldflags+=" -X k8s.io/component-base/version.gitMinor=${minor%%.*}"
ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
ldflags+=" -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
CGO_ENABLED=0 go build -mod=readonly -tags providerless -trimpath -ldflags "$ldflags" \
  -o "$staging/" ./etcd ./kube-apiserver ./kube-controller-manager
chmod 0755 "$staging"
echo "$digest" >"$staging/.inputs"
mkdir -p "$(dirname "$folder")"
rm -rf "$folder"
mv "$staging" "$folder"
trap - EXIT
echo "build.sh: built in $(($(date +%s) - started)) s" >&2
echo "$folder"
