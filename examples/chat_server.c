/*
 * A line-based chat server: every line a client sends goes to every other
 * client, prefixed with the sender's name ("user3: hello").
 *
 *   chat_server [-p PORT] [-a ADDR] [-w WORKERS] [-q QUEUE] [-i IDLE_SECONDS]
 *
 * -p 0 (the default) takes any free port; the line `listening on port N`
 * says which. SIGINT or SIGTERM stops it (exit status 0).
 *
 * One task per client, and one weft_select() in it: it waits for whichever
 * comes first, the client's socket becoming readable or a message in the
 * client's outbox (a channel that the other clients' tasks send to). No
 * second task per client, so no reference counting between a reader and
 * a writer, no shutdown() to wake a reader and no cancel of a writer stuck
 * on a slow client: the one task owns the socket, the outbox and the
 * client's entry in the table, and gives them all up when it leaves.
 *
 * Slow clients. A client that does not read its messages fills its outbox
 * (-q messages, default 64): a message that finds the outbox full makes
 * that client leave (its outbox is closed, and its task ends at its next
 * select), rather than making everyone else wait or queue memory for it.
 * A write to a client that is not reading ends after the idle time (-i,
 * default 60 s), as does a client that sends nothing for that long.
 *
 * Messages are shared: one allocation per line, a reference per outbox.
 *
 *   asyncio:                                 weft:
 *     asyncio.wait({read_task, queue_get},     weft_select(READABLE on the
 *                  return_when=FIRST_COMPLETED)  socket, RECV on the outbox)
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <weft.h>

#define MAX_CLIENTS 1024
#define LINE_MAX_LEN 1024

struct msg {
	atomic_int refs;
	size_t len;
	char text[];
};

struct client {
	int fd;
	unsigned id;
	weft_chan *outbox;
};

static const char *addr;    /* NULL: any IPv4 address */
static uint16_t port;       /* 0: any free port */
static size_t queue = 64;   /* -q: messages an outbox holds */
static uint64_t idle_ns = 60 * WEFT_NSEC_PER_SEC;

/* The clients, under `table`: a sender walks it while it holds the lock,
 * and a client leaves it before its outbox is destroyed, so no one sends
 * to an outbox that is gone. */
static weft_lock *table;
static struct client *clients[MAX_CLIENTS];
static unsigned next_id;

static void msg_unref(struct msg *m)
{
	if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
		free(m);
}

/* Sends "userN: line" to every client but `from`. A full outbox closes:
 * that client leaves at its next select. */
static void broadcast(const struct client *from, const char *line,
		      size_t len)
{
	struct msg *m = malloc(sizeof(*m) + len + 32);

	if (!m)
		return;
	m->len = (size_t)snprintf(m->text, 32, "user%u: ", from->id);
	memcpy(m->text + m->len, line, len);
	m->len += len;
	atomic_init(&m->refs, 1); /* ours, until the loop is done */
	if (weft_lock_acquire(table) < 0) { /* cancelled: the server stops */
		free(m);
		return;
	}
	for (unsigned i = 0; i < MAX_CLIENTS; i++) {
		struct client *c = clients[i];

		if (!c || c == from)
			continue;
		atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
		if (weft_chan_try_send(c->outbox, m) < 0) {
			msg_unref(m);
			weft_chan_close(c->outbox); /* too slow: let it go */
		}
	}
	weft_lock_release(table);
	msg_unref(m);
}

/* Takes the client into the table; false when it is full. */
static bool join(struct client *c)
{
	bool ok = false;

	if (weft_lock_acquire(table) < 0)
		return false;
	for (unsigned i = 0; i < MAX_CLIENTS && !ok; i++)
		if (!clients[i]) {
			clients[i] = c;
			c->id = ++next_id;
			ok = true;
		}
	weft_lock_release(table);
	return ok;
}

static void leave(struct client *c)
{
	void *v;

	/* Shielded: a stop's cancellation must not make the lock fail here,
	 * or the outbox would go while still in the table. */
	weft_shield_begin();
	weft_lock_acquire(table);
	for (unsigned i = 0; i < MAX_CLIENTS; i++)
		if (clients[i] == c)
			clients[i] = NULL;
	weft_lock_release(table);
	weft_shield_end();
	/* No one can send now: drop what is left, then the outbox. */
	while (weft_chan_try_recv(c->outbox, &v) == 0)
		msg_unref(v);
	weft_chan_destroy(c->outbox);
}

/* Reads what the client sent and broadcasts each complete line (a line
 * longer than LINE_MAX_LEN goes out in pieces). 0 to go on, -1 to leave. */
