/*
 * Context switch for x86-64 (System V ABI).
 *
 * void *weft__ctx_switch(void **save_sp, void *load_sp, void *arg);
 *
 * Saves the callee-saved state of the caller on its own stack (rbp, rbx,
 * r12-r15, the SSE control/status word MXCSR and the x87 control word),
 * stores the resulting stack pointer in *save_sp, switches to load_sp,
 * restores the same set from there and returns `arg` to whoever switched
 * away from load_sp last. The floating-point control state is restored
 * only where it differs (see below). Caller-saved registers need no saving: the ABI
 * already lets the call clobber them. No signal mask, no syscall.
 *
 * Saved frame, from load_sp upwards:
 *   [0]  mxcsr (4 bytes) | x87 cw (2 bytes) | pad
 *   [8]  r15  [16] r14  [24] r13  [32] r12  [40] rbx  [48] rbp
 *   [56] return address
 *
 * A new context is made by weft__ctx_make() (runtime/arch/switch.h), which
 * writes such a frame whose return address is weft__ctx_entry below, r12
 * holding the entry function and r13 its first argument.
 */
	.text
	.globl	weft__ctx_switch
	.hidden	weft__ctx_switch
	.type	weft__ctx_switch, @function
	.p2align 4
weft__ctx_switch:
	.cfi_startproc
	pushq	%rbp
	pushq	%rbx
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	subq	$8, %rsp
	stmxcsr	(%rsp)
	fnstcw	4(%rsp)
	movq	%rsp, (%rdi)
	movq	%rsi, %rsp
	/* Restore only what differs, and only control bits count: MXCSR's
	 * six status flags are caller-saved in the ABI, and tasks doing
	 * floating-point work leave different sticky flags behind. A load
	 * of a different MXCSR or x87 control word costs tens of ns on
	 * current Intel parts; comparing first makes the common case two
	 * stores, two loads and two branches. The red zone below rsp is
	 * ours (leaf code). */
	stmxcsr	-8(%rsp)
	movl	-8(%rsp), %eax
	xorl	(%rsp), %eax
	testl	$0xffc0, %eax
	jz	1f
	ldmxcsr	(%rsp)
1:	fnstcw	-8(%rsp)
	movzwl	-8(%rsp), %eax
	cmpw	4(%rsp), %ax
	je	2f
	fldcw	4(%rsp)
2:
	addq	$8, %rsp
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%rbx
	popq	%rbp
	movq	%rdx, %rax
	/* A plain ret keeps the CPU's return-stack predictor balanced. Most
	 * switches leave from and resume at the same call site (the one in
	 * worker.c's switch_to), so its prediction is right; replacing it
	 * by pop + jmp was measured 3x slower in the runtime, because every
	 * later ret then mispredicts. */
	ret
	.cfi_endproc
	.size	weft__ctx_switch, .-weft__ctx_switch

/*
 * First instructions of a new context. Reached by the `ret` above with rax
 * = the arg passed to the switch, r12 = entry function, r13 = its context
 * pointer. Calls entry(arg, ctx), which never returns. rsp is 16-byte
 * aligned here (weft__ctx_make arranges it), so the call leaves the callee
 * with the ABI's rsp+8 alignment. The zero return address ends unwinding.
 */
	.globl	weft__ctx_entry
	.hidden	weft__ctx_entry
	.type	weft__ctx_entry, @function
	.p2align 4
weft__ctx_entry:
	.cfi_startproc
	.cfi_undefined rip
	xorl	%ebp, %ebp
	movq	%rax, %rdi
	movq	%r13, %rsi
	call	*%r12
	ud2
	.cfi_endproc
	.size	weft__ctx_entry, .-weft__ctx_entry

	.section .note.GNU-stack,"",@progbits
