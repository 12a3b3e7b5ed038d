/* Messages flowing over a unix seqpacket socketpair during C/R, both ways at once: the
 * parent and a child each send sequence-numbered, checksummed messages of 16..4000 bytes
 * through non-blocking sockets; each receiver checks every message arrives whole (its
 * boundary kept), in order, none lost or duplicated. At check the parent shuts down its
 * sending side; the child reads to EOF, checks it got exactly as many messages as the
 * parent sent and shuts down its side; the parent does the same with the child's. */
#include <sys/socket.h>

#include "stream.h"
#include "transition.h"

#define SEED_P2C 0x5eb1
#define SEED_C2P 0xc5b2
#define MIN_STEPS 3

static struct zdtm_stream st = ZDTM_STREAM(SOCK_SEQPACKET, SEED_P2C, SEED_C2P);

static int build(void)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv))
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
