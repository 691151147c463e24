/*
 * The task registry's reading half: weft_tasks_foreach(), weft_dump(),
 * the dump signal and the deadlock check (the fields and who writes them:
 * debug.h).
 *
 * Reading a task from another thread
 * ----------------------------------
 * Control blocks are type-stable (task.c): every block of a slab stays a
 * control block until the runtime ends, so the walk reads every block of
 * every slab (weft__task_blocks) and never faults. A block is a snapshot
 * only if it holds the same task from before the copy to after it, which
 * the handle tells (a seqlock whose sequence is the handle): the handle's
 * generation changes each time the block returns to the pool, and the
 * park state leaves FREE (release, task_start) only after every spawn
 * field is written. So: load the handle and the park state (acquire),
 * skip FREE; copy the fields; an acquire fence; load the handle and the
 * park state again; a changed handle or FREE means the block was ended
 * (and maybe reused) meanwhile, and the copy is dropped. Fields that are
 * not atomics (name, site, sp, the stack) are copied with plain loads
 * that ThreadSanitizer is told not to see (rd_* below): what they race
 * with is exactly what the re-check throws away, the seqlock reader's
 * usual bargain. The parked task's stack is read through
 * process_vm_readv() on our own process, which fails with EFAULT instead
 * of faulting if the stack went back to the kernel meanwhile, and which
 * neither sanitizer sees; the frames are kept only if the task's saved
 * stack pointer is the same after the walk (it did not run meanwhile).
 *
 * Backtraces: frame pointers, not libunwind
 * ------------------------------------------
 * A parked task's frames start at its saved context (the x86_64 and
 * aarch64 ctx.S of runtime/arch: the return address and the frame pointer
 * are at fixed slots of the switch frame), and go up the chain of saved
 * frame pointers. libunwind was the other choice: its unw_init_local()
 * unwinds the calling thread, so a parked stack needs Tarantool's trick
 * (switch onto that stack, take a context there, switch back), which runs
 * on a stack another worker may resume at any moment unless the park
 * protocol gets a state that pins the task during the walk; and it is one
 * more dependency. The chain walk only reads memory, never stops or pins
 * the task, and a task that runs meanwhile is detected (its saved sp
 * changed) and flagged. Its limit: code built without frame pointers keeps
 * rbp (x29) as a callee-saved register, so the walk passes over such
 * frames (the runtime's own, in a Release build, are skipped that way) and
 * shows the nearest caller that keeps a frame pointer; a program built
 * with -fno-omit-frame-pointer shows all of its own. Each frame must lie
 * above the last, inside the task's stack, aligned; the walk stops at
 * anything else.
 *
 * The dump thread
 * ---------------
 * A runtime with a dump signal or WEFT_RUN_ABORT_ON_DEADLOCK gets one
 * thread (started with the runtime, joined before its workers stop). The
 * signal handler only writes to the thread's eventfd (write(2) is
 * async-signal-safe); the thread prints. For the deadlock check it wakes
 * every 100 ms.
 *
 * The deadlock check
 * ------------------
 * A runtime is reported stuck when a walk finds live tasks, all parked,
 * none on a kind that something other than a task of the runtime ends
 * (I/O, a stream, a sleep, the blocking pool, a select with descriptor
 * cases, a wait without a recorded reason) and none with a deadline; the
 * dump says "all tasks are asleep - deadlock?". The abort (the flag) needs
 * more, because a thread outside the runtime may hold a channel, an event
 * or a task's handle and use it later, which no walk can see, nor any
 * cheap mark (a thread that has not touched the runtime yet): so the
 * abort requires that no such thread exists. The runtime is weft_run()'s
 * (its caller is worker 0), and the process has exactly the runtime's own
 * threads (/proc/self/status Threads: workers, blocking-pool threads,
 * this one and the stall watchdog if stall reports are on);
 * WEFT_RUN_STOP_ON_SIGNALS is off (a signal cancels main); and
 * the state holds for ten checks in a row (a second) with no task
 * switched in on any worker meanwhile (the workers' tick counts
 * unchanged). A new thread could then come only from a task (all
 * parked), a blocking-pool job (none pending: that task would not be
 * stuck) or a signal handler (weft's calls are not async-signal-safe).
 * docs/debugging.md states it for the program.
 */
#include <dlfcn.h>
#include <link.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "base.h"
#include "debug.h"
#include "lq.h"
#include "mem.h"
#include "pool.h"
#include "runtime.h"
#include "stack.h"
#include "stall.h"
#include "task.h"
#include "worker.h"

const char *const weft__debug_wait_names[WEFT__W_COUNT] = {
	[WEFT__W_NONE] = "",
	[WEFT__W_SLEEP] = "sleep",
	[WEFT__W_IO] = "io",
	[WEFT__W_IO_EPOLL] = "io (epoll)",
	[WEFT__W_STREAM] = "stream recv",
	[WEFT__W_CHAN_SEND] = "chan send",
	[WEFT__W_CHAN_RECV] = "chan recv",
	[WEFT__W_CHAN_JOIN] = "chan join",
	[WEFT__W_SELECT] = "select",
	[WEFT__W_LOCK] = "lock",
	[WEFT__W_SEM] = "semaphore",
	[WEFT__W_COND] = "cond wait",
	[WEFT__W_EVENT] = "event wait",
	[WEFT__W_FUTURE] = "future wait",
	[WEFT__W_AWAIT] = "await",
	[WEFT__W_WAITSET] = "waitset",
	[WEFT__W_GROUP] = "group wait",
	[WEFT__W_BLOCKING] = "run_blocking",
	[WEFT__W_BCAST] = "bcast recv",
	[WEFT__W_OTHER] = "wait",
};

_Static_assert((int)WEFT__W_OTHER == (int)WEFT_WAIT_OTHER,
	       "wait kinds = weft.h's");
