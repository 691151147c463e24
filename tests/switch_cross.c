/* Runs the context-switch checks on a foreign architecture under
 * qemu-user (see tests/run). Prints the plain "N passed, N failed" line. */
#include <stdio.h>

#include "switch_check.h"

int main(void)
{
	int line = sc_run_checks();

	if (line)
		printf("switch check failed at switch_check.h:%d\n", line);
	printf("switch-cross: %d passed, %d failed\n", line ? 0 : 1,
	       line ? 1 : 0);
	return line ? 1 : 0;
}
