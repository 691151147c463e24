/*
 * Callbacks as tasks (asyncio's call_soon, call_later, call_at and
 * call_soon_threadsafe): each runs fn in a task of its own, which starts at
 * once or sleeps until its moment first (task->start_at).
 */
#include <errno.h>

#include "runtime.h"
#include "task.h"

static int call_at(weft_task **out, uint64_t start_at, weft_fn fn, void *arg)
{
	struct weft_spawn_opts o = { .name = "callback" };

	if (!out)
		o.flags = WEFT_SPAWN_DETACHED;
	return weft__task_spawn_at(out, fn, arg, &o, start_at);
}

int weft_call_soon(weft_task **out, weft_fn fn, void *arg)
{
	return call_at(out, 0, fn, arg);
}

int weft_call_later(weft_task **out, uint64_t delay_ns, weft_fn fn,
		    void *arg)
{
	uint64_t now = weft_now();

	return call_at(out, delay_ns >= WEFT_NEVER - now ? WEFT_NEVER
							  : now + delay_ns,
		       fn, arg);
}

int weft_call_at(weft_task **out, uint64_t deadline, weft_fn fn, void *arg)
{
	/* 0 means "at once" inside; any past deadline does too. */
	return call_at(out, deadline ? deadline : 1, fn, arg);
}

int weft_call_soon_threadsafe(weft_runtime *rt, weft_task **out, weft_fn fn,
			      void *arg)
{
	struct weft_spawn_opts o = { .name = "callback", .runtime = rt };

	if (!rt)
		return -EINVAL;
	if (!out)
		o.flags = WEFT_SPAWN_DETACHED;
	return weft__task_spawn_at(out, fn, arg, &o, 0);
}