_Static_assert((int)WEFT__W_BLOCKING == (int)WEFT_WAIT_BLOCKING, "wait kinds");

#define MAX_FRAMES 24

/* A snapshot of one task (foreach's info plus what the dump needs). */
struct snap {
	struct weft_task_info info;
	struct weft__tcb *t;
	const void *fn;       /* the task's function */
	unsigned nframes;
	void *frames[MAX_FRAMES];
	bool moved;           /* it ran while its stack was read */
	unsigned guessed;     /* frames from this index on were guessed */
	bool started;         /* it has a stack (has run) */
	/* The dump: the spawn site's text, copied while the task was seen
	 * (weft.h: a site lives as long as its task, which may end before
	 * the dump prints). */
	char site[96];
};

#ifdef WEFT__REGISTRY

/* ---- reading what another thread writes --------------------------------
 * Plain loads ThreadSanitizer does not instrument (the seqlock above
 * argues why what they read is either right or thrown away). */
#if defined(WEFT__TSAN)
#define NO_TSAN __attribute__((no_sanitize("thread"), noinline))
#else
#define NO_TSAN
#endif

static NO_TSAN uintptr_t rd_word(const void *p)
{
	return *(const volatile uintptr_t *)p;
}

static NO_TSAN uint32_t rd_u32(const uint32_t *p)
{
	return *(const volatile uint32_t *)p;
}

static NO_TSAN void rd_bytes(void *dst, const void *src, size_t n)
{
	const volatile unsigned char *s = src;
	unsigned char *d = dst;

	while (n--)
		*d++ = *s++;
}

/* n bytes at a (maybe unmapped) address of this process; false if not
 * readable. */
static bool peek(void *dst, uintptr_t addr, size_t n)
{
	struct iovec l = { dst, n }, r = { (void *)addr, n };

	return process_vm_readv(getpid(), &l, 1, &r, 1, 0) == (ssize_t)n;
}

/* A string of up to n - 1 bytes at addr (maybe unmapped: read page by
 * page), cut at n - 1; "" if none of it is readable. */
static void peek_str(char *dst, size_t n, uintptr_t addr)
{
	size_t got = 0, ps = (size_t)sysconf(_SC_PAGESIZE);

	dst[0] = '\0';
	while (got < n - 1) {
		size_t want = ps - ((addr + got) & (ps - 1));

		if (want > n - 1 - got)
			want = n - 1 - got;
		if (!peek(dst + got, addr + got, want))
			break;
		if (memchr(dst + got, '\0', want))
			return;
		got += want;
	}
	dst[got] = '\0';
}

/* The saved context's frames: the return address into the runtime, then
 * the frame-pointer chain, kept inside [lo, hi). */
static unsigned unwind(uintptr_t sp, uintptr_t lo, uintptr_t hi,
		       void **frames)
{
	uintptr_t fp, ra, pair[2];
	unsigned n = 0;

	if (sp < lo || sp + 64 > hi)
		return 0;
#if defined(__x86_64__)
	/* ctx.S: [48] rbp, [56] return address. */
	if (!peek(pair, sp + 48, sizeof(pair)))
		return 0;
	fp = pair[0];
	ra = pair[1];
#elif defined(__aarch64__)
	/* ctx.S: [80] x29, [88] x30 (maybe signed: the top bits go). */
	if (!peek(pair, sp + 80, sizeof(pair)))
		return 0;
	fp = pair[0];
	ra = pair[1] & 0x0000ffffffffffffull;
#else
	return 0;
#endif
	frames[n++] = (void *)ra;
	/* Each frame: [fp] the caller's fp, [fp + 8] the return address;
	 * frames go up the stack. Stops at anything else. */
	while (n < MAX_FRAMES && fp > sp && fp >= lo && fp + 16 <= hi &&
	       !(fp & 7)) {
		if (!peek(pair, fp, sizeof(pair)))
			break;
#if defined(__aarch64__)
		pair[1] &= 0x0000ffffffffffffull;
#endif
		if (!pair[1])
			break;
		frames[n++] = (void *)pair[1];
		sp = fp;
		fp = pair[0];
	}
	return n;
}

/* ---- guessing frames ------------------------------------------------------
 * Code built without frame pointers (a Release build of the runtime
 * itself) may use rbp (x29) for data, and the chain ends at frame #0. Then
 * the stack is scanned instead, as the kernel's unreliable traces do:
 * each word from the switch frame up (4 KiB at most) that points into an
 * executable segment just after a call instruction is taken for a return
 * address. The dump marks such frames with "?": a stale return address
 * left in a dead frame reads the same. */

struct xrange {
	uintptr_t lo, hi;
};

#define MAX_XRANGES 64

static int xrange_add(struct dl_phdr_info *info, size_t size, void *arg);

/* Whether the instruction before ra is a call. */
static bool after_call(uintptr_t ra)
{
#if defined(__x86_64__)
	uint8_t b[7];

	if (ra < 7 || !peek(b, ra - 7, sizeof(b)))
		return false;
	return b[2] == 0xe8 ||                                 /* call rel32 */
	       (b[5] == 0xff && ((b[6] >> 3) & 7) == 2) ||     /* call *%r */
	       (b[4] == 0xff && ((b[5] >> 3) & 7) == 2) ||     /* disp8 */
	       (b[1] == 0xff && ((b[2] >> 3) & 7) == 2) ||     /* disp32 */
	       (b[0] == 0x41 && b[1] == 0xff && ((b[2] >> 3) & 7) == 2);
#elif defined(__aarch64__)
	uint32_t ins;

	if (ra < 4 || !peek(&ins, ra - 4, sizeof(ins)))
		return false;
	return (ins & 0xfc000000u) == 0x94000000u ||          /* bl */
	       (ins & 0xfffffc1fu) == 0xd63f0000u;            /* blr */
#else
	(void)ra;
	return false;
#endif
}

/* ---- snapshots -------------------------------------------------------- */

