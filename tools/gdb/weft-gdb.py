# weft's gdb extension: lists a program's weft tasks and shows the stack of
# any of them, parked ones included, on a live process or a core file.
#
#   info weft-tasks         every live task: handle, name, state, what it
#                           waits on and where it was spawned (where the
#                           library records them), and each worker's task
#   weft-bt TASK            TASK's backtrace. A parked or queued task's
#                           stack is unwound from its saved switch frame;
#                           a running task's is its worker thread's.
#   weft-task TASK          makes TASK's stack the one `bt`, `frame N`,
#                           `info locals` and `print` see (frame #0 stays
#                           the thread's own: the task's frames start at
#                           #1); `weft-task off` goes back
#
# TASK is a handle as the program prints it (weft_task *, e.g.
# 0x1000000001), a control block's address, or a task name.
#
# How it finds tasks: control blocks live in slabs that a process-wide
# directory lists (runtime/task.h, weft__task_dir); a block whose park
# state is not FREE is a live task. A parked task's saved stack pointer
# (tcb->sp) points at the frame weft__ctx_switch pushed
# (runtime/arch/*/ctx.S); an unwinder gives gdb the caller's registers from
# that frame, and gdb's own DWARF unwinding does the rest. Nothing here
# writes to the inferior, so a core file works as a live process does.
#
# It needs libweft's debug information (the default RelWithDebInfo build
# has it; a distribution's -dbgsym package does too). The library carries
# this script in its .debug_gdb_scripts section, so gdb loads it with
# libweft once `set auto-load safe-path` (or add-auto-load-safe-path)
# allows the program's directory; `source weft-gdb.py` (installed in
# share/weft/) loads it by hand. Loading it twice is harmless.
import gdb
import gdb.unwinder

