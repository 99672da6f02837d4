# Sourced by build.sh and run.sh: sets `engine` to CONTAINER_ENGINE, else podman, else docker; exits naming what to
# install when there is neither. $1: the calling script's name, for the message.
engine="${CONTAINER_ENGINE:-}"
if [ -z "$engine" ]; then
  if command -v podman >/dev/null 2>&1; then engine=podman
  elif command -v docker >/dev/null 2>&1; then engine=docker
  else
    echo "$1: neither podman nor docker is installed (Debian: apt-get install podman)" >&2
    exit 1
  fi
fi
