/*
 * nouring: runs a program under a seccomp filter that refuses what weft
 * may not find where it runs (issue 11), so that its fallbacks are
 * exercised on a kernel that has everything. The filter outlives exec, so
 * the program is run unchanged.
 *
 *   nouring [-d] [-o] PROGRAM [ARG...]
 *     -d  Docker's rules for io_uring: io_uring_setup, io_uring_enter and
 *         io_uring_register fail with EPERM, as under Docker's, Podman's
 *         and containerd's default profiles (not on their allow list,
 *         whose default answer is EPERM)
 *     -o  an older kernel: madvise(MADV_GUARD_INSTALL) fails with EINVAL
 *         (before 6.13), so does the registration of a provided-buffer
 *         ring (before 5.19), epoll_pwait2 and openat2 with ENOSYS (before
 *         5.11 and 5.6)
 *   Neither flag: both.
 *
 * tests/run's compat mode runs the Criterion suites, the example servers
 * and the tutorials through it. Exits 127 if the filter cannot be
 * installed or the program not run.
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define NATIVE_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NATIVE_ARCH AUDIT_ARCH_AARCH64
#else
#error "nouring: unknown architecture"
#endif

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#define __NR_io_uring_enter 426
#define __NR_io_uring_register 427
#endif
#ifndef __NR_openat2
#define __NR_openat2 437
#endif
#ifndef __NR_epoll_pwait2
#define __NR_epoll_pwait2 441
#endif
#define MADV_GUARD_INSTALL_ 102
#define IORING_REGISTER_PBUF_RING_ 22

#define LD_NR BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))
/* if nr == n: return ERRNO(e) */
#define REFUSE(n, e)                                            \
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (n), 0, 1),         \
	BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (e))

int main(int argc, char **argv)
{
	int docker = 0, old = 0, i = 1;

	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "-d"))
			docker = 1;
		else if (!strcmp(argv[i], "-o"))
			old = 1;
		else if (!strcmp(argv[i], "--")) {
			i++;
			break;
		} else {
			fprintf(stderr, "nouring: unknown option %s\n", argv[i]);
			return 127;
		}
	}
	if (i >= argc) {
		fprintf(stderr, "usage: nouring [-d] [-o] PROGRAM [ARG...]\n");
		return 127;
	}
	if (!docker && !old)
		docker = old = 1;

	struct sock_filter f[] = {
		/* Another architecture's calls: let them be. */
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		LD_NR,
		REFUSE(docker ? __NR_io_uring_setup : 0xfffff, EPERM),
		REFUSE(docker ? __NR_io_uring_enter : 0xfffff, EPERM),
		REFUSE(docker ? __NR_io_uring_register : 0xfffff, EPERM),
		REFUSE(old ? __NR_epoll_pwait2 : 0xfffff, ENOSYS),
		REFUSE(old ? __NR_openat2 : 0xfffff, ENOSYS),
		/* io_uring_register(_, IORING_REGISTER_PBUF_RING, ...):
		 * EINVAL, as before 5.19 (an unknown opcode). */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
			 old ? __NR_io_uring_register : 0xfffff, 0, 4),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, args[1])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IORING_REGISTER_PBUF_RING_,
			 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EINVAL),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		/* madvise(_, _, MADV_GUARD_INSTALL): EINVAL, as an unknown
		 * advice gets. */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
			 old ? __NR_madvise : 0xfffff, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, args[2])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, MADV_GUARD_INSTALL_, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EINVAL),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]),
				   .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0) {
		fprintf(stderr, "nouring: seccomp: %s\n", strerror(errno));
		return 127;
	}
	execvp(argv[i], argv + i);
	fprintf(stderr, "nouring: %s: %s\n", argv[i], strerror(errno));
	return 127;
}
