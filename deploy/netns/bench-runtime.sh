#!/usr/bin/env bash
# The request-plane benchmark across hosts, on one machine: three network namespaces on a bridge
# (head node h1 with NATS and etcd, a server on h2, the client on h3), as the guides' topology.
# Needs root, iproute2, nats-server and etcd. Everything is removed at the end, even on failure.
#   sudo deploy/netns/bench-runtime.sh [extra bench runtime flags, e.g. --json]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$root/dynamo" --help >/dev/null   # builds the CLI once, outside the namespaces
dll="$root/.dynamo/bin/dynamo.dll"
p="dynb$$"; tmp="$(mktemp -d)"; pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for n in "${p}h1" "${p}h2" "${p}h3" "${p}sw"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
ip netns add "${p}sw"; ip -n "${p}sw" link set lo up
ip -n "${p}sw" link add br0 type bridge; ip -n "${p}sw" link set br0 up
for i in 1 2 3; do
  ip netns add "${p}h$i"; ip -n "${p}h$i" link set lo up
  ip -n "${p}sw" link add "veth$i" type veth peer name eth0 netns "${p}h$i"
  ip -n "${p}sw" link set "veth$i" master br0; ip -n "${p}sw" link set "veth$i" up
  ip -n "${p}h$i" addr add "10.231.0.1$i/24" dev eth0; ip -n "${p}h$i" link set eth0 up
done
head=10.231.0.11
ip netns exec "${p}h1" nats-server -a "$head" -p 4222 > "$tmp/nats.log" 2>&1 & pids+=($!)
ip netns exec "${p}h1" etcd --name h1 --data-dir "$tmp/etcd" --listen-client-urls "http://$head:2379" --advertise-client-urls "http://$head:2379" \
  --listen-peer-urls "http://$head:2380" --initial-advertise-peer-urls "http://$head:2380" --initial-cluster "h1=http://$head:2380" > "$tmp/etcd.log" 2>&1 & pids+=($!)
export NATS_SERVER="nats://$head:4222" ETCD_ENDPOINTS="$head:2379"
for _ in $(seq 1 100); do
  ip netns exec "${p}h1" bash -c "exec 3<>/dev/tcp/$head/2379 && exec 4<>/dev/tcp/$head/4222" 2>/dev/null && break
  sleep 0.1
done
ip netns exec "${p}h2" dotnet "$dll" bench runtime --role server > "$tmp/server.log" 2>&1 & pids+=($!)
for _ in $(seq 1 200); do grep -q "serving" "$tmp/server.log" && break; sleep 0.1; done
ip netns exec "${p}h3" dotnet "$dll" bench runtime --role client --transport nats --label "nats across namespaces" "$@"
