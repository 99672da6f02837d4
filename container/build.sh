#!/usr/bin/env bash
# Builds the Dynamo.NET image (container/Containerfile): `dynamo` as a self-contained linux-x64 publish, nats-server
# and etcd from Debian's packages, graphs/, components/ and configs/ at /workspace/examples/llm.
#
#   ./container/build.sh [--base IMAGE] [--tag TAG]
#
#   --base IMAGE   a Debian bookworm image to start from (or DYNAMO_BASE_IMAGE). Without it: localhost/dynamo-base:bookworm,
#                  made here when missing from a debootstrap of bookworm (minbase, Debian's mirror; needs root and
#                  debootstrap), whose root file system is kept as a tar in DYNAMO_ROOTFS_CACHE
#                  (default ~/.cache/dynamo/debootstrap-bookworm.tar) so that the next machine's build only imports it.
#   --tag TAG      the image's name (default dynamo:latest).
#
# CONTAINER_ENGINE picks podman or docker (default: podman when installed). podman builds with --isolation chroot
# (BUILDAH_ISOLATION overrides), which works where a container cannot be started (no cgroups, no setrlimit).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
base="${DYNAMO_BASE_IMAGE:-}"
tag="dynamo:latest"
while [ $# -gt 0 ]; do
  case "$1" in
    --base) base="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "container/build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
# shellcheck source=container/engine.sh
. "$(dirname "${BASH_SOURCE[0]}")/engine.sh" container/build.sh
if ! command -v dotnet >/dev/null 2>&1; then
  echo "container/build.sh: the .NET 10 SDK is required to publish dynamo (dotnet not found)" >&2
  exit 1
fi
started=$SECONDS
step() { echo "container/build.sh: $* ($(( SECONDS - started )) s)" >&2; }

if [ -z "$base" ]; then
  base=localhost/dynamo-base:bookworm
  if ! "$engine" image exists "$base" 2>/dev/null && ! "$engine" image inspect "$base" >/dev/null 2>&1; then
    cache="${DYNAMO_ROOTFS_CACHE:-${HOME:-/root}/.cache/dynamo/debootstrap-bookworm.tar}"
    if [ ! -f "$cache" ]; then
      if ! command -v debootstrap >/dev/null 2>&1; then
        echo "container/build.sh: no base image: give --base IMAGE (a Debian bookworm image), or install debootstrap (apt-get install debootstrap) to make one" >&2
        exit 1
      fi
      if [ "$(id -u)" -ne 0 ]; then
        echo "container/build.sh: debootstrap needs root; give --base IMAGE instead" >&2
        exit 1
      fi
      step "debootstrap bookworm (minbase) for the base image; the root file system is kept in $cache"
      rootfs="$(mktemp -d /var/tmp/dynamo-debootstrap.XXXXXX)"
      trap 'rm -rf "$rootfs"' EXIT
      debootstrap --variant=minbase bookworm "$rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$rootfs.log" 2>&1 \
        || { tail -n 20 "$rootfs.log" >&2; echo "container/build.sh: debootstrap failed (log: $rootfs.log)" >&2; exit 1; }
      rm -f "$rootfs.log"
      rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
      mkdir -p "$(dirname "$cache")"
      tar -C "$rootfs" --numeric-owner -cf "$cache.tmp" . && mv "$cache.tmp" "$cache"
      rm -rf "$rootfs"
      trap - EXIT
    fi
    step "importing $cache as $base"
    "$engine" import --change 'CMD ["/bin/bash"]' "$cache" "$base" >/dev/null
  fi
fi

context="$root/.dynamo/container/context"
rm -rf "$context"
mkdir -p "$context/examples/llm"
step "publishing dynamo (Release, linux-x64, self-contained, ReadyToRun)"
log="$root/.dynamo/container/publish.log"
# ReadyToRun: our assemblies and their packages precompiled, so that a process serves its first requests with optimised
# code instead of the JIT's first tier (the KV router's decisions in its first seconds: docs/simulation.md).
if ! dotnet publish "$root/src/Dynamo.Cli/Dynamo.Cli.csproj" -c Release -r linux-x64 --self-contained -p:PublishReadyToRun=true \
    -o "$context/dynamo" -nologo -v minimal -clp:NoSummary >"$log" 2>&1; then
  grep -E 'error|warning' "$log" >&2 || cat "$log" >&2
  echo "container/build.sh: dotnet publish failed (log: $log)" >&2
  exit 1
fi
rm -f "$context"/dynamo/*.pdb
cp -r "$root/graphs" "$root/components" "$root/configs" "$context/examples/llm/"

step "building $tag from $base with $engine"
previous="$("$engine" image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
build=("$engine" build)
if [ "$engine" = podman ]; then build+=(--isolation "${BUILDAH_ISOLATION:-chroot}"); fi
"${build[@]}" --build-arg "BASE_IMAGE=$base" -t "$tag" -f "$root/container/Containerfile" "$context"
# The image this tag named before (now untagged) goes, so that rebuilds do not pile up.
if [ -n "$previous" ] && [ "$previous" != "$("$engine" image inspect --format '{{.Id}}' "$tag")" ]; then
  "$engine" rmi "$previous" >/dev/null 2>&1 || true
fi
step "built $tag; start it with ./container/run.sh -it"