if not getattr(gdb, "_weft_gdb_loaded", False):
    gdb._weft_gdb_loaded = True

    # Park states (runtime/task.h).
    _PARK = {0: "free", 1: "runnable", 2: "parking", 3: "parked", 4: "woken"}

    def _types():
        try:
            return gdb.lookup_type("struct weft__tcb")
        except gdb.error:
            raise gdb.GdbError(
                "weft: no debug information for libweft "
                "(struct weft__tcb): build it with -g or install its "
                "debug symbols"
            )

    def _sym(name):
        try:
            return gdb.parse_and_eval(name)
        except gdb.error:
            raise gdb.GdbError("weft: %s not found: is libweft linked in?" % name)

    def _field(v, name):
        # A field the running library may not have (older versions).
        try:
            return v[name]
        except gdb.error:
            return None

    def _int(v):
        return int(v) if v is not None else None

    def _atomic(v):
        # _Atomic fields read as their plain value in gdb.
        return int(v)

    def _tasks():
        """Every control block whose park state is not FREE, as gdb
        values (struct weft__tcb), directory order."""
        tcb_t = _types()
        tcb_p = tcb_t.pointer()
        d = _sym("weft__task_dir")
        nchunks = d.type.range()[1] + 1
        chunk = d[0].type.target()
        nslab = chunk["mem"].type.range()[1] + 1
        per = 256  # blocks a slab: WEFT__CB_SLAB, runtime/task.h
        out = []
        for i in range(nchunks):
            c = d[i]
            if int(c) == 0:
                continue
            c = c.dereference()
            for j in range(nslab):
                mem = c["mem"][j]
                if int(mem) == 0:
                    continue
                mem = mem.cast(tcb_p)
                for k in range(per):
                    t = mem[k]
                    try:
                        if _atomic(t["park"]) != 0:
                            out.append(t)
                    except gdb.MemoryError:
                        # Pages of an all-free slab given back: free.
                        break
        return out

    def _workers():
        """(runtime address, worker index) -> current task address, and
        the gdb thread each worker runs on."""
        cur = {}
        threads = {}
        inf = gdb.selected_inferior()
        keep = gdb.selected_thread()
        for th in inf.threads():
            try:
                th.switch()
                w = gdb.parse_and_eval("weft__worker_tls")
            except gdb.error:
                continue
            if int(w) == 0:
                continue
            w = w.dereference()
            key = (int(w["rt"]), int(w["index"]))
            threads[key] = th
            cur[key] = int(w["current"])
        if keep is not None:
            keep.switch()
        return cur, threads

    def _name(t):
        try:
            return t["name"].string(length=32).split("\0")[0]
        except (gdb.error, UnicodeDecodeError):
            return "?"

    def _site(t):
        # "file.c:123" of the spawn (weft_spawn() and friends), where the
        # library records it (runtime/task.h: site).
        s = _field(t, "site")
        if s is None or int(s) == 0:
            return None
        try:
            return s.string()
        except gdb.error:
            return None

    def _side(t):
        # The block's entry in its slab's side table (runtime/task.h,
        # weft__task_side(): right after the slab's 256 blocks), or None
        # where the library has no registry.
        try:
            side_t = gdb.lookup_type("struct weft__task_side")
        except gdb.error:
            return None
        idx = (_atomic(t["handle"]) >> 36) & 255
        base = int(t.address) + (256 - idx) * t.type.sizeof
        return gdb.Value(base).cast(side_t.pointer())[idx]

    def _wait(t, by_addr):
        # The registry's wait reason (runtime/debug.h): the wait word's low
        # 8 bits index weft__debug_wait_names; wait_what is the object or
        # the number, as the kind says. Meaningful while the task waits.
        if _atomic(t["park"]) not in (2, 3):
            return None
        d = _side(t)
        if d is None:
            return None
        try:
            ww = int(d["wait_word"])
            what = int(d["wait_what"]) & 0xFFFFFFFFFFFFFFFF
            kind = ww & 0xFF
            if kind == 0:
                return None
            text = gdb.parse_and_eval("weft__debug_wait_names")[kind].string()
        except gdb.error:
            return None
        if text.startswith("io") or text.startswith("stream"):
            text += " fd %d" % (what & 0xFFFFFFFF)
        elif text == "select":
            text += " (%d cases)" % what
        elif text == "sleep":
            pass
        elif text == "await" and what in by_addr:
            o = by_addr[what]
            text += " task 0x%x '%s'" % (_atomic(o["handle"]), _name(o))
        elif text == "run_blocking" and what:
            sym = gdb.block_for_pc(what)
            fn = sym.function if sym is not None else None
            text += " %s" % (fn.name if fn is not None else "0x%x" % what)
        elif what:
            text += " 0x%x" % what
        if ww & 0x100:
            text += ", with a deadline"
        return text

    def _state(t, cur, threads):
        addr = int(t.address)
        for key, c in cur.items():
            if c == addr:
                th = threads.get(key)
                return "running on worker %d%s" % (
                    key[1],
                    " (thread %d)" % th.num if th is not None else "",
                ), key
        if _atomic(t["done"]):
            return "ended", None
        return _PARK.get(_atomic(t["park"]), "?"), None

    def _find(arg):
        arg = arg.strip()
        if not arg:
            raise gdb.GdbError("weft: which task? (a handle, an address or a name)")
        tasks = _tasks()
        num = None
        try:
            num = int(gdb.parse_and_eval(arg))
        except (gdb.error, RuntimeError):
            pass
        if num is not None:
            for t in tasks:
                if _atomic(t["handle"]) == num or int(t.address) == num:
                    return t
        named = [t for t in tasks if _name(t) == arg]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            raise gdb.GdbError(
                "weft: %d tasks are named '%s': give a handle" % (len(named), arg)
            )
        raise gdb.GdbError("weft: no live task %s" % arg)

    # ---- the unwinder -----------------------------------------------------
    # While a task is selected, the innermost frame's caller is the task's
    # switch frame: its registers come from the words weft__ctx_switch
    # pushed (runtime/arch/*/ctx.S gives the layouts).
    _X86 = (
        ("r15", 8), ("r14", 16), ("r13", 24), ("r12", 32),
        ("rbx", 40), ("rbp", 48),
    )
    _A64 = tuple(("x%d" % (19 + i), 8 * i) for i in range(10)) + (("x29", 80),)

    class _FrameId(object):
        # gdb before 14 has no gdb.unwinder.FrameId: any object with sp
        # and pc will do.
        def __init__(self, sp, pc):
            self.sp = sp
            self.pc = pc

    class _TaskUnwinder(gdb.unwinder.Unwinder):
        def __init__(self):
            super().__init__("weft-task")
            self.sp = None

        def __call__(self, pf):
            if self.sp is None or pf.level() != 0:
                return None
            arch = pf.architecture().name()
            u64 = gdb.lookup_type("unsigned long long").pointer()
            sp = self.sp

            def word(off):
                return int(gdb.Value(sp + off).cast(u64).dereference())

            # The innermost frame is the thread's own, on another stack
            # than the task's. gdb stops a backtrace at a frame that looks
            # inner to (below) the one before it; an id at the bottom of
            # the address space keeps the task's frames, wherever its
            # stack lies, outer to it.
            bottom = gdb.Value(1).cast(pf.read_register("sp").type)
            info = pf.create_unwind_info(_FrameId(bottom, pf.read_register("pc")))
            if "x86-64" in arch or "x86_64" in arch:
                for reg, off in _X86:
                    info.add_saved_register(reg, gdb.Value(word(off)))
                info.add_saved_register("rip", gdb.Value(word(56)))
                info.add_saved_register("rsp", gdb.Value(sp + 64))
            elif "aarch64" in arch:
                for reg, off in _A64:
                    info.add_saved_register(reg, gdb.Value(word(off)))
                ra = word(88) & ((1 << 48) - 1)  # strip a PAC signature
                info.add_saved_register("pc", gdb.Value(ra))
                info.add_saved_register("sp", gdb.Value(sp + 176))
            else:
                return None
            return info

    _unwinder = _TaskUnwinder()
    gdb.unwinder.register_unwinder(None, _unwinder, replace=True)

    def _select(sp):
        _unwinder.sp = sp
        gdb.invalidate_cached_frames()

    def _print_frames(first):
        f = first
        n = 0
        while f is not None and n < 64:
            sal = f.find_sal()
            where = ""
            if sal.symtab is not None:
                where = " at %s:%d" % (sal.symtab.filename, sal.line)
            name = f.name() or "??"
            gdb.write("#%-2d 0x%016x in %s%s\n" % (n, f.pc(), name, where))
            if name == "weft__ctx_entry":
                break
            try:
                f = f.older()
            except gdb.error as e:
                gdb.write("    (unwind stopped: %s)\n" % e)
                break
            n += 1

    def _readable(addr):
        try:
            gdb.selected_inferior().read_memory(addr, 8)
            return True
        except gdb.MemoryError:
            return False

    def _task_bt(t):
        cur, threads = _workers()
        state, key = _state(t, cur, threads)
        gdb.write(
            "task 0x%x '%s' [%s]\n" % (_atomic(t["handle"]), _name(t), state)
        )
        if key is not None:
            th = threads.get(key)
            keep = gdb.selected_thread()
            th.switch()
            try:
                _print_frames(gdb.newest_frame())
            finally:
                keep.switch()
            return
        sp = int(t["sp"])
        if sp == 0:
            gdb.write("    (not started yet: no stack)\n")
            return
        if _atomic(t["park"]) == 2:
            gdb.write("    (still switching out: its saved frame may be stale)\n")
        if not _readable(sp):
            gdb.write(
                "    (its stack is not in this core file: gdb's gcore leaves "
                "out a mapping it cannot read whole, and on Linux 6.13+ each "
                "task stack carries an unreadable guard; a core the kernel "
                "dumps has the stacks)\n"
            )
            return
        _select(sp)
        try:
            f = gdb.newest_frame().older()
            _print_frames(f)
        finally:
            _select(None)

    class _InfoTasks(gdb.Command):
        """List weft's live tasks: info weft-tasks"""

        def __init__(self):
            super().__init__("info weft-tasks", gdb.COMMAND_STATUS)

        def invoke(self, arg, from_tty):
            tasks = _tasks()
            cur, threads = _workers()
            by_addr = dict((int(t.address), t) for t in tasks)
            gdb.write("%d live task(s)\n" % len(tasks))
            for t in tasks:
                state, _ = _state(t, cur, threads)
                line = "  0x%-12x %-24s %s" % (
                    _atomic(t["handle"]), "'%s'" % _name(t), state
                )
                w = _wait(t, by_addr)
                if w is not None and not state.startswith("running"):
                    line += " [%s]" % w
                s = _site(t)
                if s is not None:
                    line += "  spawned at %s" % s
                gdb.write(line + "\n")
            for key in sorted(cur, key=lambda k: (k[0], k[1])):
                c = cur[key]
                th = threads.get(key)
                if c in by_addr:
                    what = "runs task 0x%x '%s'" % (
                        _atomic(by_addr[c]["handle"]), _name(by_addr[c])
                    )
                elif c:
                    what = "runs the block at 0x%x" % c
                else:
                    what = "in its scheduler (no task)"
                gdb.write(
                    "worker %d%s: %s\n"
                    % (key[1], " (thread %d)" % th.num if th is not None else "", what)
                )

    class _TaskBt(gdb.Command):
        """Backtrace of a weft task: weft-bt TASK (handle, address or name)"""

        def __init__(self):
            super().__init__("weft-bt", gdb.COMMAND_STACK)

        def invoke(self, arg, from_tty):
            if arg.strip() == "all":
                for t in _tasks():
                    _task_bt(t)
                    gdb.write("\n")
                return
            _task_bt(_find(arg))

    class _TaskSelect(gdb.Command):
        """Show a parked weft task's stack to bt, frame and print:
        weft-task TASK; weft-task off goes back."""

        def __init__(self):
            super().__init__("weft-task", gdb.COMMAND_STACK)

        def invoke(self, arg, from_tty):
            if arg.strip() == "off":
                _select(None)
                return
            t = _find(arg)
            sp = int(t["sp"])
            cur, threads = _workers()
            state, key = _state(t, cur, threads)
            if key is not None:
                raise gdb.GdbError(
                    "weft: task is %s: select that thread instead" % state
                )
            if sp == 0:
                raise gdb.GdbError("weft: task has not started: no stack")
            _select(sp)
            gdb.write(
                "task 0x%x '%s': its frames start at #1 "
                "(weft-task off to go back)\n" % (_atomic(t["handle"]), _name(t))
            )

    _InfoTasks()
    _TaskBt()
    _TaskSelect()
