/*
 * Tutorial 5: what create_task means for the order things happen in.
 *
 * The asyncio program it mirrors (the common "which line prints first"
 * exercise for asyncio.create_task):
 *
 *   - a helper coroutine prints "This goes second", sleeps 2 s and returns
 *     the string "This goes fourth!";
 *   - main wraps the helper in a task with create_task, which only
 *     schedules it, and prints "This goes first" before the helper has
 *     run at all;
 *   - main then sleeps 1 s; that gives the loop away, so the helper starts
 *     now and prints "This goes second" before going to sleep itself;
 *   - main wakes first, prints "This goes third" while the helper is still
 *     asleep, then awaits the task and prints the string it returned,
 *     "This goes fourth!", 2 s after the start (not 3: the two sleeps
 *     overlapped).
 *
 *   asyncio:                                  weft:
 *     task = asyncio.create_task(helper())      weft_spawn(helper, NULL)
 *     await asyncio.sleep(1)                    weft_sleep(1 s)
 *     print(await task)                         weft_await(task, &result)
 *
 * The order above holds in asyncio because one thread runs everything: a
 * new task cannot run until main gives the loop away. weft would normally
 * run the new task at once on another worker, so "second" could come
 * before "first". This program asks for one worker (weft_config.workers =
 * 1), which gives asyncio's guarantee back; WEFT_SPAWN_PINNED does the same
 * for chosen tasks inside a multi-worker runtime.
 *
 * Run:  tut_order [-s SCALE]
 * -s multiplies every duration (-s 0.01 runs 100 times faster). Each line
 * ends with the time since the start, in real seconds:
 *
 *   This goes first (0.00 s)
 *   This goes second (0.00 s)
 *   This goes third (1.00 s)
 *   This goes fourth! (2.00 s)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <weft.h>

static double scale = 1.0;
static uint64_t start;

static uint64_t scaled_ns(double seconds)
{
	return (uint64_t)(seconds * scale * (double)WEFT_NSEC_PER_SEC);
}

static void say(const char *what)
{
	printf("%s (%.2f s)\n", what,
	       (double)(weft_now() - start) / (double)WEFT_NSEC_PER_SEC);
}

static void *helper(void *arg)
{
	(void)arg;
	say("This goes second");
	if (weft_sleep(scaled_ns(2)) < 0)
		return NULL;
	return "This goes fourth!";
}

static void *amain(void *arg)
{
	weft_task *task;
	void *result = NULL;
	int err;

	(void)arg;
	start = weft_now();
	task = weft_spawn(helper, NULL); /* scheduled, not run yet */
	if (!task)
		return (void *)1;
	say("This goes first");
	err = weft_sleep(scaled_ns(1)); /* the helper runs now */
	if (err == 0)
		say("This goes third");
	if (err == 0)
		err = weft_await(task, &result);
	weft_task_release(task);
	if (err < 0 || !result) {
		fprintf(stderr, "tut_order: %s\n", weft_strerror(err));
		return (void *)1;
	}
	say(result);
	return NULL;
}

int main(int argc, char **argv)
{
	struct weft_config cfg = { .workers = 1 }; /* asyncio's one thread */
	void *res;
	char *end;
	int opt, err;

	while ((opt = getopt(argc, argv, "s:h")) != -1) {
		if (opt == 's') {
			scale = strtod(optarg, &end);
			if (end != optarg && *end == '\0' && scale > 0 &&
			    scale <= 1000)
				continue;
		}
		fprintf(stderr, "usage: %s [-s SCALE]\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0); /* lines show at once in a pipe */
	err = weft_run(amain, NULL, &cfg, &res);
	if (err < 0) {
		fprintf(stderr, "weft_run: %s\n", weft_strerror(err));
		return 1;
	}
	return res == NULL ? 0 : 1;
}
