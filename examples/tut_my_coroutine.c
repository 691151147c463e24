/*
 * Tutorial "Asyncio Event Loops Tutorial", first program: the smallest
 * event loop there is. A coroutine prints "My Coroutine"; the script gets
 * a loop, runs it until the coroutine has completed, and closes it.
 *
 *   asyncio:                                  weft:
 *     loop = asyncio.get_event_loop()           weft_runtime_create(&rt, NULL)
 *     loop.run_until_complete(myCoroutine())    weft_runtime_run(rt, my_coroutine)
 *     finally: loop.close()                     weft_runtime_destroy(rt)
 *
 * Output:
 *
 *   My Coroutine
 *
 * weft_run(my_coroutine, ...) does the three steps in one call, as
 * asyncio.run() does; this program spells them out as the tutorial does.
 * The runtime's workers are threads of its own, and the calling thread
 * blocks in weft_runtime_run() while they run the coroutine.
 *
 * Run:  tut_my_coroutine [-s SCALE]
 * Nothing here waits, so -s changes nothing; it is accepted because every
 * tutorial program takes it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <weft.h>

static void *my_coroutine(void *arg)
{
	(void)arg;
	printf("My Coroutine\n");
	return NULL;
}

int main(int argc, char **argv)
{
	weft_runtime *rt;
	double scale;
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
	err = weft_runtime_create(&rt, NULL);
	if (err < 0) {
		fprintf(stderr, "weft_runtime_create: %s\n", weft_strerror(err));
		return 1;
	}
	err = weft_runtime_run(rt, my_coroutine, NULL, NULL);
	weft_runtime_destroy(rt); /* loop.close(), and the handle freed */
	if (err < 0) {
		fprintf(stderr, "weft_runtime_run: %s\n", weft_strerror(err));
		return 1;
	}
	return 0;
}