struct walk {
	struct weft_runtime *rt;
	struct weft__tcb **current; /* each worker's current task */
	bool frames;                /* the dump: unwind stacks too */
	uint64_t now_ns;
	/* foreach: */
	weft_task_visit_fn fn;
	void *arg;
	int res;
	/* the dump: executable segments (frame guessing) */
	struct xrange x[MAX_XRANGES];
	unsigned nx;
	/* the dump: */
	struct snap *v;
	size_t n, cap;
	bool nomem;
};

/* The full moment of a wait word's start: its top bits from now. */
static int xrange_add(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct walk *k = arg;
	int i;

	(void)size;
	for (i = 0; i < info->dlpi_phnum && k->nx < MAX_XRANGES; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];

		if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
			continue;
		k->x[k->nx].lo = info->dlpi_addr + ph->p_vaddr;
		k->x[k->nx].hi = k->x[k->nx].lo + ph->p_memsz;
		k->nx++;
	}
	return 0;
}

static bool in_text(const struct walk *k, uintptr_t a)
{
	unsigned i;

	for (i = 0; i < k->nx; i++)
		if (a >= k->x[i].lo && a < k->x[i].hi)
			return true;
	return false;
}

/* Frames after #0 guessed from the stack's words (see above). */
static unsigned guess(const struct walk *k, uintptr_t sp, uintptr_t hi,
		      void **frames, unsigned n)
{
	uintptr_t buf[512];
	size_t len = hi - sp, i;

	if (len > sizeof(buf))
		len = sizeof(buf);
	len &= ~(size_t)7;
	if (len <= 64 || !peek(buf, sp, len))
		return n;
	/* From above the switch frame (64 bytes on both). */
	for (i = 8; i < len / 8 && n < MAX_FRAMES; i++) {
		uintptr_t w = buf[i];

#if defined(__aarch64__)
		w &= 0x0000ffffffffffffull;
#endif
		if (in_text(k, w) && after_call(w) &&
		    (void *)w != frames[n - 1])
			frames[n++] = (void *)w;
	}
	return n;
}

static uint64_t wait_since(const struct walk *k, uint64_t word)
{
	uint64_t low = word >> WEFT__W_SHIFT;
	uint64_t span = UINT64_C(1) << (64 - WEFT__W_SHIFT);
	uint64_t c = (k->now_ns & ~(span - 1)) | low;

	if (c > k->now_ns)
		c -= span;
	return c;
}

/* Kinds whose wait_what is a number (the others: an object). */
static bool wait_has_number(unsigned kind)
{
	return kind == WEFT__W_SLEEP || kind == WEFT__W_IO ||
	       kind == WEFT__W_IO_EPOLL || kind == WEFT__W_STREAM ||
	       kind == WEFT__W_SELECT;
}

/* A snapshot of block t; false if it is free or changed during the copy. */
static bool snap_take(struct walk *k, struct weft__tcb *t, struct snap *s)
{
	uint64_t h = atomic_load_explicit(&t->handle, memory_order_acquire);
	int park = atomic_load_explicit(&t->park, memory_order_acquire);
	uintptr_t sp = 0, lo = 0, hi = 0;
	struct weft__stack *stk;
	struct weft__task_side *side;
	uint64_t word, since, what;
	unsigned i;

	if (park == WEFT__FREE || !h ||
	    atomic_load_explicit(&t->done, memory_order_acquire))
		return false;
	memset(s, 0, sizeof(*s));
	s->t = t;
	s->info.task = (weft_task *)(uintptr_t)h;
	s->info.id = (h >> WEFT__H_GEN_BITS) - WEFT__CB_SLAB;
	rd_bytes(s->info.name, t->name, sizeof(s->info.name));
	s->info.name[sizeof(s->info.name) - 1] = '\0';
	s->info.site = (const char *)rd_word(&t->site);
	s->fn = (const void *)rd_word(&t->fn);
	{
		/* spawn_ms: the low 32 bits of the moment >> 20; the rest
		 * from now (a task younger than 52 days). */
		uint64_t now = k->now_ns >> WEFT__SPAWN_SHIFT, ms;
		uint32_t low = rd_u32(&t->spawn_ms);

		ms = (now & ~UINT64_C(0xffffffff)) | low;
		if (ms > now)
			ms -= UINT64_C(1) << 32;
		s->info.spawn_ns = ms << WEFT__SPAWN_SHIFT;
	}
	/* The side entry of a block whose handle was read: the index in
	 * the handle is fixed for the block's life (task.h). */
	side = weft__task_side(t);
	word = atomic_load_explicit(&side->wait_word, memory_order_acquire);
	what = atomic_load_explicit(&side->wait_what, memory_order_relaxed);
	s->info.worker = -1;
	for (i = 0; i < k->rt->nworkers; i++)
		if (k->current[i] == t)
			s->info.worker = (int)i;
	if (s->info.worker >= 0) {
		s->info.state = WEFT_TASK_RUNNING;
	} else if (park == WEFT__PARKED || park == WEFT__PARKING) {
		s->info.state = WEFT_TASK_PARKED;
	} else {
		s->info.state = WEFT_TASK_RUNNABLE;
	}
	if (s->info.state == WEFT_TASK_PARKED) {
		unsigned kind = (unsigned)(word & WEFT__W_KIND_MASK);

		if (kind == WEFT__W_NONE || kind >= WEFT__W_COUNT)
			kind = WEFT__W_OTHER;
		s->info.wait = (int)kind;
		s->info.timed = (word & WEFT__W_TIMED) != 0;
		if (wait_has_number(kind))
			s->info.wait_arg = (int64_t)what;
		else
			s->info.wait_obj = (const void *)(uintptr_t)what;
		since = word >> WEFT__W_SHIFT ? wait_since(k, word) : k->now_ns;
		s->info.wait_ns = k->now_ns > since ? k->now_ns - since : 0;
	}
	s->info.wait_name = weft__debug_wait_names[s->info.wait];
	if (k->frames && s->info.site)
		peek_str(s->site, sizeof(s->site), (uintptr_t)s->info.site);
	if (k->frames && s->info.state != WEFT_TASK_RUNNING) {
		sp = rd_word(&t->sp);
		s->started = sp != 0;
		stk = (struct weft__stack *)rd_word(&t->stack);
		if (sp && stk && peek(&lo, (uintptr_t)&stk->lo, sizeof(lo)) &&
		    peek(&hi, (uintptr_t)&stk->size, sizeof(hi))) {
			hi += lo;
			s->nframes = unwind(sp, lo, hi, s->frames);
			s->guessed = MAX_FRAMES;
			if (s->nframes > 0 && s->nframes < 3) {
				s->guessed = 1;
				s->nframes = guess(k, sp, hi, s->frames, 1);
			}
		}
	}
	atomic_thread_fence(memory_order_acquire);
	if (atomic_load_explicit(&t->handle, memory_order_relaxed) != h ||
	    atomic_load_explicit(&t->park, memory_order_relaxed) ==
		    WEFT__FREE)
		return false;
	if (s->info.wait == WEFT__W_AWAIT && s->info.wait_obj) {
		/* The awaited block's handle: the program's name for it. */
		const struct weft__tcb *a = s->info.wait_obj;

		s->info.wait_obj = (const void *)(uintptr_t)atomic_load_explicit(
			&a->handle, memory_order_relaxed);
	}
	if (k->frames && s->nframes && rd_word(&t->sp) != sp)
		s->moved = true; /* it ran meanwhile: frames may be mixed */
	return true;
}

