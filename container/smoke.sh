#!/usr/bin/env bash
# Builds the image (container/build.sh) and checks it without starting a container (run.sh --chroot: the image's
# root file system, environment and working folder): `dynamo --help`, nats-server and etcd present, the guides'
# examples/llm in place, a one-process `dynamo run` answering a chat completion with 200, then the guides' head node
# (nats-server, etcd and `dynamo serve graphs.agg_router:Frontend -f ./configs/multinode-405b.yaml`) answering theirs.
#
#   ./container/smoke.sh [--no-build] [--tag TAG]
#
# Ends with one line, "container smoke: passed (...)" or "container smoke: FAILED: why", and exit code 0 or 1.
# Needs root, podman and the .NET SDK (and debootstrap when no base image is cached); .ci/run runs it after the tests.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tag=dynamo:smoke
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0; shift ;;
    --tag) tag="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "container/smoke.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
started=$SECONDS
fail() { echo "container smoke: FAILED: $* ($(( SECONDS - started )) s)"; exit 1; }
for tool in podman dotnet curl; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed"
done
[ "$(id -u)" -eq 0 ] || fail "needs root (podman mount, chroot)"

if [ "$build" = 1 ]; then
  "$root/container/build.sh" --tag "$tag" || fail "container/build.sh"
fi
build_s=$(( SECONDS - started ))
in_image=("$root/container/run.sh" --chroot --image "$tag" --)

help="$("${in_image[@]}" dynamo --help 2>&1)" || fail "dynamo --help in the image: $help"
grep -q 'serve' <<<"$help" || fail "dynamo --help does not list serve: $help"
"${in_image[@]}" sh -c 'nats-server --version && etcd --version | head -n 1 && etcdctl version | head -n 1' \
  || fail "nats-server or etcd missing in the image"
"${in_image[@]}" sh -c 'cd examples/llm && ls graphs/agg_router.yaml components/prefill_worker.yaml configs/multinode-405b.yaml' >/dev/null \
  || fail "examples/llm (graphs, components, configs) missing in the image"

# The guides' first request against a one-process deployment, everything inside the image's file system.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo 18123)
answer="$("${in_image[@]}" bash -c '
  dynamo run --http-port "$0" >/tmp/run.log 2>&1 &
  pid=$!
  for _ in $(seq 1 1200); do
    if grep -q "run: ready" /tmp/run.log; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then echo "dynamo run exited:"; cat /tmp/run.log; exit 1; fi
    sleep 0.1
  done
  code=$(curl -s -o /tmp/answer.json -w "%{http_code}" "localhost:$0/v1/chat/completions" -H "Content-Type: application/json" \
    -d "{\"model\": \"dynamo-tiny\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}], \"max_tokens\": 8}")
  kill "$pid"; wait "$pid" 2>/dev/null
  echo "HTTP $code $(cat /tmp/answer.json)"
  [ "$code" = 200 ] || { cat /tmp/run.log; exit 1; }
' "$port" 2>&1)" || fail "dynamo run + chat completion in the image: $answer"
echo "$answer" | head -c 300; echo

# The guides' head node inside the image: nats-server and etcd from its packages, then, in examples/llm,
# `dynamo serve graphs.agg_router:Frontend -f ./configs/multinode-405b.yaml` (a copy on free loopback ports instead of
# 8000 on every interface: this host is shared), and their chat request, answered 200.
read -r nats_port etcd_port peer_port http_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(4)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])' 2>/dev/null || echo 14222 12379 12380 18124)
answer="$("${in_image[@]}" bash -c '
  nats_port=$0 etcd_port=$1 peer_port=$2 http_port=$3
  nats-server -js -sd /tmp/nats -a 127.0.0.1 -p "$nats_port" >/tmp/nats.log 2>&1 &
  etcd --data-dir /tmp/etcd --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "default=http://127.0.0.1:$peer_port" --log-level warn >/tmp/etcd.log 2>&1 &
  export NATS_SERVER="nats://127.0.0.1:$nats_port" ETCD_ENDPOINTS="http://127.0.0.1:$etcd_port"
  cd examples/llm
  sed "s/^  port: 8000/  port: $http_port/; s/^  host: 0.0.0.0/  host: 127.0.0.1/" configs/multinode-405b.yaml >/tmp/multinode-405b.yaml
  dynamo serve graphs.agg_router:Frontend -f /tmp/multinode-405b.yaml --wait-for-infra 30 >/tmp/serve.log 2>&1 &
  serve=$!
  body="{\"model\": \"nvidia/Llama-3.1-405B-Instruct-FP8\", \"messages\": [{\"role\": \"user\", \"content\": \"write a very long and boring bedtime story about an unicorn that rhymes\"}], \"max_tokens\": 8}"
  code=000
  for _ in $(seq 1 240); do
    if ! kill -0 "$serve" 2>/dev/null; then break; fi
    code=$(curl -s -o /tmp/answer.json -w "%{http_code}" "localhost:$http_port/v1/chat/completions" -H "Content-Type: application/json" -d "$body")
    if [ "$code" = 200 ]; then break; fi
    sleep 0.5
  done
  kill "$serve" 2>/dev/null; wait "$serve" 2>/dev/null
  kill %1 %2 2>/dev/null; wait 2>/dev/null
  echo "HTTP $code $(cat /tmp/answer.json 2>/dev/null)"
  [ "$code" = 200 ] || { tail -n 30 /tmp/serve.log; exit 1; }
' "$nats_port" "$etcd_port" "$peer_port" "$http_port" 2>&1)" || fail "dynamo serve graphs.agg_router:Frontend -f ./configs/multinode-405b.yaml in the image: $answer"
echo "$answer" | head -c 300; echo
echo "container smoke: passed (build ${build_s} s, checks $(( SECONDS - started - build_s )) s)"
