/* Target of tests/gdb_unwind.sh: a debugger must unwind through task
 * stacks and through the context switch. One worker, so one thread: main
 * spawns a child task that calls gu_leaf (the breakpoint) through
 * gu_middle, and both yield a few times, so that the switch runs out of
 * and into tasks, new and resumed, and between different rounding modes
 * (the child's is upward), which takes the switch's MXCSR/FPCR loads. */
#include <fenv.h>

#include <weft.h>

__attribute__((noinline)) void gu_leaf(void)
{
	__asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) void gu_middle(void)
{
	gu_leaf();
	__asm__ volatile("" ::: "memory");
}

static void *gu_child(void *arg)
{
	fesetround(FE_UPWARD);
	for (int i = 0; i < 3; i++) {
		gu_middle();
		weft_yield();
	}
	return arg;
}

static void *gu_main(void *arg)
{
	weft_task *t = weft_spawn(gu_child, arg);

	for (int i = 0; i < 3; i++)
		weft_yield();
	weft_await(t, NULL);
	weft_task_release(t);
	return NULL;
}

int main(void)
{
	struct weft_config cfg = {.workers = 1};

	return weft_run(gu_main, NULL, &cfg, NULL) ? 1 : 0;
}