static void visit(struct weft__tcb *t, void *arg)
{
	struct walk *k = arg;
	struct snap s;

	if (k->res || k->nomem)
		return;
	if (!snap_take(k, t, &s))
		return;
	if (k->fn) {
		k->res = k->fn(&s.info, k->arg);
		return;
	}
	if (k->n == k->cap) {
		size_t cap = k->cap ? 2 * k->cap : 64;
		struct snap *v = realloc(k->v, cap * sizeof(*v));

		if (!v) {
			k->nomem = true;
			return;
		}
		k->v = v;
		k->cap = cap;
	}
	k->v[k->n++] = s;
}

static int walk(struct weft_runtime *rt, struct walk *k)
{
	struct weft__tcb **cur;
	unsigned i;
	int err;

	cur = malloc(rt->nworkers * sizeof(*cur));
	if (!cur)
		return -ENOMEM;
	k->rt = rt;
	k->now_ns = weft_now();
	for (i = 0; i < rt->nworkers; i++)
		cur[i] = (struct weft__tcb *)rd_word(&rt->workers[i]->current);
	k->current = cur;
	weft__task_blocks(rt, visit, k);
	err = k->nomem ? -ENOMEM : k->res;
	k->current = NULL;
	free(cur);
	return err;
}

/* A call from the program reads rt's workers and slabs, which
 * weft__runtime_release() frees (a closed runtime's handle stays valid
 * until weft_runtime_destroy()): it counts itself in under life_lock, or
 * gets -ESHUTDOWN once the release has begun; the release waits for the
 * count to drop (weft__debug_release). The dump thread does not count:
 * it is joined before the release. */
static int reader_enter(struct weft_runtime *rt)
{
	int err = 0;

	pthread_mutex_lock(&rt->life_lock);
	if (rt->dbg_gone)
		err = -ESHUTDOWN;
	else
		rt->dbg_readers++;
	pthread_mutex_unlock(&rt->life_lock);
	return err;
}

static void reader_leave(struct weft_runtime *rt)
{
	pthread_mutex_lock(&rt->life_lock);
	if (!--rt->dbg_readers && rt->dbg_gone)
		pthread_cond_broadcast(&rt->life_cond);
	pthread_mutex_unlock(&rt->life_lock);
}

void weft__debug_release(struct weft_runtime *rt)
{
	pthread_mutex_lock(&rt->life_lock);
	rt->dbg_gone = true;
	while (rt->dbg_readers)
		pthread_cond_wait(&rt->life_cond, &rt->life_lock);
	pthread_mutex_unlock(&rt->life_lock);
}

int weft_tasks_foreach(weft_runtime *rt, weft_task_visit_fn fn, void *arg)
{
	struct walk k;
	int err;

	if (!rt)
		rt = weft_runtime_self();
	if (!rt || !fn)
		return -EINVAL;
	err = reader_enter(rt);
	if (err < 0)
		return err;
	memset(&k, 0, sizeof(k));
	k.fn = fn;
	k.arg = arg;
	err = walk(rt, &k);
	reader_leave(rt);
	return err;
}

/* ---- the dump --------------------------------------------------------- */

/* Orders snapshots by state, then wait kind, then longest wait first. */
static int snap_cmp(const void *a, const void *b)
{
	const struct snap *x = a, *y = b;

	if (x->info.state != y->info.state)
		return x->info.state < y->info.state ? -1 : 1;
	if (x->info.wait != y->info.wait)
		return x->info.wait < y->info.wait ? -1 : 1;
	if (x->info.wait_ns != y->info.wait_ns)
		return x->info.wait_ns > y->info.wait_ns ? -1 : 1;
	return x->info.id < y->info.id ? -1 : x->info.id > y->info.id;
}

/* "1.5 ms", "3.2 s", "4 minutes". */
static void fmt_dur(char *b, size_t n, uint64_t ns)
{
	if (ns < WEFT_NSEC_PER_USEC)
		snprintf(b, n, "%" PRIu64 " ns", ns);
	else if (ns < WEFT_NSEC_PER_MSEC)
		snprintf(b, n, "%.1f us", (double)ns / 1e3);
	else if (ns < WEFT_NSEC_PER_SEC)
		snprintf(b, n, "%.1f ms", (double)ns / 1e6);
	else if (ns < 120 * WEFT_NSEC_PER_SEC)
		snprintf(b, n, "%.1f s", (double)ns / 1e9);
	else
		snprintf(b, n, "%" PRIu64 " minutes",
			 ns / (60 * WEFT_NSEC_PER_SEC));
}

