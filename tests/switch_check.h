/*
 * Checks of the bare context switch, shared by tests/test_switch.c (native,
 * under Criterion) and tests/switch_cross.c (cross-built for the other
 * architecture and run under qemu-user by tests/run). Each check returns 0
 * when it holds, or a line number.
 *
 * A file that includes this may define SC_GUARD(on) first: called with 1
 * just before the switching starts and 0 after it ends, to put the code
 * under test under stricter rules meanwhile (switch_cross.c: BTI-guarded
 * pages on AArch64). It returns 0 or a line number.
 */
#ifndef WEFT_SWITCH_CHECK_H
#define WEFT_SWITCH_CHECK_H

#include <fenv.h>
#include <stdint.h>
#include <stdlib.h>

#include "../runtime/arch/ctx.h"

#ifndef SC_GUARD
#define SC_GUARD(on) 0
#endif

/* Called through a pointer, so that the switch is entered by an indirect
 * call, as branch-target checks (BTI, IBT) see it. */
static void *(*volatile sc_switch)(void **, void *, void *) = weft__ctx_switch;

/* Flush-to-zero on or off: a control bit beside the rounding mode that
 * fesetround() leaves alone (MXCSR.FTZ, bit 15; FPCR.FZ, bit 24). */
static void sc_set_ftz(int on)
{
#if defined(__x86_64__)
	uint32_t csr;

	__asm__ volatile("stmxcsr %0" : "=m"(csr));
	csr = on ? csr | 0x8000u : csr & ~0x8000u;
	__asm__ volatile("ldmxcsr %0" : : "m"(csr));
#elif defined(__aarch64__)
	uint64_t fpcr;

	__asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
	fpcr = on ? fpcr | UINT64_C(1) << 24 : fpcr & ~(UINT64_C(1) << 24);
	__asm__ volatile("msr fpcr, %0" : : "r"(fpcr));
#endif
}

/* The other control bits weft.h names ("exception masks, x87
 * precision"), three of them: x86-64: MXCSR's denormals-are-zero bit and
 * its denormal-operand exception mask (unmasked for bit 1), and the x87
 * precision control (53 bits for bit 2, else 64); AArch64: FPCR's
 * default-NaN and alternative-half-precision bits (bit 2: none). e = 0 is
 * the state a thread starts with. No value computed here is a denormal, a
 * NaN or a half, and none goes through the x87 unit, so none of them
 * changes a result or traps. */
static void sc_set_extra(unsigned e)
{
#if defined(__x86_64__)
	uint32_t csr;
	uint16_t cw;

	__asm__ volatile("stmxcsr %0" : "=m"(csr));
	csr = e & 1 ? csr | 0x40u : csr & ~0x40u;
	csr = e & 2 ? csr & ~0x100u : csr | 0x100u;
	__asm__ volatile("ldmxcsr %0" : : "m"(csr));
	__asm__ volatile("fnstcw %0" : "=m"(cw));
	cw = (uint16_t)((cw & ~0x300u) | (e & 4 ? 0x200u : 0x300u));
	__asm__ volatile("fldcw %0" : : "m"(cw));
#elif defined(__aarch64__)
	uint64_t fpcr;

	__asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
	fpcr = e & 1 ? fpcr | UINT64_C(1) << 25 : fpcr & ~(UINT64_C(1) << 25);
	fpcr = e & 2 ? fpcr | UINT64_C(1) << 26 : fpcr & ~(UINT64_C(1) << 26);
	__asm__ volatile("msr fpcr, %0" : : "r"(fpcr));
#endif
}

static const int sc_rounding[4] = {FE_TONEAREST, FE_UPWARD, FE_DOWNWARD,
				   FE_TOWARDZERO};

/* How many modes the switching checks cycle through: 8 (rounding and
 * flush-to-zero), or 64 (sc_run_control_checks: the other control bits
 * too). */
static unsigned sc_nmodes = 8;

/* Floating-point control mode m (of 64): rounding m % 4, flush-to-zero
 * m / 4 % 2, the other bits m / 8 (sc_set_extra). */
static void sc_set_fpmode(unsigned m)
{
	fesetround(sc_rounding[m % 4]);
	sc_set_ftz(m / 4 % 2);
	sc_set_extra(m / 8 % 8);
}

/* 1/3 in each rounding mode (upward and downward differ). */
static double sc_third(void)
{
	volatile double x = 1.0, y = 3.0;

	return x / y;
}

static void *sc_main_sp, *sc_co_sp;
/* The coroutine's control state as it switched out (what the switch back
 * into it must load), and the line of its first failed check. */
static weft__fpctl sc_co_fp;
static int sc_co_bad;

/* Coroutine: returns arg + 1000 on each switch back, forever. Changes its
 * own floating-point mode every third switch and checks after each one
 * that it got its mode back. */
