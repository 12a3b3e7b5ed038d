/* Checksummed two-way traffic between a transition test and its child over a connected
 * socket pair, during C/R.
 *
 * SOCK_STREAM: each side writes a byte stream (byte i a function of i) in chunks of varying
 * size, and verifies every byte it reads at its stream position. SOCK_SEQPACKET: each side
 * sends sequence-numbered, checksummed messages of 16..4000 bytes, and checks every one
 * arrives whole, in order, none lost or duplicated. Both through non-blocking sockets.
 * At check the parent shuts down its sending side; the child reads to EOF, checks it got
 * exactly what the parent sent, and shuts down its own side; the parent reads to EOF and
 * checks it got exactly what the child sent.
 *
 *	static struct zdtm_stream st = ZDTM_STREAM(SOCK_STREAM, SEED_P2C, SEED_C2P);
 *	build:	socketpair(AF_UNIX, SOCK_STREAM, 0, sv); zdtm_stream_start(&st, sv[0], sv[1]);
 *	step:	zdtm_stream_step(&st);
 *	check:	zdtm_stream_check(&st, MIN_STEPS);
 */
#ifndef ZDTM_STREAM_H
#define ZDTM_STREAM_H

#include "zdtm.h"

/* One side of the traffic. */
struct zdtm_stream_end {
	const char *who;		/* "parent" or "child", in messages */
	int fd;
	uint64_t seed_out, seed_in;
	uint64_t sent, received;	/* bytes; messages on SOCK_SEQPACKET */
	uint64_t rnd;			/* chunk sizes of a byte stream */
	bool eof;
};

/* What each side sent, published in shared memory before it shuts down its sending side. */
struct zdtm_stream_totals {
	uint64_t parent_sent, child_sent;
	uint32_t parent_done, child_done;
};

struct zdtm_stream {
	int type;			/* SOCK_STREAM or SOCK_SEQPACKET */
	struct zdtm_stream_end parent, child;
	struct zdtm_stream_totals *tot;	/* shared with the child; NULL until started */
	pid_t pid;			/* the child; 0 once stopped */
	unsigned long steps;		/* the parent's steps */
};

#define ZDTM_STREAM(type_, seed_p2c, seed_c2p) {					\
	.type = (type_),								\
	.parent = { .who = "parent", .fd = -1, .seed_out = (seed_p2c),			\
		    .seed_in = (seed_c2p), .rnd = 1 },					\
	.child = { .who = "child", .fd = -1, .seed_out = (seed_c2p),			\
		   .seed_in = (seed_p2c), .rnd = 7 },					\
}

/* Start the child on child_fd (the parent keeps parent_fd, and closes child_fd): 0 or -1. */
int zdtm_stream_start(struct zdtm_stream *s, int parent_fd, int child_fd);
/* One step of the parent: send, receive and verify what is there. 0 or a recorded failure. */
int zdtm_stream_step(struct zdtm_stream *s);
/* Data went both ways already (the warm-up's goal). */
bool zdtm_stream_flowing(const struct zdtm_stream *s);
/* The whole check, safe when never started: at least min_steps, the socket's type, both
 * streams to EOF with exact totals, the child's own check; then no child is left. */
int zdtm_stream_check(struct zdtm_stream *s, unsigned long min_steps);

#endif
