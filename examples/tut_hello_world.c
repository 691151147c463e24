/*
 * Tutorial "Python: AsyncIO", first programs: main() prints "Hello
 * World!", waits 5 seconds, and says so. (The tutorial's very first
 * program is the same without the wait and the last line.)
 *
 *   asyncio:                              weft:
 *     async def main(): ...                 static void *amain(void *arg)
 *     await asyncio.sleep(5)                weft_sleep(5 s)
 *     asyncio.run(main())                   weft_run(amain, NULL, NULL, &res)
 *
 * Output, the tutorial's:
 *
 *   Hello World!
 *   I just waited for 5 seconds!
 *
 * Run:  tut_hello_world [-s SCALE]
 * -s multiplies the 5 s wait (-s 0.1 runs ten times faster); the last
 * line keeps saying 5 seconds, the nominal wait.
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
	printf("Hello World!\n");
	if (weft_sleep((uint64_t)(5 * scale * (double)WEFT_NSEC_PER_SEC)) < 0)
		return (void *)1;
	printf("I just waited for 5 seconds!\n");
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