static void sc_entry(void *arg, void *ctx)
{
	(void)ctx;
	for (uint64_t n = 0;; n++) {
		if (n % 3 == 0) {
			sc_set_fpmode((unsigned)(n / 3 % sc_nmodes));
			sc_co_fp = weft__ctx_fpctl_get();
		}
		arg = sc_switch(&sc_co_sp, sc_main_sp,
				(void *)((uintptr_t)arg + 1000));
		if (weft__ctx_fpctl_get() != sc_co_fp && !sc_co_bad)
			sc_co_bad = __LINE__;
	}
}

/* Values survive, arguments pass both ways, callee-saved registers held
 * in locals across thousands of switches keep their values, and each
 * context keeps its own floating-point control state (rounding mode and
 * flush-to-zero), both when the two differ (the switch must load the
 * incoming one) and when they agree (the switch skips the load). */
static int sc_run_checks(void)
{
	size_t sz = 64 * 1024;
	char *stk = malloc(sz);
	uint64_t sum = 0, same = 0, differ = 0;
	double third[4];
	weft__fpctl want = 0;
	register uint64_t k1 = 11, k2 = 13, k3 = 17;
	int line, bad = 0;

	if (!stk)
		return __LINE__;
	for (unsigned m = 0; m < 4; m++) {
		sc_set_fpmode(m);
		third[m] = sc_third();
	}
	if (third[1] == third[2])
		return __LINE__; /* the rounding modes do not take */
	sc_set_fpmode(0);
	sc_co_bad = 0;
	sc_co_fp = weft__ctx_fpctl_get(); /* a new context starts with ours */
	sc_co_sp = weft__ctx_make(stk, stk + sz, sc_entry, NULL, sc_co_fp);
	if ((line = SC_GUARD(1)))
		return line;
	for (uint64_t i = 0; i < 10000; i++) {
		unsigned m = (unsigned)(i / 2 % sc_nmodes);

		if (i % 2 == 0) {
			sc_set_fpmode(m);
			want = weft__ctx_fpctl_get();
		}
		if (want == sc_co_fp)
			same++;
		else
			differ++;
		sum += (uintptr_t)sc_switch(&sc_main_sp, sc_co_sp,
				    (void *)(uintptr_t)i);
		if (weft__ctx_fpctl_get() != want || sc_third() != third[m % 4]) {
			bad = __LINE__; /* the coroutine's mode leaked */
			break;
		}
		k1 += 1;
		k2 += 2;
		k3 += 3;
	}
	if ((line = SC_GUARD(0)))
		return line;
	sc_set_fpmode(0);
	free(stk);
	if (bad)
		return bad;
	if (sc_co_bad)
		return sc_co_bad;
	if (sum != 10000ull * 1000 + 10000ull * 9999 / 2)
		return __LINE__;
	if (k1 != 10011 || k2 != 20013 || k3 != 30017)
		return __LINE__;
	if (same == 0 || differ == 0)
		return __LINE__; /* one path of the switch's compare untested */
	return 0;
}

/* The same over all 64 modes: a context keeps its exception masks,
 * denormal handling and x87 precision too, not only the bits that
 * fesetround() and flush-to-zero touch (a switch that compared only those
 * before it skipped the load would hand one context's masks to the
 * other). */
static int sc_run_control_checks(void)
{
	int line;

	sc_nmodes = 64;
	line = sc_run_checks();
	sc_nmodes = 8;
	return line;
}

/* A new context records its control state on entry, then only switches
 * back. */
static weft__fpctl sc_new_fp;

static void sc_new_entry(void *arg, void *ctx)
{
	(void)ctx;
	sc_new_fp = weft__ctx_fpctl_get();
	for (;;)
		arg = sc_switch(&sc_co_sp, sc_main_sp, arg);
}

/* weft__ctx_make()'s fpctl: a new context starts with the control state put
 * in its frame (every bit of it), whatever its maker's is; its maker gets
 * its own back. The runtime starts each task so, with the state its
 * spawner had at the spawn (weft.h). */
static int sc_run_new_context_checks(void)
{
	size_t sz = 64 * 1024;
	char *stk = malloc(sz);
	int bad = 0;

	if (!stk)
		return __LINE__;
	for (unsigned m = 0; m < 64 && !bad; m++) {
		weft__fpctl want, mine;
		void *sp;

		sc_set_fpmode(m);
		want = weft__ctx_fpctl_get();
		sc_set_fpmode(m ^ 63); /* the maker's: every bit the other way */
		mine = weft__ctx_fpctl_get();
		sp = weft__ctx_make(stk, stk + sz, sc_new_entry, NULL, want);
		sc_new_fp = ~want;
		sc_switch(&sc_main_sp, sp, NULL);
		if (sc_new_fp != want)
			bad = __LINE__; /* started with another state */
		else if (weft__ctx_fpctl_get() != mine)
			bad = __LINE__; /* the maker's did not come back */
	}
	sc_set_fpmode(0);
	free(stk);
	return bad;
}

#endif
