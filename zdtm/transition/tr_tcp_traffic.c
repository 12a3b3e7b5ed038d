/* Data flowing over a loopback TCP connection during C/R, both ways at once: the parent and
 * a child each write a checksummed stream (byte i is a function of i) in chunks of varying
 * size through non-blocking sockets, and each verifies every byte it reads at its stream
 * position. At check the parent shuts down its sending side; the child reads to EOF,
 * checks it got exactly what the parent sent, and shuts down its own side; the parent
 * reads to EOF and checks it got exactly what the child sent. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stream.h"
#include "transition.h"

#define SEED_P2C 0x7c9e
#define SEED_C2P 0x3b1f
#define MIN_STEPS 3

static struct zdtm_stream st = ZDTM_STREAM(SOCK_STREAM, SEED_P2C, SEED_C2P);

/* A connection over 127.0.0.1: sv[0] accepted, sv[1] connected. */
static int build(void)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	socklen_t alen = sizeof(addr);
	int lsk, sv[2], one = 1;

	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lsk = socket(AF_INET, SOCK_STREAM, 0);
	if (lsk < 0)
		return zdtm_err("socket");
	if (bind(lsk, (struct sockaddr *)&addr, sizeof(addr)) || listen(lsk, 1) ||
	    getsockname(lsk, (struct sockaddr *)&addr, &alen))
		return zdtm_err("listen on 127.0.0.1 port 0");
	sv[1] = socket(AF_INET, SOCK_STREAM, 0);
	if (sv[1] < 0)
		return zdtm_err("socket");
	if (connect(sv[1], (struct sockaddr *)&addr, sizeof(addr)))
		return zdtm_err("connect to 127.0.0.1:%d", ntohs(addr.sin_port));
	sv[0] = accept(lsk, NULL, NULL);
	if (sv[0] < 0)
		return zdtm_err("accept on 127.0.0.1:%d", ntohs(addr.sin_port));
	close(lsk);
	if (setsockopt(sv[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)))
		return zdtm_err("TCP_NODELAY");
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
