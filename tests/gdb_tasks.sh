#!/usr/bin/env bash
# weft's gdb extension (tools/gdb/weft-gdb.py), as a user meets it: loaded
# by gdb from the library's .debug_gdb_scripts section, on a live process
# and on a core file. tests/gdb_tasks.c parks four named tasks in known
# places (a sleep, a channel receive, an await, a lock) and stops in
# gt_ready(), called by its main task. Checked: `info weft-tasks` lists
# every name, and `weft-bt NAME` shows a frame of each task's own function
# (gt_sleeper ...), down to weft__ctx_entry; the running main task's
# backtrace is its worker thread's, through gt_ready and gt_main; each
# parked task's line says what it waits on (sleep, chan recv, await of
# gt-sleeper, lock) and where it was spawned.
#
# The core file: where the kernel writes cores to a file (core_pattern not
# a pipe), the program aborts in gt_ready and the kernel dumps it. Where a
# pipe takes them (systemd-coredump, apport), gdb's gcore writes it,
# under tests/nouring -o: gcore leaves out a mapping it cannot read whole,
# and a task stack with a MADV_GUARD_INSTALL guard (Linux 6.13+) is one;
# the pre-6.13 guards (their own PROT_NONE mappings) are not.
#
# Usage: tests/gdb_tasks.sh BUILD_DIR (a build whose libweft.a and
# tests/nouring are there); WEFT_GDB_TASKS_GCORE=1 takes the gcore way
# whatever core_pattern says. Prints "gdb-tasks: ok" last on success; exits
# 1 on a failed check, 77 when the kernel refuses ptrace.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
dir=${1:?usage: tests/gdb_tasks.sh BUILD_DIR}
command -v gdb >/dev/null || { echo "gdb-tasks: FAILED: no gdb"; exit 1; }
[ -f "$dir/libweft.a" ] || { echo "gdb-tasks: FAILED: no $dir/libweft.a"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prog=$tmp/gdb_tasks
# shellcheck disable=SC2046
cc -g -O1 -Iinclude -o "$prog" tests/gdb_tasks.c "$dir/libweft.a" \
	$(pkg-config --libs liburing) -lpthread -lm || {
	echo "gdb-tasks: FAILED: cannot build tests/gdb_tasks.c"
	exit 1
}

fail=0
# The commands, after the program stopped (live) or the core was read.
cmds=(-ex 'info weft-tasks' -ex 'weft-bt gt-sleeper' -ex 'weft-bt gt-receiver'
	-ex 'weft-bt gt-awaiter' -ex 'weft-bt gt-locker' -ex 'weft-bt main')
gdbb() {
	timeout 300 gdb -nx -batch -iex 'set auto-load safe-path /' \
		-iex 'set pagination off' "$@" 2>&1
}

# check WHAT OUTPUT: the names listed, and each task's frames.
check() {
	local what=$1 out=$2 name fn bt
	if grep -qE "ptrace: Operation not permitted|Could not attach" <<<"$out"; then
		echo "gdb-tasks: skipped (ptrace refused here)"
		exit 77
	fi
	for name in gt-sleeper gt-receiver gt-awaiter gt-locker main; do
		if ! grep -qE "^  0x[0-9a-f]+ +'$name' " <<<"$out"; then
			echo "gdb-tasks: FAILED ($what): info weft-tasks does not list '$name'"
			fail=1
		fi
	done
	# What each waits on (the registry's wait reasons) and where it was
	# spawned.
	for want in "gt-sleeper' +parked \[sleep" "gt-receiver' +parked \[chan recv 0x" \
		"gt-awaiter' +parked \[await task 0x[0-9a-f]+ 'gt-sleeper'\]" \
		"gt-locker' +parked \[lock 0x"; do
		if ! grep -qE "'$want.*spawned at tests/gdb_tasks\.c:[0-9]+" <<<"$out"; then
			echo "gdb-tasks: FAILED ($what): info weft-tasks has no line matching '$want ... spawned at tests/gdb_tasks.c:N'"
			fail=1
		fi
	done
	for fn in sleeper receiver awaiter locker; do
		# The task's own block: from its header to the next one.
		bt=$(sed -n "/^task 0x[0-9a-f]* 'gt-$fn' \[parked\]/,/^task /p" <<<"$out")
		if ! grep -qE "^#[0-9]+ +0x[0-9a-f]+ in gt_$fn " <<<"$bt" ||
			! grep -qE " in weft__ctx_entry " <<<"$bt"; then
			echo "gdb-tasks: FAILED ($what): weft-bt gt-$fn has no frame of gt_$fn down to weft__ctx_entry:"
			printf '%s\n' "$bt" | head -20
			fail=1
		fi
	done
	bt=$(sed -n "/^task 0x[0-9a-f]* 'main' \[running on worker/,\$p" <<<"$out")
	if ! grep -qE " in gt_ready " <<<"$bt" || ! grep -qE " in gt_main " <<<"$bt"; then
		echo "gdb-tasks: FAILED ($what): weft-bt main is not its thread's stack through gt_ready and gt_main:"
		printf '%s\n' "$bt" | head -20
		fail=1
	fi
}

# ---- live ------------------------------------------------------------------
out=$(gdbb -ex 'break gt_ready' -ex run "${cmds[@]}" -ex kill "$prog")
check live "$out"
echo "--- live"
grep -E "^(  0x|worker |task )" <<<"$out"

# ---- core --------------------------------------------------------------------
pattern=$(cat /proc/sys/kernel/core_pattern 2>/dev/null || echo '|')
core=
if [[ $pattern != \|* && $pattern != */* && -z ${WEFT_GDB_TASKS_GCORE:-} ]]; then
	{ (cd "$tmp" && ulimit -c unlimited && exec "$prog" abort) >/dev/null 2>&1; } 2>/dev/null
	core=$(find "$tmp" -maxdepth 1 -name 'core*' -type f | head -1)
	how="the kernel's core dump"
fi
if [ -z "$core" ]; then
	[ -x "$dir/tests/nouring" ] || {
		echo "gdb-tasks: FAILED: no core from the kernel (core_pattern '$pattern') and no $dir/tests/nouring for gcore"
		exit 1
	}
	gdbb -iex 'set breakpoint pending on' -ex 'break gt_ready' -ex run -ex "generate-core-file $tmp/core" \
		-ex kill --args "$dir/tests/nouring" -o "$prog" >/dev/null
	core=$tmp/core
	how="gcore (under tests/nouring -o)"
fi
if [ ! -s "$core" ]; then
	echo "gdb-tasks: FAILED: no core file ($how)"
	exit 1
fi
out=$(gdbb "${cmds[@]}" "$prog" "$core")
check "core from $how" "$out"
echo "--- core file ($how)"
grep -E "^(  0x|worker |task )" <<<"$out"
[ $fail -eq 0 ] || exit 1
echo "gdb-tasks: ok"