static int read_lines(struct client *c, char *buf, size_t *have)
{
	ssize_t n = weft_recv(c->fd, buf + *have, LINE_MAX_LEN - *have, 0);
	char *start = buf, *nl;

	if (n <= 0)
		return -1; /* closed, reset, idle too long, cancelled */
	*have += (size_t)n;
	while ((nl = memchr(start, '\n', *have - (size_t)(start - buf)))) {
		broadcast(c, start, (size_t)(nl - start) + 1);
		start = nl + 1;
	}
	*have -= (size_t)(start - buf);
	memmove(buf, start, *have);
	if (*have == LINE_MAX_LEN) {
		broadcast(c, buf, *have);
		*have = 0;
	}
	return 0;
}

static void *client_main(void *arg)
{
	struct client c = { .fd = (int)(intptr_t)arg };
	char buf[LINE_MAX_LEN];
	size_t have = 0;

	if (weft_chan_create(&c.outbox, queue) < 0 || !join(&c)) {
		if (c.outbox)
			weft_chan_destroy(c.outbox);
		weft_close(c.fd);
		return NULL;
	}
	for (;;) {
		struct weft_sel k[2] = {
			{ .op = WEFT_SEL_READABLE, .fd = c.fd },
			{ .chan = c.outbox, .op = WEFT_SEL_RECV },
		};
		uint64_t saved = weft_timeout_begin(idle_ns);
		int i = weft_select(k, 2, WEFT_NEVER), err = 0;

		if (i == 0) {
			err = read_lines(&c, buf, &have);
		} else if (i == 1 && k[1].result == 0) {
			struct msg *m = k[1].value;

			err = weft_write_all(c.fd, m->text, m->len, -1) < 0
				      ? -1
				      : 0;
			msg_unref(m);
		} else {
			err = -1; /* outbox closed (too slow), idle, stop */
		}
		weft_timeout_end(saved);
		if (err)
			break;
	}
	leave(&c);
	weft_close(c.fd);
	return NULL;
}

static void *amain(void *arg)
{
	struct weft_spawn_opts opts = { .name = "chat-client",
					.flags = WEFT_SPAWN_DETACHED };
	int lfd = -EADDRINUSE, err;

	(void)arg;
	if ((err = weft_lock_create(&table)) < 0) {
		fprintf(stderr, "chat_server: %s\n", weft_strerror(err));
		return (void *)1;
	}
	/* A restart right after a crash may find the port still held for a
	 * moment (http_server.c, listen_retry(), says why). */
	for (int i = 0; i < 100 && lfd == -EADDRINUSE; i++) {
		if (i)
			weft_sleep_ms(20);
		lfd = weft_tcp_listen(addr, port, 128, WEFT_SO_NODELAY);
	}
	if (lfd < 0) {
		fprintf(stderr, "chat_server: listen: %s\n",
			weft_strerror(lfd));
		return (void *)1;
	}
	printf("listening on port %d\n", weft_local_port(lfd));
	fflush(stdout);
	for (;;) {
		int cfd = weft_accept(lfd, NULL, NULL, 0);

		if (cfd == -ECANCELED)
			break; /* weft_stop(): SIGINT or SIGTERM */
		if (cfd < 0) {
			/* Out of descriptors, an aborted connection...:
			 * wait a little rather than spin. */
			weft_sleep_ms(10);
			continue;
		}
		if (weft_spawn_opts(NULL, client_main, (void *)(intptr_t)cfd,
				    &opts) < 0)
			weft_close(cfd);
	}
	weft_close(lfd);
	/* The client tasks are cancelled at the stop: each leaves the table
	 * and closes its socket. */
	return NULL;
}

static void usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s [-p PORT] [-a ADDR] [-w WORKERS] [-q QUEUE] "
		"[-i IDLE_SECONDS]\n",
		prog);
	exit(2);
}

int main(int argc, char **argv)
{
	struct weft_config cfg = { .flags = WEFT_RUN_STOP_ON_SIGNALS };
	void *res = NULL;
	int opt, err;

	while ((opt = getopt(argc, argv, "p:a:w:q:i:h")) != -1) {
		switch (opt) {
		case 'p':
			port = (uint16_t)atoi(optarg);
			break;
		case 'a':
			addr = optarg;
			break;
		case 'w':
			cfg.workers = (unsigned)atoi(optarg);
			break;
		case 'q':
			queue = (size_t)atol(optarg);
			if (!queue)
				usage(argv[0]);
			break;
		case 'i':
			idle_ns = (uint64_t)(atof(optarg) *
					     (double)WEFT_NSEC_PER_SEC);
			break;
		default:
			usage(argv[0]);
		}
	}
	err = weft_run(amain, NULL, &cfg, &res);
	weft_lock_destroy(table); /* every task has ended */
	if (err < 0 && err != -ECANCELED) {
		fprintf(stderr, "chat_server: %s\n", weft_strerror(err));
		return 1;
	}
	return res != NULL;
}