/* io_uring opcodes a task waits on, by number (liburing's io_uring.h). */
static const char *io_op_name(unsigned op)
{
	static const char *const names[] = {
		"nop", "readv", "writev", "fsync", "read_fixed", "write_fixed",
		"poll", "poll_remove", "sync_file_range", "sendmsg", "recvmsg",
		"timeout", "timeout_remove", "accept", "async_cancel",
		"link_timeout", "connect", "fallocate", "openat", "close",
		"files_update", "statx", "read", "write", "fadvise", "madvise",
		"send", "recv", "openat2", "epoll_ctl", "splice",
		"provide_buffers", "remove_buffers", "tee", "shutdown",
		"renameat", "unlinkat", "mkdirat", "symlinkat", "linkat",
		"msg_ring", "fsetxattr", "setxattr", "fgetxattr", "getxattr",
		"socket", "uring_cmd", "send_zc", "sendmsg_zc", "read_multishot",
		"waitid", "futex_wait", "futex_wake", "futex_waitv",
		"fixed_fd_install", "ftruncate", "bind", "listen",
	};

	return op < sizeof(names) / sizeof(names[0]) ? names[op] : "op";
}

/* The bracket's words: "chan recv 0x55...", "sleep until +12.3 ms"... */
static void fmt_wait(char *b, size_t n, const struct walk *k,
		     const struct snap *s, const struct snap *all,
		     size_t nall)
{
	const struct weft_task_info *i = &s->info;
	char d[32];
	size_t j;

	switch (i->wait) {
	case WEFT__W_SLEEP: {
		uint64_t dl = (uint64_t)i->wait_arg;

		fmt_dur(d, sizeof(d), dl > k->now_ns ? dl - k->now_ns : 0);
		snprintf(b, n, "sleep until +%s", d);
		break;
	}
	case WEFT__W_IO:
		snprintf(b, n, "%s fd %d (io_uring)",
			 io_op_name((unsigned)((uint64_t)i->wait_arg >> 32)),
			 (int)(uint32_t)i->wait_arg);
		break;
	case WEFT__W_IO_EPOLL:
		snprintf(b, n, "fd %d %s (epoll)", (int)(uint32_t)i->wait_arg,
			 ((uint64_t)i->wait_arg >> 32) & 0x4 ? "writable"
							      : "readable");
		break;
	case WEFT__W_STREAM:
		snprintf(b, n, "stream recv fd %d", (int)i->wait_arg);
		break;
	case WEFT__W_SELECT:
		snprintf(b, n, "select%s", i->wait_arg ? " (with fds)" : "");
		break;
	case WEFT__W_AWAIT:
		for (j = 0; j < nall; j++)
			if ((const void *)all[j].info.task == i->wait_obj)
				break;
		if (j < nall)
			snprintf(b, n, "await task %" PRIu64 " '%s'",
				 all[j].info.id, all[j].info.name);
		else
			snprintf(b, n, "await task %p", i->wait_obj);
		break;
	case WEFT__W_BLOCKING: {
		Dl_info dl;

		if (i->wait_obj && dladdr(i->wait_obj, &dl) && dl.dli_sname)
			snprintf(b, n, "run_blocking %s", dl.dli_sname);
		else
			snprintf(b, n, "run_blocking %p", i->wait_obj);
		break;
	}
	case WEFT__W_OTHER:
		snprintf(b, n, "wait");
		break;
	default:
		snprintf(b, n, "%s %p", i->wait_name, i->wait_obj);
	}
}

static void put_frame(FILE *out, unsigned idx, void *pc, bool guessed)
{
	const char *q = guessed ? " ?" : "";
	Dl_info dl;
	const char *file = "?";

	if (dladdr(pc, &dl)) {
		file = dl.dli_fname ? strrchr(dl.dli_fname, '/') : NULL;
		file = file ? file + 1 : (dl.dli_fname ? dl.dli_fname : "?");
		if (dl.dli_sname) {
			fprintf(out, "\t#%u %p %s+0x%lx (%s)%s\n", idx, pc,
				dl.dli_sname,
				(unsigned long)((char *)pc -
						(char *)dl.dli_saddr),
				file, q);
			return;
		}
		fprintf(out, "\t#%u %p (%s+0x%lx)%s\n", idx, pc, file,
			(unsigned long)((char *)pc - (char *)dl.dli_fbase), q);
		return;
	}
	fprintf(out, "\t#%u %p%s\n", idx, pc, q);
}

/* Whether snapshot s waits on something only a task of the runtime can
 * end (the deadlock check: see the top). */
static bool stuck_kind(const struct snap *s)
{
	if (s->info.state != WEFT_TASK_PARKED || s->info.timed)
		return false;
	switch (s->info.wait) {
	case WEFT__W_CHAN_SEND:
	case WEFT__W_CHAN_RECV:
	case WEFT__W_CHAN_JOIN:
	case WEFT__W_LOCK:
	case WEFT__W_SEM:
	case WEFT__W_COND:
	case WEFT__W_EVENT:
	case WEFT__W_FUTURE:
	case WEFT__W_AWAIT:
	case WEFT__W_WAITSET:
	case WEFT__W_GROUP:
	case WEFT__W_BCAST:
		return true;
	case WEFT__W_SELECT:
		return s->info.wait_arg == 0;
	default:
		return false;
	}
}

/* Every task parked on a stuck kind (and at least one task). */
static bool all_stuck(const struct snap *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!stuck_kind(&v[i]))
			return false;
	return n > 0;
}

