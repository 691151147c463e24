/*
 * Tutorial "Python: AsyncIO", the program that numbers its lines: what
 * create_task means for the order things happen in.
 *
 *   - main wraps foo() in a task with create_task, which only schedules
 *     it, and prints "This goes first!" before foo has run at all;
 *   - main sleeps 2 s; that gives the loop away, so foo starts now,
 *     prints "This goes second!" and goes to sleep for 2 s itself;
 *   - main wakes first (its sleep began first), prints "This goes
 *     third!" and awaits the task; foo wakes, returns "This goes
 *     fourth!", and main prints it, 2 s after the start (not 4: the two
 *     sleeps overlapped).
 *
 *   asyncio:                                  weft:
 *     my_task = asyncio.create_task(foo())      weft_spawn(foo, NULL)
 *     await asyncio.sleep(2)                    weft_sleep(2 s)
 *     foo_return = await my_task                weft_await(my_task, &foo_return)
 *
 * Output, the tutorial's lines:
 *
 *   This goes first!
 *   This goes second!
 *   This goes third!
 *   This goes fourth!
 *
 * The order above holds in asyncio because one thread runs everything: a
 * new task cannot run until main gives the loop away. weft would normally
 * run the new task at once on another worker, so "second" could come
 * before "first". This program asks for one worker (weft_config.workers =
 * 1), which gives asyncio's guarantee back; WEFT_SPAWN_PINNED does the same
 * for chosen tasks inside a multi-worker runtime. (Which of the two 2 s
 * sleeps ends first does not matter here: foo prints nothing after its
 * own.)
 *
 * Run:  tut_order [-s SCALE]
 * -s multiplies every wait (-s 0.1 runs ten times faster).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <weft.h>

static double scale = 1.0;

static uint64_t scaled_ns(double seconds)
{
	return (uint64_t)(seconds * scale * (double)WEFT_NSEC_PER_SEC);
}

static void *foo(void *arg)
{
	(void)arg;
	printf("This goes second!\n");
	if (weft_sleep(scaled_ns(2)) < 0)
		return NULL;
	return "This goes fourth!";
}

static void *amain(void *arg)
{
	weft_task *my_task;
	void *foo_return = NULL;
	int err;

	(void)arg;
	my_task = weft_spawn(foo, NULL); /* scheduled, not run yet */
	if (!my_task)
		return (void *)1;
	printf("This goes first!\n");
	err = weft_sleep(scaled_ns(2)); /* foo runs now */
	if (err == 0) {
		printf("This goes third!\n");
		err = weft_await(my_task, &foo_return);
	}
	weft_task_release(my_task);
	if (err < 0 || !foo_return) {
		fprintf(stderr, "tut_order: %s\n", weft_strerror(err));
		return (void *)1;
	}
	printf("%s\n", (char *)foo_return);
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
