/*
 * Subprocesses (asyncio.create_subprocess_exec): a child started with
 * posix_spawn(3), pipes to its standard streams, and a pidfd to wait for it
 * and signal it without a SIGCHLD handler and without pid-reuse races.
 *
 * Spawning makes no ring call, so it works from any thread. glibc (2.24 and
 * later) starts the child with clone(CLONE_VM | CLONE_VFORK): the calling
 * thread is held until the child has called execve(), and an exec or
 * file-action failure comes back as posix_spawn's return value, never as a
 * child that exits 127. The thread is held for the length of a clone and an
 * exec, as short as any system call that blocks a worker here.
 *
 * Descriptors. Every pipe is made with O_CLOEXEC, so no child spawned at the
 * same time from another thread inherits it; the child's ends reach fds
 * 0..2 through dup2 file actions, which clear close-on-exec on the copy.
 * The child's ends are moved to fds >= 3 first, so that one dup2 cannot
 * overwrite an end that a later dup2 still needs (possible when the parent
 * runs with fd 0, 1 or 2 closed). Like Python's close_fds=True, the child
 * closes every other fd >= 3 (posix_spawn_file_actions_addclosefrom_np).
 * The parent's ends are ordinary blocking-mode pipe fds: io_uring reads and
 * writes them without stalling the worker (it waits on the pipe's poll
 * queue), so the weft I/O calls serve them as any descriptor.
 *
 * Signals. The child starts with an empty signal mask (a worker thread's
 * mask is no business of the child) and with SIGPIPE and SIGXFSZ back at
 * their default action, as Python's restore_signals does: weft_run() sets
 * SIGPIPE to SIG_IGN, and an ignored disposition survives execve().
 *
 * Waiting. The pidfd turns readable when the child has exited. A waiter
 * polls it with a one-shot IORING_OP_POLL_ADD on its worker's ring
 * (weft__ops_poll in io/ops.c, which brings cancellation and deadlines), then
 * reaps with waitid(P_PIDFD, ..., WNOHANG). See "reaping" below for how
 * several waiters share the one exit status.
 */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ops.h"
#include "../runtime/base.h"
#include "../runtime/epoll.h"
#include "../runtime/mem.h"

extern char **environ;

/* Both system calls have the same number on every architecture (the
 * unified table since Linux 5.1); pidfd_open needs Linux 5.3, waitid's
 * P_PIDFD 5.4. */
#ifndef __NR_pidfd_send_signal
#define __NR_pidfd_send_signal 424
#endif
#ifndef __NR_pidfd_open
#define __NR_pidfd_open 434
#endif

#define PROC_FLAGS                                                       \
	(WEFT_PROC_STDIN | WEFT_PROC_STDOUT | WEFT_PROC_STDERR |         \
	 WEFT_PROC_STDERR_TO_STDOUT | WEFT_PROC_DEVNULL |                \
	 WEFT_PROC_SEARCH_PATH)

/*
 * Reaping. `reaped` goes from 0 to 1 once, when the exit status has been
 * collected and `returncode` holds it. waitid() can hand a status out only
 * once, so the reaper calls it under `reap_lock`: of two waiters woken by
 * the same readiness, the first reaps, and the second, taking the lock
 * after it, sees reaped == 1 and reads the code. The store of returncode is
 * ordered before the release store of `reaped`; the lock-free fast paths
 * (wait, kill) read `reaped` with acquire, pairing with it, and then may
 * read returncode. The lock is never held across a suspension: waitid()
 * with WNOHANG does not block, and the blocking waitid of
 * weft_proc_destroy() runs when no other caller may use the handle.
 */
struct weft_proc {
	pid_t pid;
	int pidfd;             /* O_CLOEXEC; closed by weft_proc_destroy() */
	atomic_int in;         /* parent's write end of the stdin pipe, or -1
				  once closed; swapped out by close_stdin */
	int in_tomb;           /* the write end of a pipe without reader,
				  made by the spawn if stdin is piped, else
				  -1; close_stdin moves it onto in's number,
				  which it then holds until destroy (see
				  "Closing stdin") */
	int out;               /* read end of the stdout pipe, or -1 */
	int err;               /* read end of the stderr pipe, or -1 */
	atomic_int reaped;     /* 1 once returncode is final (release) */
	int returncode;        /* exit status, or -signal */
	pthread_mutex_t reap_lock; /* serialises waitid() calls */
};

static void close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

/* pipe2(O_CLOEXEC), with the child's end (index `child`) moved to an fd
 * >= 3 so that the dup2 actions onto 0..2 cannot clobber one another. */
