/* The file-mode creation mask survives C/R. */
#include <sys/stat.h>

#include "zdtm.h"

#define MASK 0247

static int setup(void)
{
	umask(MASK);
	return 0;
}

static int check(void)
{
	mode_t cur = umask(0);

	umask(cur);
	if (cur != MASK)
		return zdtm_fail("umask is %04o, expected %04o", cur, MASK);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
