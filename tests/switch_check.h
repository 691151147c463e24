/*
 * Checks of the bare context switch, shared by tests/test_switch.c (native,
 * under Criterion) and tests/switch_cross.c (cross-built for the other
 * architecture and run under qemu-user by tests/run). Each check returns 0
 * when it holds, or a line number.
 */
#ifndef WEFT_SWITCH_CHECK_H
#define WEFT_SWITCH_CHECK_H

#include <fenv.h>
#include <stdint.h>
#include <stdlib.h>

#include "../runtime/arch/switch.h"

static void *sc_main_sp, *sc_co_sp;

/* Coroutine: returns arg + 1000 on each switch back, forever. Also does
 * floating-point work in its own rounding mode. */
static void sc_entry(void *arg, void *ctx)
{
	(void)ctx;
	fesetround(FE_UPWARD);
	for (;;) {
		volatile double x = 1.0, y = 3.0;
		/* 1/3 rounded up differs from rounded to nearest. */
		volatile double q = x / y;
		(void)q;
		arg = weft__ctx_switch(&sc_co_sp, sc_main_sp,
				       (void *)((uintptr_t)arg + 1000));
	}
}

/* Values survive, arguments pass both ways, callee-saved registers held
 * in locals across thousands of switches keep their values, and each
 * context keeps its own rounding mode. */
static int sc_run_checks(void)
{
	size_t sz = 64 * 1024;
	char *stk = malloc(sz);
	uint64_t sum = 0;
	volatile double x = 1.0, y = 3.0;
	double before, after;
	register uint64_t k1 = 11, k2 = 13, k3 = 17;

	if (!stk)
		return __LINE__;
	fesetround(FE_TONEAREST);
	before = x / y;
	sc_co_sp = weft__ctx_make(stk, stk + sz, sc_entry, NULL);
	for (uint64_t i = 0; i < 10000; i++) {
		sum += (uintptr_t)weft__ctx_switch(&sc_main_sp, sc_co_sp,
						   (void *)(uintptr_t)i);
		k1 += 1;
		k2 += 2;
		k3 += 3;
	}
	after = x / y;
	free(stk);
	if (sum != 10000ull * 1000 + 10000ull * 9999 / 2)
		return __LINE__;
	if (k1 != 10011 || k2 != 20013 || k3 != 30017)
		return __LINE__;
	if (fegetround() != FE_TONEAREST)
		return __LINE__; /* the coroutine's mode leaked into ours */
	if (before != after)
		return __LINE__;
	return 0;
}

#endif
