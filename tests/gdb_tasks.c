/* Target of tests/gdb_tasks.sh: a program whose tasks are parked in known
 * places when gdb stops it at gt_ready(), called by the main task. Two
 * workers. Each parked task stops in a function of its own (gt_sleeper,
 * gt_receiver, gt_awaiter, gt_locker), which its backtrace must show, and
 * has a name `info weft-tasks` must list. */
#include <stdio.h>
#include <stdlib.h>

#include <weft.h>

static weft_chan *gt_chan;
static weft_lock *gt_lock;

/* With an argument, the program dumps core there (abort) instead, for the
 * core-file half of the check. */
static int gt_abort;

__attribute__((noinline)) void gt_ready(void)
{
	if (gt_abort)
		abort();
	__asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void *gt_sleeper(void *arg)
{
	weft_sleep_ms(60000);
	__asm__ volatile("" ::: "memory");
	return arg;
}

__attribute__((noinline)) static void *gt_receiver(void *arg)
{
	void *v;

	weft_chan_recv(gt_chan, &v);
	__asm__ volatile("" ::: "memory");
	return arg;
}

__attribute__((noinline)) static void *gt_awaiter(void *arg)
{
	weft_await(arg, NULL);
	__asm__ volatile("" ::: "memory");
	return NULL;
}

__attribute__((noinline)) static void *gt_locker(void *arg)
{
	weft_lock_acquire(gt_lock);
	weft_lock_release(gt_lock);
	__asm__ volatile("" ::: "memory");
	return arg;
}

static weft_task *gt_spawn(const char *name, weft_fn fn, void *arg)
{
	struct weft_spawn_opts o = {.name = name};
	weft_task *t = NULL;

	if (weft_spawn_opts(&t, fn, arg, &o)) {
		fprintf(stderr, "gdb_tasks: cannot spawn %s\n", name);
		return NULL;
	}
	return t;
}

static void *gt_main(void *arg)
{
	weft_task *t[4];

	(void)arg;
	if (weft_chan_create(&gt_chan, 1) || weft_lock_create(&gt_lock) ||
	    weft_lock_acquire(gt_lock))
		return (void *)1;
	t[0] = gt_spawn("gt-sleeper", gt_sleeper, NULL);
	t[1] = gt_spawn("gt-receiver", gt_receiver, NULL);
	t[2] = gt_spawn("gt-awaiter", gt_awaiter, t[0]);
	t[3] = gt_spawn("gt-locker", gt_locker, NULL);
	/* Long enough for every one of them to park. */
	weft_sleep_ms(200);
	gt_ready();
	weft_lock_release(gt_lock);
	weft_chan_close(gt_chan);
	weft_cancel(t[0]);
	for (int i = 0; i < 4; i++) {
		weft_await(t[i], NULL);
		weft_task_release(t[i]);
	}
	weft_chan_destroy(gt_chan);
	weft_lock_destroy(gt_lock);
	return NULL;
}

int main(int argc, char **argv)
{
	struct weft_config cfg = {.workers = 2};
	void *res = NULL;

	(void)argv;
	gt_abort = argc > 1;

	if (weft_run(gt_main, NULL, &cfg, &res) || res)
		return 1;
	return 0;
}
