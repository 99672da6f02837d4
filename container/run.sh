#!/usr/bin/env bash
# Starts the image that container/build.sh made, with the host's network (so that the frontend's port, NATS and etcd
# are the host's), NATS_SERVER, ETCD_ENDPOINTS and DYN_SYSTEM_PORT passed through, in /workspace:
#
#   ./container/run.sh -it                       a shell; then: cd examples/llm && dynamo serve graphs.agg_router:Frontend -f ./configs/multinode-405b.yaml
#   ./container/run.sh [-it] [--image TAG] [ENGINE OPTIONS] [-- COMMAND ARGS...]
#   ./container/run.sh --chroot [-it] [--image TAG] [-- COMMAND ARGS...]
#
#   --image TAG   the image (default dynamo:latest)
#   --chroot      no container runtime: runs COMMAND (default bash) with chroot in a writable podman mount of the
#                 image, with the image's environment and working folder, the host's /proc, /sys and /dev bound in.
#                 For hosts that can build images but not start containers (no cgroups, no setrlimit); needs root.
#   other options before `--` (e.g. -v /models:/models) go to `podman run` / `docker run` as they are.
# CONTAINER_ENGINE picks podman or docker (default: podman when installed).
set -euo pipefail
image=dynamo:latest
chroot_mode=0
interactive=()
engine_args=()
command_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --image) image="$2"; shift 2 ;;
    --chroot) chroot_mode=1; shift ;;
    -it|-ti) interactive=(-it); shift ;;
    -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; command_args=("$@"); break ;;
    *) engine_args+=("$1"); shift ;;
  esac
done
# shellcheck source=container/engine.sh
. "$(dirname "${BASH_SOURCE[0]}")/engine.sh" container/run.sh
if ! "$engine" image inspect "$image" >/dev/null 2>&1; then
  echo "container/run.sh: no image $image: build it with ./container/build.sh" >&2
  exit 1
fi
pass=(NATS_SERVER ETCD_ENDPOINTS DYN_SYSTEM_PORT DYN_SYSTEM_HOST DYNAMO_API_KEY)

if [ "$chroot_mode" = 0 ]; then
  env_args=()
  for name in "${pass[@]}"; do
    if [ -n "${!name:-}" ]; then env_args+=(-e "$name"); fi
  done
  exec "$engine" run --rm "${interactive[@]}" --network host --ipc host "${env_args[@]}" "${engine_args[@]}" "$image" "${command_args[@]}"
fi

if [ "$engine" != podman ]; then
  echo "container/run.sh: --chroot needs podman (CONTAINER_ENGINE=$engine)" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "container/run.sh: --chroot needs root" >&2
  exit 1
fi
if [ ${#engine_args[@]} -gt 0 ]; then
  echo "container/run.sh: --chroot takes no engine options (${engine_args[*]})" >&2
  exit 2
fi
if [ ${#command_args[@]} -eq 0 ]; then command_args=(/bin/bash); fi
container="$(podman create "$image")"
mounted=()
cleanup() {
  local i
  for (( i=${#mounted[@]}-1; i>=0; i-- )); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
  podman umount "$container" >/dev/null 2>&1 || true
  podman rm -f "$container" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 143' TERM INT
rootfs="$(podman mount "$container")"
for dir in proc sys dev dev/pts; do
  mkdir -p "$rootfs/$dir"
  mount --bind "/$dir" "$rootfs/$dir"
  mounted+=("$rootfs/$dir")
done
cp /etc/resolv.conf "$rootfs/etc/resolv.conf" 2>/dev/null || true
# The image's own environment and working folder, as `podman run` would set them.
env_list=(HOME=/root TERM="${TERM:-xterm}")
while IFS= read -r line; do
  if [ -n "$line" ]; then env_list+=("$line"); fi
done < <(podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$image")
for name in "${pass[@]}"; do
  if [ -n "${!name:-}" ]; then env_list+=("$name=${!name}"); fi
done
workdir="$(podman image inspect --format '{{.Config.WorkingDir}}' "$image")"
chroot "$rootfs" /usr/bin/env -i "${env_list[@]}" /bin/sh -c 'cd "$0" && exec "$@"' "${workdir:-/}" "${command_args[@]}"
