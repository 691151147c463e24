/*
 * Tutorial "Understanding AsyncIO by Code", first program: the smallest
 * asyncio program with a wait in it. main() prints "hello", sleeps 2
 * seconds and prints "world"; asyncio.run() starts the event loop with
 * main as its first task.
 *
 *   asyncio:                              weft:
 *     async def main(): ...                 static void *amain(void *arg)
 *     await asyncio.sleep(2)                weft_sleep(2 s)
 *     asyncio.run(main())                   weft_run(amain, NULL, NULL, &res)
 *
 * Output, the tutorial's:
 *
 *   hello
 *   world
 *
 * The tutorial first makes the coroutine object (coro_obj = main()) and
 * then passes it to asyncio.run(). A C function has no such object: the
 * function and its argument, passed to weft_run(), play its part.
 *
 * Run:  tut_hello [-s SCALE]
 * -s multiplies the 2 s wait (-s 0.1 runs ten times faster).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <weft.h>

static double scale = 1.0;

static void *amain(void *arg)
{
	(void)arg;
	printf("hello\n");
	if (weft_sleep((uint64_t)(2 * scale * (double)WEFT_NSEC_PER_SEC)) < 0)
		return (void *)1;
	printf("world\n");
	return NULL;
}

int main(int argc, char **argv)
{
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
	err = weft_run(amain, NULL, NULL, &res);
	if (err < 0) {
		fprintf(stderr, "weft_run: %s\n", weft_strerror(err));
		return 1;
	}
	return res == NULL ? 0 : 1;
}