static int dump(struct weft_runtime *rt, FILE *out, bool *stuck)
{
	struct walk k;
	size_t i, j;
	char b[160], d[32];
	int err;

	memset(&k, 0, sizeof(k));
	k.frames = true;
	dl_iterate_phdr(xrange_add, &k);
	err = walk(rt, &k);
	if (err < 0) {
		free(k.v);
		return err;
	}
	if (k.n)
		qsort(k.v, k.n, sizeof(*k.v), snap_cmp);
	flockfile(out);
	fprintf(out, "weft dump: runtime %p, %u workers, %zu tasks\n",
		(void *)rt, rt->nworkers, k.n);
	for (i = 0; i < rt->nworkers; i++) {
		struct weft__worker *w = rt->workers[i];
		struct weft__tcb *cur =
			(struct weft__tcb *)rd_word(&w->current);
		unsigned q = atomic_load_explicit(&w->lq.tail,
						  memory_order_relaxed) -
			     atomic_load_explicit(&w->lq.head,
						  memory_order_relaxed);

		if (q > WEFT__LQ_SIZE)
			q = 0; /* read across an update */
		fprintf(out, "worker %zu: ", i);
		for (j = 0; cur && j < k.n; j++)
			if (k.v[j].t == cur)
				break;
		if (cur && j < k.n)
			fprintf(out, "running task %" PRIu64 " '%s'",
				k.v[j].info.id, k.v[j].info.name);
		else
			fprintf(out, cur ? "running" : "idle");
		fprintf(out, ", %u queued%s\n", q,
			atomic_load_explicit(&w->next, memory_order_relaxed)
				? " + next"
				: "");
	}
	for (i = 0; i < k.n; i++) {
		const struct snap *s = &k.v[i];
		const struct weft_task_info *t = &s->info;

		/* A group header per (state, wait kind). */
		if (!i || s->info.state != k.v[i - 1].info.state ||
		    s->info.wait != k.v[i - 1].info.wait) {
			for (j = i; j < k.n &&
				    k.v[j].info.state == t->state &&
				    k.v[j].info.wait == t->wait;
			     j++)
				;
			fprintf(out, "\n-- %s%s%s: %zu task%s --\n",
				t->state == WEFT_TASK_RUNNING ? "running"
				: t->state == WEFT_TASK_RUNNABLE ? "runnable"
								  : "parked",
				t->state == WEFT_TASK_PARKED ? ", " : "",
				t->state == WEFT_TASK_PARKED ? t->wait_name
							      : "",
				j - i, j - i == 1 ? "" : "s");
		}
		if (t->state == WEFT_TASK_PARKED) {
			fmt_wait(b, sizeof(b), &k, s, k.v, k.n);
			fmt_dur(d, sizeof(d), t->wait_ns);
			fprintf(out, "task %" PRIu64 " '%s' [%s, %s%s]:\n",
				t->id, t->name, b, d,
				t->timed ? ", with deadline" : "");
		} else if (t->state == WEFT_TASK_RUNNING) {
			fprintf(out, "task %" PRIu64 " '%s' [running on worker %d]:\n",
				t->id, t->name, t->worker);
		} else {
			fprintf(out, "task %" PRIu64 " '%s' [runnable]:\n",
				t->id, t->name);
		}
		fmt_dur(d, sizeof(d),
			k.now_ns > t->spawn_ns ? k.now_ns - t->spawn_ns : 0);
		fprintf(out, "\tspawned at %s, %s ago\n",
			t->site ? s->site : "(no site)", d);
		if (t->state == WEFT_TASK_RUNNING)
			continue;
		if (s->moved)
			fprintf(out, "\t(it ran while its stack was read: "
				     "frames may be mixed)\n");
		for (j = 0; j < s->nframes; j++)
			put_frame(out, (unsigned)j, s->frames[j],
				  j >= s->guessed);
		if (!s->nframes && !s->started)
			fprintf(out, "\t(not started yet)\n");
		if (s->fn) {
			Dl_info dl;

			if (dladdr(s->fn, &dl) && dl.dli_sname)
				fprintf(out, "\ttask function %s\n",
					dl.dli_sname);
			else
				fprintf(out, "\ttask function %p\n", s->fn);
		}
	}
	*stuck = all_stuck(k.v, k.n);
	if (*stuck)
		fprintf(out, "\nall tasks are asleep - deadlock? (every task "
			     "waits on another task or an object only a task "
			     "or a thread outside the runtime can wake; no "
			     "I/O, timer or blocking call is pending)\n");
	fprintf(out, "end of weft dump\n");
	funlockfile(out);
	fflush(out);
	free(k.v);
	return 0;
}

int weft_dump(weft_runtime *rt, FILE *out)
{
	bool stuck;
	int err;

	if (!rt)
		rt = weft_runtime_self();
	if (!rt || !out)
		return -EINVAL;
	err = reader_enter(rt);
	if (err < 0)
		return err;
	err = dump(rt, out, &stuck);
	reader_leave(rt);
	return err;
}

/* ---- the dump thread ---------------------------------------------------- */

struct weft__debug {
	struct weft_runtime *rt;
	pthread_t thread;
	int efd;
	int signo;
	bool abort_on_deadlock;
	bool stop_signals; /* WEFT_RUN_STOP_ON_SIGNALS: a signal may end it */
	unsigned own;      /* the runtime's threads besides workers and pool:
			      this one, the stall watchdog if on (its stop
			      comes first: then the count is short, and no
			      abort) */
	atomic_bool quit;
};

/* Runtimes whose dump signal is on: the handler wakes each one's thread.
 * Slots are claimed and cleared under dbg_lock. A slot's signal number is
 * written before its eventfd is published (release), and the handler
 * loads the eventfd with acquire before the number.
 * A handler must never write to a descriptor number that was closed and
 * reused: the stop clears the slot and then waits until no handler is
 * between its entry and its exit (dbg_inflight) before closing. Store
 * then load on each side (handler: count itself in, load the slot; stop:
 * clear the slot, load the count), so both are seq_cst: either the
 * handler's load sees the slot cleared, or the stop's load sees the
 * handler counted and waits for it. */