static int make_pipe(int fds[2], int child)
{
	if (pipe2(fds, O_CLOEXEC) < 0)
		return -errno;
	if (fds[child] < 3) {
		int fd = fcntl(fds[child], F_DUPFD_CLOEXEC, 3);

		if (fd < 0) {
			int err = -errno;

			close_fd(&fds[0]);
			close_fd(&fds[1]);
			return err;
		}
		close(fds[child]);
		fds[child] = fd;
	}
	return 0;
}

/* The write end of a pipe whose read end is closed: writes to it fail
 * with EPIPE. Close-on-exec like every pipe here. Stands in for stdin's
 * number after weft_proc_close_stdin() (see "Closing stdin"). */
static int make_tomb(int *out)
{
	int fds[2];

	if (pipe2(fds, O_CLOEXEC) < 0)
		return -errno;
	close(fds[0]);
	*out = fds[1];
	return 0;
}

/* Where one of the child's standard fds comes from: our pipe end, the
 * child's fd `from` (stderr onto stdout), /dev/null, or left inherited. */
static int stream_action(posix_spawn_file_actions_t *fa, int target,
			 int pipe_end, int from, bool devnull)
{
	if (pipe_end >= 0)
		return posix_spawn_file_actions_adddup2(fa, pipe_end, target);
	if (from >= 0)
		return posix_spawn_file_actions_adddup2(fa, from, target);
	if (devnull)
		return posix_spawn_file_actions_addopen(
			fa, target, "/dev/null",
			target == 0 ? O_RDONLY : O_WRONLY, 0);
	return 0;
}

static int file_actions(posix_spawn_file_actions_t *fa, unsigned flags,
			const char *cwd, int in_r, int out_w, int err_w)
{
	bool dn = flags & WEFT_PROC_DEVNULL;
	int merge = flags & WEFT_PROC_STDERR_TO_STDOUT ? 1 : -1;
	int rc;

	/* Order matters: stderr may be a copy of stdout, so stdout first. */
	rc = stream_action(fa, 0, in_r, -1, dn);
	if (!rc)
		rc = stream_action(fa, 1, out_w, -1, dn);
	if (!rc)
		rc = stream_action(fa, 2, err_w, merge, dn);
	/* The pipe ends are close-on-exec already; this closes whatever
	 * else the parent left inheritable (Python's close_fds=True). */
	if (!rc)
		rc = posix_spawn_file_actions_addclosefrom_np(fa, 3);
	/* The exec follows every action, so a relative argv[0] is looked
	 * up from cwd, as with Python's cwd=. */
	if (!rc && cwd)
		rc = posix_spawn_file_actions_addchdir_np(fa, cwd);
	return -rc;
}

static int spawn_attrs(posix_spawnattr_t *attr)
{
	sigset_t set;
	int rc;

	sigemptyset(&set);
	rc = posix_spawnattr_setsigmask(attr, &set);
	sigaddset(&set, SIGPIPE);
	sigaddset(&set, SIGXFSZ);
	if (!rc)
		rc = posix_spawnattr_setsigdefault(attr, &set);
	if (!rc)
		rc = posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK |
						    POSIX_SPAWN_SETSIGDEF);
	return -rc;
}

