/*
 * main.c - bangerd entry point (the control loop lands in reconciler/daemon.c).
 */
#include <stdio.h>

int main(void)
{
	fprintf(stderr, "bangerd: the daemon is not built yet\n");
	return 1;
}