#define DBG_SLOTS 16
static pthread_mutex_t dbg_lock = PTHREAD_MUTEX_INITIALIZER;
/* A slot holds its eventfd's number plus one, 0 when free: descriptor 0
 * is a valid eventfd in a program that closed its standard input. */
static atomic_int dbg_efd[DBG_SLOTS];
static int dbg_signo[DBG_SLOTS];
/* Per signal (under dbg_lock): how many slots dump on it, and the
 * disposition it had before the first of them took it, put back when the
 * last one stops, whatever the order of stops (runtimes need not nest). */
static unsigned dbg_users[NSIG];
static struct sigaction dbg_saved[NSIG];
static atomic_int dbg_inflight;

static void on_dump_signal(int sig)
{
	int saved = errno;
	uint64_t one = 1;
	unsigned i;

	atomic_fetch_add_explicit(&dbg_inflight, 1, memory_order_seq_cst);
	for (i = 0; i < DBG_SLOTS; i++) {
		int fd = atomic_load_explicit(&dbg_efd[i],
					      memory_order_seq_cst) - 1;

		if (fd >= 0 && dbg_signo[i] == sig &&
		    write(fd, &one, sizeof(one)) < 0) {
			/* nothing to do in a handler */
		}
	}
	atomic_fetch_sub_explicit(&dbg_inflight, 1, memory_order_release);
	errno = saved;
}

/*
 * A child forked while a runtime dumps on a signal: it has the handler
 * and the eventfds, but none of the runtimes' threads (fork copies only
 * the caller). The signal there would write to an eventfd whose other
 * end is the parent's dump thread, which would dump the parent. So the
 * child gets back each dump signal's disposition from before weft took
 * it and closes its copies of the eventfds. The table is consistent at
 * the fork: prepare takes dbg_lock, which the parent releases after and
 * the child (its only thread, the one that held it) releases after
 * clearing. No handler can be in the table's walk in the child: it has
 * one thread, and that one is here.
 */
static void dbg_atfork_prepare(void)
{
	pthread_mutex_lock(&dbg_lock);
}

static void dbg_atfork_parent(void)
{
	pthread_mutex_unlock(&dbg_lock);
}

static void dbg_atfork_child(void)
{
	unsigned i;
	int sig;

	for (i = 0; i < DBG_SLOTS; i++) {
		int v = atomic_load_explicit(&dbg_efd[i], memory_order_relaxed);

		if (!v)
			continue;
		atomic_store_explicit(&dbg_efd[i], 0, memory_order_relaxed);
		close(v - 1);
	}
	for (sig = 1; sig < NSIG; sig++) {
		if (!dbg_users[sig])
			continue;
		dbg_users[sig] = 0;
		sigaction(sig, &dbg_saved[sig], NULL);
	}
	pthread_mutex_unlock(&dbg_lock);
}

static pthread_once_t dbg_atfork_once = PTHREAD_ONCE_INIT;

static void dbg_atfork_register(void)
{
	pthread_atfork(dbg_atfork_prepare, dbg_atfork_parent,
		       dbg_atfork_child);
}

/* The abort's standing conditions (see the top). */
static bool may_abort(struct weft__debug *d)
{
	return d->abort_on_deadlock && !d->stop_signals &&
	       d->rt->caller_is_worker;
}

/* The process's thread count (/proc/self/status), 0 if unknown. */
static unsigned process_threads(void)
{
	char line[128];
	unsigned n = 0;
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Threads: %u", &n) == 1)
			break;
	fclose(f);
	return n;
}

/* No thread but the runtime's own: its workers, its pool's, this one
 * and the stall watchdog. */
static bool only_own_threads(struct weft__debug *d)
{
	struct weft_runtime *rt = d->rt;

	return process_threads() ==
	       rt->nworkers + weft__pool_threads(rt) + d->own;
}

/* A quick deadlock probe without printing: all stuck, and the worker
 * ticks seen. */
static bool probe(struct weft_runtime *rt, uint64_t *ticks)
{
	struct walk k;
	bool stuck;
	unsigned i;

	*ticks = 0;
	for (i = 0; i < rt->nworkers; i++)
		*ticks += atomic_load_explicit(&rt->workers[i]->ticks,
					       memory_order_relaxed);
	memset(&k, 0, sizeof(k));
	if (walk(rt, &k) < 0) {
		free(k.v);
		return false;
	}
	stuck = all_stuck(k.v, k.n);
	free(k.v);
	return stuck;
}

static void *dbg_thread(void *arg)
{
	struct weft__debug *d = arg;
	unsigned streak = 0;
	uint64_t last_ticks = 0;

	while (!atomic_load_explicit(&d->quit, memory_order_acquire)) {
		struct pollfd p = { .fd = d->efd, .events = POLLIN };
		uint64_t v, ticks;
		bool stuck;
		int r = poll(&p, 1, may_abort(d) ? 100 : -1);

		if (atomic_load_explicit(&d->quit, memory_order_acquire))
			break;
		if (r > 0 && read(d->efd, &v, sizeof(v)) == sizeof(v)) {
			/* Woken by stop (quit set) or by the signal. */
			if (atomic_load_explicit(&d->quit,
						 memory_order_acquire))
				break;
			dump(d->rt, stderr, &stuck);
			continue;
		}
		if (!may_abort(d))
			continue;
		if (!probe(d->rt, &ticks) || ticks != last_ticks ||
		    !only_own_threads(d)) {
			streak = 0;
			last_ticks = ticks;
			continue;
		}
		if (++streak < 10)
			continue;
		fprintf(stderr, "weft: every task of runtime %p has waited "
				"for over a second on another task "
				"(WEFT_RUN_ABORT_ON_DEADLOCK)\n",
			(void *)d->rt);
		dump(d->rt, stderr, &stuck);
		abort();
	}
	return NULL;
}

