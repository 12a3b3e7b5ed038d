/* Data flowing over a unix stream socketpair during C/R, both ways at once: the parent and
 * a child each write a checksummed stream (byte i is a function of i) in chunks of varying
 * size through non-blocking sockets, and each verifies every byte it reads at its stream
 * position. At check the parent shuts down its sending side; the child reads to EOF,
 * checks it got exactly what the parent sent, and shuts down its own side; the parent
 * reads to EOF and checks it got exactly what the child sent. */
#include <sys/socket.h>

#include "stream.h"
#include "transition.h"

#define SEED_P2C 0x5e1d
#define SEED_C2P 0xc2b0
#define MIN_STEPS 3

static struct zdtm_stream st = ZDTM_STREAM(SOCK_STREAM, SEED_P2C, SEED_C2P);

static int build(void)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return zdtm_err("socketpair");
	return zdtm_stream_start(&st, sv[0], sv[1]);
}

static int step(void)
{
	return zdtm_stream_step(&st);
}

static bool flowing(void)
{
	return zdtm_stream_flowing(&st);
}

static int setup(void)
{
	return zdtm_warmup(build, step, &st.steps, MIN_STEPS, flowing);
}

static int check(void)
{
	return zdtm_stream_check(&st, MIN_STEPS);
}

ZDTM_TEST(.setup = setup, .step = step, .check = check);
