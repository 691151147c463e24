#!/usr/bin/env bash
# Debuggers and profilers must unwind through weft's task stacks and its
# context switch (the CFI in runtime/arch/*/ctx.S). This builds a small
# program, stops it in gdb (batch mode) at every instruction of
# weft__ctx_switch and weft__ctx_entry and in a function called from a
# task, and checks every backtrace there (tests/gdb_unwind.py says how).
#
# Usage:
#   tests/gdb_unwind.sh BUILD_DIR
#       natively: tests/gdb_unwind.c, a runtime with tasks, linked with
#       BUILD_DIR/libweft.a
#   tests/gdb_unwind.sh --qemu ARCH CC
#       the bare switch of another architecture (tests/switch_cross.c,
#       built with the cross compiler CC) under qemu-user's gdb stub,
#       with gdb-multiarch. The CPU has no pointer authentication there:
#       qemu's stub (7.2) does not tell gdb how to strip signed return
#       addresses (tests/run's cross check runs the signed build).
# Exits 0 when every backtrace held, 1 when one did not or a tool is
# missing, 77 (skipped) when the kernel refuses ptrace.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1

native() {
	local dir=$1 out
	command -v gdb >/dev/null || { echo "gdb-unwind: FAILED: no gdb"; return 1; }
	[ -f "$dir/libweft.a" ] || { echo "gdb-unwind: FAILED: no $dir/libweft.a"; return 1; }
	# shellcheck disable=SC2046
	cc -g -O1 -Iinclude -o "$dir/gdb_unwind" tests/gdb_unwind.c \
		"$dir/libweft.a" $(pkg-config --libs liburing) -lpthread -lm || {
		echo "gdb-unwind: FAILED: cannot build tests/gdb_unwind.c"
		return 1
	}
	out=$(timeout 300 gdb -nx -batch -x tests/gdb_unwind.py "$dir/gdb_unwind" 2>&1)
	report "$out"
}

cross() {
	local arch=$1 cc=$2 gdb=gdb-multiarch bin=build-test-cross/switch_cross_g
	local qemu=qemu-$arch cpu=() port out try
	local tool
	for tool in "$cc" "$qemu" "$gdb"; do
		command -v "$tool" >/dev/null ||
			{ echo "gdb-unwind: FAILED: no $tool"; return 1; }
	done
	[ "$arch" = aarch64 ] && cpu=(-cpu cortex-a72)
	mkdir -p build-test-cross
	# -O0: the frames named in GU_TASK_FRAMES are not inlined.
	"$cc" -O0 -g -static -o "$bin" tests/switch_cross.c \
		"runtime/arch/$arch/ctx.S" -lm || {
		echo "gdb-unwind: FAILED: $cc cannot build tests/switch_cross.c"
		return 1
	}
	# A port taken by someone else: try another (gdb retries the
	# connection while qemu starts listening).
	for try in 1 2 3; do
		port=$((20000 + RANDOM % 40000))
		"$qemu" "${cpu[@]}" -g "$port" "$bin" >"$bin.log" 2>&1 &
		out=$(GU_TASK_FRAMES="sc_set_ftz sc_set_fpmode sc_entry weft__ctx_entry" \
			timeout 300 "$gdb" -nx -batch \
			-ex "file $bin" -ex "target remote :$port" \
			-x tests/gdb_unwind.py 2>&1)
		kill $! 2>/dev/null
		wait $! 2>/dev/null
		grep -q "could not open gdbserver" "$bin.log" || break
	done
	report "$out"
}

# Prints the backtraces shown and the verdict; 0 if it is ok.
report() {
	local out=$1
	if grep -qE "ptrace: Operation not permitted|Could not attach|Couldn't get registers" <<<"$out"; then
		printf '%s\n' "$out" | tail -5
		echo "gdb-unwind: skipped (ptrace refused here)"
		return 77
	fi
	printf '%s\n' "$out" | sed -n '/^--- at /,$p'
	grep -qx "gdb-unwind: ok" <<<"$out"
}

case ${1:-} in
--qemu) cross "${2:?arch}" "${3:?cross compiler}" ;;
"") echo "usage: $0 BUILD_DIR | --qemu ARCH CC" >&2; exit 2 ;;
*) native "$1" ;;
esac