/* The signals a dump may not take. */
static bool sig_refused(int s, unsigned flags)
{
	return s == SIGKILL || s == SIGSTOP || s == SIGSEGV || s == SIGBUS ||
	       s == SIGILL || s == SIGFPE || s == SIGPIPE || s == SIGURG ||
	       s == WEFT__STALL_SIG ||
	       /* The C library's (NPTL's cancel and setxid), which
		* sigaction() refuses. */
	       (s >= 32 && s < SIGRTMIN) ||
	       ((flags & WEFT_RUN_STOP_ON_SIGNALS) &&
		(s == SIGINT || s == SIGTERM));
}

int weft__debug_signal_check(const struct weft_config *c)
{
	if (!c || !c->dump_signal)
		return 0;
	if (c->dump_signal < 1 || c->dump_signal >= NSIG ||
	    sig_refused(c->dump_signal, c->flags))
		return -EINVAL;
	return 0;
}

int weft__debug_start(struct weft_runtime *rt, const struct weft_config *c)
{
	struct weft__debug *d;
	unsigned i;
	int err;

	if (!c || (!c->dump_signal && !(c->flags & WEFT_RUN_ABORT_ON_DEADLOCK)))
		return 0;
	d = weft__mem_calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->rt = rt;
	d->signo = c->dump_signal;
	d->abort_on_deadlock = c->flags & WEFT_RUN_ABORT_ON_DEADLOCK;
	d->stop_signals = c->flags & WEFT_RUN_STOP_ON_SIGNALS;
	/* The watchdog started before (runtime.c), and stops before. */
	d->own = 1 + (rt->stall != NULL);
	d->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->efd < 0) {
		err = -errno;
		weft__mem_free(d);
		return err;
	}
	err = -pthread_create(&d->thread, NULL, dbg_thread, d);
	if (err < 0) {
		close(d->efd);
		weft__mem_free(d);
		return err;
	}
	rt->dbg = d;
	if (!d->signo)
		return 0;
	pthread_once(&dbg_atfork_once, dbg_atfork_register);
	pthread_mutex_lock(&dbg_lock);
	for (i = 0; i < DBG_SLOTS; i++)
		if (!atomic_load_explicit(&dbg_efd[i], memory_order_relaxed))
			break;
	if (i == DBG_SLOTS) {
		pthread_mutex_unlock(&dbg_lock);
		weft__debug_stop(rt);
		return -EBUSY;
	}
	dbg_signo[i] = d->signo;
	atomic_store_explicit(&dbg_efd[i], d->efd + 1, memory_order_release);
	err = 0;
	if (!dbg_users[d->signo]++) {
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_dump_signal;
		sigemptyset(&sa.sa_mask);
		/* On a worker, on its alternate signal stack (stack.c), not
		 * the task's: the signal's frame (a few KiB with AVX-512
		 * state) may not fit what a task has left of its stack. */
		sa.sa_flags = SA_RESTART | SA_ONSTACK;
		if (sigaction(d->signo, &sa, &dbg_saved[d->signo]) < 0) {
			/* Refused: said, not a dump that never comes. */
			err = -errno;
			dbg_users[d->signo] = 0;
			atomic_store_explicit(&dbg_efd[i], 0,
					      memory_order_seq_cst);
		}
	}
	pthread_mutex_unlock(&dbg_lock);
	if (err < 0)
		weft__debug_stop(rt); /* finds no slot: joins the thread */
	return err;
}

void weft__debug_stop(struct weft_runtime *rt)
{
	struct weft__debug *d = rt->dbg;
	uint64_t one = 1;
	unsigned i;

	if (!d)
		return;
	pthread_mutex_lock(&dbg_lock);
	for (i = 0; d->signo && i < DBG_SLOTS; i++) {
		if (atomic_load_explicit(&dbg_efd[i], memory_order_relaxed) !=
		    d->efd + 1)
			continue;
		/* The last runtime dumping on the signal puts back what the
		 * first found (stops in any order). */
		if (!--dbg_users[d->signo])
			sigaction(d->signo, &dbg_saved[d->signo], NULL);
		atomic_store_explicit(&dbg_efd[i], 0, memory_order_seq_cst);
		break;
	}
	pthread_mutex_unlock(&dbg_lock);
	/* Acquire: pairs with the handlers' release of the count. */
	while (atomic_load_explicit(&dbg_inflight, memory_order_seq_cst))
		sched_yield();
	atomic_store_explicit(&d->quit, true, memory_order_release);
	if (write(d->efd, &one, sizeof(one)) < 0) {
		/* a full counter still wakes it */
	}
	pthread_join(d->thread, NULL);
	close(d->efd);
	rt->dbg = NULL;
	weft__mem_free(d);
}

#else /* !WEFT__REGISTRY */

int weft_tasks_foreach(weft_runtime *rt, weft_task_visit_fn fn, void *arg)
{
	(void)rt;
	(void)fn;
	(void)arg;
	return -ENOSYS;
}

int weft_dump(weft_runtime *rt, FILE *out)
{
	(void)rt;
	(void)out;
	return -ENOSYS;
}

int weft__debug_signal_check(const struct weft_config *c)
{
	/* Accepted and ignored would hide that the build lacks it. */
	return c && (c->dump_signal || (c->flags & WEFT_RUN_ABORT_ON_DEADLOCK))
		       ? -EINVAL
		       : 0;
}

int weft__debug_start(struct weft_runtime *rt, const struct weft_config *c)
{
	(void)rt;
	(void)c;
	return 0;
}

void weft__debug_stop(struct weft_runtime *rt)
{
	(void)rt;
}

void weft__debug_release(struct weft_runtime *rt)
{
	(void)rt;
}

#endif /* WEFT__REGISTRY */
