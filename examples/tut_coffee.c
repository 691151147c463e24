/*
 * Tutorial "Python: AsyncIO", the breakfast program: brewing coffee and
 * toasting a bagel each take 3 seconds; gathered, they are both done
 * after 3 seconds, not 6.
 *
 *   asyncio:                                     weft:
 *     async def brew_coffee() -> str: ...          void *brew_coffee(void *)
 *     return "Coffee is ready!"                    return "Coffee is ready!"
 *     gather(brew_coffee(), toast_bagel())         start() x2, weft_gather()
 *     coffee_result, bagel_result = await ...      weft_gather(t, 2, res)
 *
 * Output, the tutorial's lines:
 *
 *   Start brewing coffee...
 *   Start toasting bagel...
 *   Done brewing coffee.
 *   Done toasting bagel.
 *
 * One worker, as asyncio has one thread (weft_config.workers = 1), and
 * each task started in turn (start(), below), so the two "Start" lines
 * come in the tutorial's order. The two "Done" lines may not: the two
 * 3 s waits end microseconds apart, and weft's timers count in ticks of
 * 16 us and keep no order among the timers of one tick (asyncio, too,
 * leaves undefined the order of callbacks due at the same time). As in
 * the tutorial, main keeps the two results and prints nothing more.
 *
 * Run:  tut_coffee [-s SCALE]
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

static void *brew_coffee(void *arg)
{
	(void)arg;
	printf("Start brewing coffee...\n");
	if (weft_sleep(scaled_ns(3)) < 0)
		return NULL; /* cancelled: no coffee */
	printf("Done brewing coffee.\n");
	return "Coffee is ready!";
}

static void *toast_bagel(void *arg)
{
	(void)arg;
	printf("Start toasting bagel...\n");
	if (weft_sleep(scaled_ns(3)) < 0)
		return NULL;
	printf("Done toasting bagel.\n");
	return "Bagel is ready!";
}

/*
 * asyncio.gather() starts its tasks in the order given, each running up
 * to its first await before the next begins. weft runs the task spawned
 * last first (it takes the worker's next slot), so each spawn is followed
 * by a yield, which lets the new task run up to its first wait now.
 */
static weft_task *start(weft_fn fn, void *arg)
{
	weft_task *t = weft_spawn(fn, arg);

	if (t)
		weft_yield();
	return t;
}

static void *amain(void *arg)
{
	weft_task *t[2];
	void *res[2] = { NULL, NULL };
	int err;

	(void)arg;
	t[0] = start(brew_coffee, NULL);
	t[1] = t[0] ? start(toast_bagel, NULL) : NULL;
	if (!t[1]) {
		fprintf(stderr, "weft_spawn failed\n");
		if (t[0]) /* cancelled when main returns */
			weft_task_release(t[0]);
		return (void *)1;
	}
	err = weft_gather(t, 2, res);
	weft_task_release(t[0]);
	weft_task_release(t[1]);
	/* coffee_result, bagel_result = res[0], res[1]: unused, as in the
	 * tutorial; NULL means the task was cancelled. */
	if (err < 0 || !res[0] || !res[1]) {
		fprintf(stderr, "gather: %s\n", weft_strerror(err));
		return (void *)1;
	}
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
