/* Runs the context-switch checks on a foreign architecture under
 * qemu-user (see tests/run). Prints the plain "N passed, N failed" line.
 *
 * On AArch64 it also puts the hardening the switch claims (its
 * .note.gnu.property says BTI and PAC) to work, where the CPU has it
 * (qemu's default CPU does):
 *   - BTI: the checks run with the switch's and the test's code on
 *     BTI-guarded pages (mprotect PROT_BTI, as the loader does for a
 *     BTI-marked binary; the whole binary cannot be marked, Debian's libc
 *     has no landing pads), so every indirect branch there must land on a
 *     landing pad. A probe first shows that the guard is enforced.
 *   - PAC: a new context whose saved return address was replaced by the
 *     unsigned one must fault when switched to.
 * Each probe runs in a child process, which is expected to die. */
#include <stdio.h>

#if defined(__aarch64__)
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PROT_BTI
#define PROT_BTI 0x10
#endif
#ifndef HWCAP2_BTI
#define HWCAP2_BTI (1 << 17)
#endif
#ifndef HWCAP_PACA
#define HWCAP_PACA (1 << 30)
#endif

static int guard(int on);
#define SC_GUARD(on) guard(on)
#endif

#include "switch_check.h"

#if defined(__aarch64__)
static int bti_on;

/* Guards (or unguards) the pages from `a` to `b` inclusive. */
static int guard_range(uintptr_t a, uintptr_t b, int on)
{
	uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t lo = a & ~(pg - 1), hi = (b | (pg - 1)) + 1;

	return mprotect((void *)lo, hi - lo,
			PROT_READ | PROT_EXEC | (on ? PROT_BTI : 0));
}

/* The switch's code and the coroutine it enters, which the linker lays
 * out together (this file's text, then ctx.S's). */
static int guard(int on)
{
	uintptr_t a[] = {(uintptr_t)weft__ctx_switch,
			 (uintptr_t)weft__ctx_entry + 64, (uintptr_t)sc_entry};
	uintptr_t lo = a[0], hi = a[0];

	if (!bti_on)
		return 0;
	for (size_t i = 1; i < sizeof(a) / sizeof(a[0]); i++) {
		lo = a[i] < lo ? a[i] : lo;
		hi = a[i] > hi ? a[i] : hi;
	}
	return guard_range(lo, hi, on) ? __LINE__ : 0;
}

/* No landing pad: called through a pointer on a guarded page, it must
 * fault. */
__attribute__((target("branch-protection=none"), noinline)) static int
no_pad(int x)
{
	return x + 1;
}

/* Runs fn in a child; 1 if the child died of a signal, 0 if it exited. */
static int dies(void (*fn)(void))
{
	int st;
	pid_t pid = fork();

	if (pid == 0) {
		/* The expected death is no news: keep qemu's report of
		 * it off the terminal. */
		freopen("/dev/null", "w", stderr);
		dup2(fileno(stderr), 2);
		fn();
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFSIGNALED(st);
}

static void bti_probe(void)
{
	int (*volatile f)(int) = no_pad;

	guard_range((uintptr_t)no_pad, (uintptr_t)no_pad, 1);
	f(1);
}

static void pac_probe(void)
{
	size_t sz = 64 * 1024;
	char *stk = malloc(sz);
	uint64_t *sp = weft__ctx_make(stk, stk + sz, sc_entry, NULL,
				      weft__ctx_fpctl_get());

	sp[11] = (uint64_t)(uintptr_t)weft__ctx_entry + WEFT__CTX_ENTRY_SKIP;
	weft__ctx_switch(&sc_main_sp, sp, NULL);
}

/* 0, or the line of a failed probe; reports what was checked. */
static int hardening_checks(void)
{
	int pac = (getauxval(AT_HWCAP) & HWCAP_PACA) != 0;

	bti_on = (getauxval(AT_HWCAP2) & HWCAP2_BTI) != 0;
	printf("switch-cross: BTI %s, PAC %s\n",
	       bti_on ? "enforced on the switch's pages" : "not in this CPU",
	       pac ? "on" : "not in this CPU");
	fflush(stdout);
	if (bti_on && dies(bti_probe) != 1)
		return __LINE__; /* guarded pages are not enforced */
	if (pac && dies(pac_probe) != 1)
		return __LINE__; /* an unsigned return address was taken */
	return 0;
}
#else
static int hardening_checks(void)
{
	return 0;
}
#endif

int main(void)
{
	int line = hardening_checks();

	if (!line)
		line = sc_run_checks();
	if (!line)
		line = sc_run_control_checks();
	if (!line)
		line = sc_run_new_context_checks();
	if (line)
		printf("switch check failed at line %d (switch_check.h, or\n"
		       "switch_cross.c for the probes)\n", line);
	printf("switch-cross: %d passed, %d failed\n", line ? 0 : 1,
	       line ? 1 : 0);
	return line ? 1 : 0;
}
