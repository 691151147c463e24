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
 * The outbox is the first case: a client's task writes out what is
 * queued for it before it reads more from it, so a client that talks a
 * lot still hears the others, and its own flood waits in its socket.
 *
 * Slow clients. A client that does not keep up with what the others say
 * fills its outbox (-q messages, default 256): a message that finds the
 * outbox full makes that client leave (as an IRC server's "SendQ
 * exceeded"), rather than making everyone else wait or queue memory for
 * it: its socket is shut down, so its task's next read or write fails at
 * once and it leaves. Before that, a talker whose lines fill someone's
 * outbox past half is slowed down (flood control, in lines()), so a
 * listener that reads as fast as it can keeps up with any talker. A write
 * to a client that is not reading ends after the idle time (-i, default
 * 60 s), as does a client that sends nothing for that long.
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
#include <sys/socket.h>
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
static size_t queue = 256;  /* -q: messages an outbox holds */
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

/* Sends "userN: line" to every client but `from`; a client whose outbox
 * is full is shut down (see Slow clients). Returns the fullest outbox's
 * length (before this line), for the sender's flood control. */
static size_t broadcast(const struct client *from, const char *line,
			size_t len)
{
	struct msg *m = malloc(sizeof(*m) + len + 32);
	size_t fullest = 0;

	if (!m)
		return 0;
	m->len = (size_t)snprintf(m->text, 32, "user%u: ", from->id);
	memcpy(m->text + m->len, line, len);
	m->len += len;
	atomic_init(&m->refs, 1); /* ours, until the loop is done */
	/* Outside any deadline scope: only the server's stop (a
	 * cancellation) makes this fail, and then nobody is listening. */
	if (weft_lock_acquire(table) < 0) {
		free(m);
		return 0;
	}
	for (unsigned i = 0; i < MAX_CLIENTS; i++) {
		struct client *c = clients[i];

		if (!c || c == from)
			continue;
		if (weft_chan_len(c->outbox) > fullest)
			fullest = weft_chan_len(c->outbox);
		atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
		if (weft_chan_try_send(c->outbox, m) < 0) {
			/* Too slow: let it go. Its descriptor stays open
			 * while it is in the table (we hold the lock). */
			msg_unref(m);
			weft_shutdown(c->fd, SHUT_RDWR);
		}
	}
	weft_lock_release(table);
	msg_unref(m);
	return fullest;
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

/* Broadcasts each complete line of the n bytes just read into buf after
 * the *have kept from before; keeps the partial line at the front (a line
 * longer than LINE_MAX_LEN goes out in pieces). */
static void lines(struct client *c, char *buf, size_t *have, size_t n)
{
	char *start = buf, *nl;
	size_t fullest = 0, f;

	*have += n;
	while ((nl = memchr(start, '\n', *have - (size_t)(start - buf)))) {
		f = broadcast(c, start, (size_t)(nl - start) + 1);
		fullest = f > fullest ? f : fullest;
		start = nl + 1;
	}
	*have -= (size_t)(start - buf);
	memmove(buf, start, *have);
	if (*have == LINE_MAX_LEN) {
		f = broadcast(c, buf, *have);
		fullest = f > fullest ? f : fullest;
		*have = 0;
	}
	/* Flood control: while someone's outbox is half full, the talker
	 * slows down (a millisecond per read), which gives the listeners'
	 * tasks time to write; only a listener that still cannot keep up
	 * is let go. */
	if (fullest > queue / 2)
		weft_sleep_ms(1);
}

/* Writes m and whatever else the outbox holds, gathered in a buffered
 * writer: one write for a batch, so a client's task keeps up with a
 * sender that reads many lines per receive. > 0, or the write's error. */
static ssize_t write_out(struct client *c, struct msg *m)
{
	struct weft_writer w;
	char wbuf[16384];
	void *v;
	int err, more = 64; /* a batch at most: then the socket's turn */

	weft_writer_init(&w, c->fd, wbuf, sizeof wbuf);
	err = weft_writer_write(&w, m->text, m->len);
	msg_unref(m);
	while (!err && more-- && weft_chan_try_recv(c->outbox, &v) == 0) {
		m = v;
		err = weft_writer_write(&w, m->text, m->len);
		msg_unref(m);
	}
	if (!err)
		err = weft_writer_flush(&w);
	return err ? err : 1;
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
			{ .chan = c.outbox, .op = WEFT_SEL_RECV },
			{ .op = WEFT_SEL_READABLE, .fd = c.fd },
		};
		/* The wait, the read and the write: each at most idle_ns. */
		uint64_t saved = weft_timeout_begin(idle_ns);
		int i = weft_select(k, 2, WEFT_NEVER);
		ssize_t n = -1;

		if (i == 0 && k[0].result == 0)
			n = write_out(&c, k[0].value);
		else if (i == 1)
			n = weft_recv(c.fd, buf + have, LINE_MAX_LEN - have, 0);
		weft_timeout_end(saved);
		/* <= 0: closed, reset, shut down as too slow, idle for too
		 * long, or the server stops (cancelled). */
		if (n <= 0)
			break;
		if (i == 1)
			lines(&c, buf, &have, (size_t)n);
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
