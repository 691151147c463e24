#!/usr/bin/env bash
# The weft benchmark suite on a machine that has no compiler and no
# packages: the run.sh of the bundle that `bench/run --bundle` makes (every
# program in bin/ is static; wrk comes with its libraries and loader).
#
#   ./run.sh [WORKERS...]    default: 1 4 8 16, those the machine has CPUs for
#   RUNS=3 SECS=5 ./run.sh   runs of each figure; seconds of each network load
#
# For each worker count N: the scheduler benchmarks on weft and on Tokio
# with N workers (--workers N), then the network servers (weft's examples,
# the plain epoll servers, Tokio's) with N workers, pinned to CPUs 0..N-1
# while the load generators (bench/echo_load, wrk) run on the other CPUs;
# a network load needs at least one CPU left over, so it is skipped when
# N is every CPU. Every RESULT line goes to results.txt with sweep=N
# added; machine.txt says what ran. Copy both back and run
# `bench/run --charts results.txt DIR` where weft's sources are.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$here/bin
runs=${RUNS:-3}
secs=${SECS:-5}
cpus=$(nproc)
out=$here/results.txt
: >"$out"

counts=("$@")
if [ ${#counts[@]} -eq 0 ]; then
	for n in 1 4 8 16; do
		[ "$n" -le "$cpus" ] && counts+=("$n")
	done
fi

{
	echo "machine: $cpus CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r)"
	echo "bundle: $(cat "$here/VERSION" 2>/dev/null)"
	echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
	echo "workers: ${counts[*]}; runs: $runs; network seconds: $secs"
} | tee "$here/machine.txt"

# pin CPUS CMD...: CMD on those CPUs if taskset is there.
pin() {
	local c=$1
	shift
	if command -v taskset >/dev/null; then
		taskset -c "$c" "$@"
	else
		"$@"
	fi
}

record() { # N: RESULT lines on stdin, with sweep=N, into results.txt
	grep '^RESULT' | sed "s/\$/ sweep=$1/" | tee -a "$out"
}

srv_pid="" srv_port=""
server_start() { # CPUS CMD...
	local c=$1 log
	shift
	log=$(mktemp)
	pin "$c" "$@" >"$log" 2>&1 &
	srv_pid=$!
	srv_port=""
	for _ in $(seq 100); do
		srv_port=$(awk '/^listening on port/ { print $4; exit }' "$log")
		[ -n "$srv_port" ] && break
		sleep 0.05
	done
	rm -f "$log"
	[ -n "$srv_port" ]
}
server_stop() {
	kill -INT "$srv_pid" 2>/dev/null
	for _ in $(seq 40); do
		kill -0 "$srv_pid" 2>/dev/null || break
		sleep 0.05
	done
	kill -KILL "$srv_pid" 2>/dev/null
	wait "$srv_pid" 2>/dev/null
}

sched=(spawn_many yield_many chained_spawn context_switch park_many ping_pong
	sleep_many wake_latency)
tokio_sched=(spawn_many yield_many chained_spawn context_switch park_many
	ping_pong)

for n in "${counts[@]}"; do
	echo "=== $n worker(s) ==="
	for ((i = 0; i < runs; i++)); do
		for b in "${sched[@]}"; do
			"$bin/$b" --workers "$n" 2>&1 | record "$n"
		done
		for b in "${tokio_sched[@]}"; do
			"$bin/tokio-bench" "$b" --workers "$n" 2>&1 | record "$n"
		done
	done
	if [ "$n" -ge "$cpus" ]; then
		echo "network: skipped at $n workers (no CPU left for the load)"
		continue
	fi
	srv_cpus="0-$((n - 1))"
	load_cpus="$n-$((cpus - 1))"
	load_threads=$((cpus - n))
	[ $load_threads -gt 8 ] && load_threads=8
	for ((i = 0; i < runs; i++)); do
		for s in "echo:$bin/echo_server -p 0 -w $n" \
			"echo_epoll:$bin/epoll_echo -p 0 -t $n" \
			"echo_tokio:$bin/tokio-bench echo_server --workers $n --port 0"; do
			name=${s%%:*}
			# shellcheck disable=SC2086
			server_start "$srv_cpus" ${s#*:} || {
				echo "$name: the server did not start"
				server_stop
				continue
			}
			pin "$load_cpus" "$bin/echo_load" -p "$srv_port" -c 256 -k 1 \
				-s 64 -d "$secs" -w "$load_threads" -n "$name" 2>&1 |
				record "$n"
			server_stop
		done
		for s in "http:$bin/http_server -p 0 -w $n" \
			"http_epoll:$bin/epoll_http -p 0 -t $n" \
			"http_tokio:$bin/tokio-bench http_server --workers $n --port 0"; do
			name=${s%%:*}
			# shellcheck disable=SC2086
			server_start "$srv_cpus" ${s#*:} || {
				echo "$name: the server did not start"
				server_stop
				continue
			}
			w=$(pin "$load_cpus" "$bin/wrk" -t "$load_threads" -c 256 \
				-d "${secs}s" --latency "http://127.0.0.1:$srv_port/" 2>&1)
			server_stop
			rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$w")
			p99=$(awk '$1 == "99%" { print $2 }' <<<"$w")
			if [ -z "$rps" ] || grep -q 'Socket errors\|Non-2xx' <<<"$w"; then
				echo "$name: the load failed:"
				printf '%s\n' "$w" | tail -5
				continue
			fi
			echo "RESULT weft $name $rps req/s conns=256 wrk_threads=$load_threads p99=$p99" |
				record "$n"
		done
	done
done
echo "results: $out ($(wc -l <"$out") lines)"
