/* The bare context switch, without the runtime around it. */
#include <criterion/criterion.h>

#include "weft_test.h" /* sanitizer-build scaffolding for Criterion */

#include "switch_check.h"

Test(switch, preserves_registers_arguments_and_fp_control_state)
{
	int line = sc_run_checks();

	cr_assert_eq(line, 0, "check failed at switch_check.h:%d", line);
}

/* weft.h: each task keeps its "rounding mode, exception masks, x87
 * precision, flush-to-zero" across switches; the test above varies the
 * first and the last. */
Test(switch, each_context_keeps_its_exception_masks_and_x87_precision)
{
	int line = sc_run_control_checks();

	cr_assert_eq(line, 0, "check failed at switch_check.h:%d", line);
}

/* The runtime starts a task with its spawner's control state by putting
 * it in the new frame (weft__ctx_make's fpctl argument): every bit of it must take. */
Test(switch, a_new_context_starts_with_the_control_state_put_in_its_frame)
{
	int line = sc_run_new_context_checks();

	cr_assert_eq(line, 0, "check failed at switch_check.h:%d", line);
}

static void *al_main_sp, *al_co_sp;
static uintptr_t al_frame;

static void al_entry(void *arg, void *ctx)
{
	(void)ctx;
	al_frame = (uintptr_t)__builtin_frame_address(0);
	for (;;)
		arg = weft__ctx_switch(&al_co_sp, al_main_sp, arg);
}

Test(switch, new_context_starts_with_an_aligned_stack)
{
	/* weft__ctx_make must give the entry function the ABI's stack
	 * alignment (a frame address that is a multiple of 16 on both
	 * x86-64 and AArch64); a misaligned stack crashes on aligned SIMD
	 * spills. Try every 8-byte offset of the stack top. */
	char *stk = malloc(64 * 1024 + 64);

	cr_assert_not_null(stk);
	for (int off = 0; off < 64; off += 8) {
		al_frame = 1;
		al_co_sp = weft__ctx_make(stk, stk + 64 * 1024 + off,
					  al_entry, NULL, weft__ctx_fpctl_get());
		weft__ctx_switch(&al_main_sp, al_co_sp, NULL);
		cr_assert_eq(al_frame % 16, 0,
			     "frame %#lx misaligned for top offset %d",
			     (unsigned long)al_frame, off);
	}
	free(stk);
}