int weft_proc_spawn(weft_proc **out, char *const argv[],
		    const struct weft_proc_opts *opts)
{
	WEFT__KEEP_ERRNO;
	unsigned flags = opts ? opts->flags : 0;
	char *const *envp = opts && opts->envp ? opts->envp : environ;
	const char *cwd = opts ? opts->cwd : NULL;
	int in[2] = { -1, -1 }, o[2] = { -1, -1 }, e[2] = { -1, -1 };
	int tomb = -1;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	struct weft_proc *p;
	pid_t pid;
	int err, pidfd;

	if (!out || !argv || !argv[0])
		return -EINVAL;
	*out = NULL;
	if ((flags & ~PROC_FLAGS) ||
	    ((flags & WEFT_PROC_STDERR) &&
	     (flags & WEFT_PROC_STDERR_TO_STDOUT)) ||
	    (opts && (opts->reserved[0] || opts->reserved[1])))
		return -EINVAL;
	p = weft__mem_calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;

	err = 0;
	if (flags & WEFT_PROC_STDIN) {
		err = make_pipe(in, 0);
		if (!err)
			err = make_tomb(&tomb);
	}
	if (!err && (flags & WEFT_PROC_STDOUT))
		err = make_pipe(o, 1);
	if (!err && (flags & WEFT_PROC_STDERR))
		err = make_pipe(e, 1);
	if (err)
		goto fail_pipes;

	err = -posix_spawn_file_actions_init(&fa);
	if (err)
		goto fail_pipes;
	err = -posix_spawnattr_init(&attr);
	if (err)
		goto fail_fa;
	err = file_actions(&fa, flags, cwd, in[0], o[1], e[1]);
	if (!err)
		err = spawn_attrs(&attr);
	if (!err) {
		/* Returns the child's exec or file-action errno (glibc
		 * waits for the exec: CLONE_VFORK). */
		if (flags & WEFT_PROC_SEARCH_PATH)
			err = -posix_spawnp(&pid, argv[0], &fa, &attr, argv,
					    envp);
		else
			err = -posix_spawn(&pid, argv[0], &fa, &attr, argv,
					   envp);
	}
	posix_spawnattr_destroy(&attr);
fail_fa:
	posix_spawn_file_actions_destroy(&fa);
	/* The child has its copies (or never came to be): ours go. */
	close_fd(&in[0]);
	close_fd(&o[1]);
	close_fd(&e[1]);
	if (err)
		goto fail_pipes;

	pidfd = (int)syscall(__NR_pidfd_open, pid, 0);
	if (pidfd < 0) {
		/* No handle to wait with (kernel before 5.3, or out of
		 * descriptors): take the child down rather than leave it
		 * running unwatched, and reap it here. The pid cannot have
		 * been reused: it is our unreaped child. */
		err = -errno;
		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		goto fail_pipes;
	}

	p->pid = pid;
	p->pidfd = pidfd;
	atomic_init(&p->in, in[1]);
	p->in_tomb = tomb;
	p->out = o[0];
	p->err = e[0];
	atomic_init(&p->reaped, 0);
	pthread_mutex_init(&p->reap_lock, NULL);
	*out = p;
	return 0;

fail_pipes:
	close_fd(&tomb);
	close_fd(&in[0]);
	close_fd(&in[1]);
	close_fd(&o[0]);
	close_fd(&o[1]);
	close_fd(&e[0]);
	close_fd(&e[1]);
	weft__mem_free(p);
	return err;
}

pid_t weft_proc_pid(weft_proc *p)
{
	return p ? p->pid : -1;
}

int weft_proc_stdin(weft_proc *p)
{
	return p ? atomic_load_explicit(&p->in, memory_order_relaxed) : -1;
}

int weft_proc_stdout(weft_proc *p)
{
	return p ? p->out : -1;
}

int weft_proc_stderr(weft_proc *p)
{
	return p ? p->err : -1;
}

/*
 * Closing stdin (issue 15). The parent's write end is handed out as a plain
 * number (weft_proc_stdin), and a writer such as weft_write_all() keeps
 * using the number it read, one request after another; weft cannot count
 * such users. If close_stdin() freed the number, the writer's next request
 * would go to whatever the next open(), socket() or accept() received: the
 * rest of the child's input would land in an unrelated file, reported as
 * written. So the number is never freed before weft_proc_destroy(). It
 * becomes a tombstone instead: dup3() puts in_tomb, the write end of a pipe
 * whose read end the spawn closed at once, in its place, atomically. From
 * then on:
 *   - a request on the number issued after the dup3 reaches the dead pipe
 *     and fails with -EPIPE at once (weft_run() and weft_runtime_create()
 *     set SIGPIPE to SIG_IGN unless the program chose a disposition; a
 *     program with its own handler gets the signal, as for any write to a
 *     closed pipe);
 *   - a request already in flight holds its own reference to the real
 *     pipe (io_uring takes one when it issues the request) and completes
 *     on it;
 *   - the child reads end of file once that last reference is gone: the fd
 *     table's went with the dup3, and the pipe is close-on-exec, so no
 *     other process keeps one (a sibling's posix_spawn holds a copy only
 *     until its exec).
 * The dead pipe is made by the spawn, not here, so that closing needs no
 * free descriptor and cannot fail for want of one; it costs one descriptor
 * per child from the spawn until stdin is closed. The dead pipe's original
 * number is closed once it has been copied; the number stdin had stays in
 * in_tomb until weft_proc_destroy(), whose contract already says that
 * nobody uses the pipes any more.
 * `in` is exchanged to -1 first, so of two racing closers exactly one gets
 * the number and touches in_tomb; weft_proc_destroy() reads in_tomb after
 * every other call on p has returned, which orders it after that write.
 */
