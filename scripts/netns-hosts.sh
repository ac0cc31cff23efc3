#!/usr/bin/env bash
# Test hosts on one machine: network namespaces joined by a bridge, for the multi-host tests.
#   scripts/netns-hosts.sh up NAME N        # hosts NAME-1 … NAME-N at 10.77.0.1 … 10.77.0.N/24
#   scripts/netns-hosts.sh cut NAME K       # host K's cable out (its veth on the bridge down)
#   scripts/netns-hosts.sh mend NAME K      # and back in
#   scripts/netns-hosts.sh down NAME        # remove everything (safe to run twice)
#   scripts/netns-hosts.sh agent NAME HOST CMD…   # Open MPI launch agent (plm_rsh_agent): runs CMD
#                                           # "on" HOST (an address above) like ssh would
# Everything lives in namespaces named NAME-*: the bridge too (NAME-br), so the machine's own
# network is never touched. Needs root (or CAP_NET_ADMIN) and iproute2.
set -euo pipefail
cmd="${1:-}"; name="${2:-}"
[ -n "$cmd" ] && [ -n "$name" ] || { echo "usage: $0 up|cut|mend|down|agent NAME …" >&2; exit 2; }

case "$cmd" in
  up)
    n="${3:?number of hosts}"
    ip netns add "$name-br"
    ip -n "$name-br" link set lo up
    ip -n "$name-br" link add br0 type bridge
    ip -n "$name-br" link set br0 up
    for k in $(seq 1 "$n"); do
      ns="$name-$k"
      ip netns add "$ns"
      ip -n "$ns" link set lo up
      # veth pair: eth0 in the host, v$k on the bridge.
      ip -n "$ns" link add eth0 type veth peer name "v$k" netns "$name-br"
      ip -n "$ns" addr add "10.77.0.$k/24" dev eth0
      ip -n "$ns" link set eth0 up
      ip -n "$name-br" link set "v$k" master br0
      ip -n "$name-br" link set "v$k" up
    done
    ;;
  cut) ip -n "$name-br" link set "v${3:?host}" down ;;
  mend) ip -n "$name-br" link set "v${3:?host}" up ;;
  down)
    for ns in $(ip netns list | awk '{print $1}' | grep -E "^$name-(br|[0-9]+)$" || true); do
      # Processes still inside a host namespace would keep it (and its addresses) alive.
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
      ip netns del "$ns" 2>/dev/null || true
    done
    ;;
  agent)
    # Open MPI calls its launch agent like ssh: AGENT [options] HOST COMMAND… (a shell command line).
    shift 2
    while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do shift; done
    host="${1:?host}"; shift
    k="${host##*.}"
    exec ip netns exec "$name-$k" /bin/sh -c "$*"
    ;;
  *) echo "$0: unknown command $cmd" >&2; exit 2 ;;
esac