int weft_proc_close_stdin(weft_proc *p)
{
	WEFT__KEEP_ERRNO;
	int fd;

	if (!p)
		return -EINVAL;
	/* The exchange lets two closers race: one gets the fd. Nothing here
	 * blocks (a pipe's release does not), so any thread may call. */
	fd = atomic_exchange_explicit(&p->in, -1, memory_order_relaxed);
	if (fd < 0)
		return -EBADF;
	/* Both numbers are open and differ, so dup3 fails only if the
	 * program lowered RLIMIT_NOFILE below fd since the spawn (EBADF for
	 * a target past the limit). Then there is no way to keep the
	 * number: close it as before the tombstone existed. */
	if (dup3(p->in_tomb, fd, O_CLOEXEC) < 0) {
		close(fd);
		weft__epoll_closed(fd);
		return 0;
	}
	close(p->in_tomb);
	p->in_tomb = fd;
	/* A writer waiting on the epoll reactor meets the tomb (-EPIPE). */
	weft__epoll_closed(fd);
	return 0;
}

/*
 * Collects the exit status if the child has exited (options WNOHANG) or
 * until it has (options 0). Returns 1 once reaped, 0 if the child is still
 * running, or a negative errno (-ECHILD: someone else reaped our child,
 * through SIGCHLD set to SIG_IGN or a wait for any child).
 */
static int reap(struct weft_proc *p, int options)
{
	siginfo_t si;
	int err = 0, done;

	/* Acquire: pairs with the release store below, for returncode. */
	if (atomic_load_explicit(&p->reaped, memory_order_acquire))
		return 1;
	pthread_mutex_lock(&p->reap_lock);
	done = atomic_load_explicit(&p->reaped, memory_order_relaxed);
	while (!done) {
		memset(&si, 0, sizeof(si));
		if (waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &si,
			   WEXITED | options) < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			break;
		}
		if (si.si_pid == 0)
			break; /* WNOHANG: not exited yet */
		p->returncode = si.si_code == CLD_EXITED ? si.si_status
							 : -si.si_status;
		/* Release: publishes returncode to the acquire loads. */
		atomic_store_explicit(&p->reaped, 1, memory_order_release);
		done = 1;
	}
	pthread_mutex_unlock(&p->reap_lock);
	return err ? err : done;
}

int weft_proc_wait(weft_proc *p, int *returncode)
{
	WEFT__KEEP_ERRNO;
	int r;

	if (!p)
		return -EINVAL;
	if (!weft_self())
		return -EPERM;
	for (;;) {
		r = reap(p, WNOHANG);
		if (r < 0)
			return r;
		if (r) {
			if (returncode)
				*returncode = p->returncode;
			return 0;
		}
		/* Readable once the child has exited. The poll is armed
		 * level-triggered, so an exit between the reap above and the
		 * arming completes it at once. -ECANCELED and -ETIMEDOUT
		 * come from here, with the poll taken back from the kernel. */
		r = weft__ops_poll(p->pidfd, POLLIN);
		if (r < 0)
			return r;
	}
}

int weft_proc_kill(weft_proc *p, int sig)
{
	WEFT__KEEP_ERRNO;
	if (!p)
		return -EINVAL;
	/* Once reaped, the pidfd refers to no process; the kernel would say
	 * ESRCH too, this only says it without a system call. A signal to
	 * a child that has exited but is not reaped yet succeeds and does
	 * nothing. The pidfd names this child and no later holder of its
	 * pid, so a reap racing with this call cannot misdirect it. */
	if (atomic_load_explicit(&p->reaped, memory_order_acquire))
		return -ESRCH;
	if (syscall(__NR_pidfd_send_signal, p->pidfd, sig, NULL, 0) < 0)
		return -errno;
	return 0;
}

void weft_proc_destroy(weft_proc *p)
{
	WEFT__KEEP_ERRNO;
	int fd;

	if (!p)
		return;
	fd = atomic_exchange_explicit(&p->in, -1, memory_order_relaxed);
	close_fd(&fd);
	close_fd(&p->in_tomb);
	close_fd(&p->out);
	close_fd(&p->err);
	if (reap(p, WNOHANG) == 0) {
		/* Still running: asyncio's transport close kills it too.
		 * After SIGKILL the exit is a matter of the kernel tearing
		 * the process down, so a blocking waitid is acceptable here
		 * (it holds this thread, a worker perhaps, that long; a
		 * child stuck in uninterruptible sleep would hold it
		 * longer). */
		syscall(__NR_pidfd_send_signal, p->pidfd, SIGKILL, NULL, 0);
		reap(p, 0);
	}
	close(p->pidfd);
	pthread_mutex_destroy(&p->reap_lock);
	weft__mem_free(p);
}
