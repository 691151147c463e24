# gdb script for tests/gdb_unwind.sh: stops at every instruction of
# weft__ctx_switch and weft__ctx_entry, and in a function called from a
# task, and checks each backtrace: every frame has a name, and the chain
# ends cleanly, at an outermost frame (return address undefined by CFI:
# weft__ctx_entry for a task stack, _start or clone for a thread) or at
# main. A broken unwind shows as an unnamed frame or another stop reason
# (corrupt stack, frame inner to or identical with the previous one).
# The environment names the task-side functions (GU_TASK_FRAMES, from the
# breakpoint outwards, ending at weft__ctx_entry).
# Prints "gdb-unwind: ok" last when every check held.
import os

import gdb

TASK = os.environ.get(
    "GU_TASK_FRAMES", "gu_leaf gu_middle gu_child weft__task_entry weft__ctx_entry"
).split()
LIMIT = 8  # stops kept at each place
ENDS = ("weft__ctx_entry", "main", "_start", "clone", "clone3", "__clone")

gdb.execute("set pagination off")
gdb.execute("set confirm off")
gdb.execute("set print thread-events off")
# Keep weft__name as it is (gdb would otherwise read it as Ada, weft.name).
gdb.execute("set print demangle off")
gdb.execute("set print asm-demangle off")
gdb.execute("break main")
gdb.execute("run" if gdb.selected_inferior().pid == 0 else "continue")

arch = gdb.selected_frame().architecture()


def insns(fn):
    """Addresses of fn's instructions (a no-debug-info assembler symbol)."""
    start = int(gdb.parse_and_eval("(unsigned long)&%s" % fn))
    out = []
    for i in arch.disassemble(start, start + 512):
        sym = gdb.execute("info symbol %#x" % i["addr"], to_string=True)
        if not sym.startswith(fn + " "):
            break
        out.append(i["addr"])
    return out


sw = insns("weft__ctx_switch")
en = insns("weft__ctx_entry")
where = {}
bps = []
for fn, addrs in (("weft__ctx_switch", sw), ("weft__ctx_entry", en)):
    for a in addrs:
        bps.append(gdb.Breakpoint("*%#x" % a, internal=True))
        where[a] = "%s+%d" % (fn, a - addrs[0])
bps.append(gdb.Breakpoint(TASK[0], internal=True))
for b in bps:
    b.silent = True

errors = []
hits = {}
shown = set()
new_ctx = task_chain = sched_chain = 0


def chain():
    names, f = [], gdb.newest_frame()
    while True:
        names.append(f.name())
        older = f.older()
        if older is None:
            return names, f.unwind_stop_reason()
        f = older


while True:
    try:
        gdb.execute("continue", to_string=True)
    except gdb.error:
        break
    if not gdb.selected_inferior().threads():
        break
    pc = gdb.newest_frame().pc()
    at = where.get(pc, TASK[0] if gdb.newest_frame().name() == TASK[0] else None)
    if at is None:
        continue
    hits[at] = hits.get(at, 0) + 1
    names, why = chain()
    last = names[-1]
    ok = None not in names and (
        why == gdb.FRAME_UNWIND_OUTERMOST
        or (why == gdb.FRAME_UNWIND_NO_REASON and last == "main")
    ) and last in ENDS
    if at == TASK[0]:
        # The same function may also run outside a task.
        if last == "weft__ctx_entry":
            ok = ok and names == TASK
            task_chain += ok
    elif at.startswith("weft__ctx_entry"):
        ok = ok and names == ["weft__ctx_entry"]
    else:
        new_ctx += names == ["weft__ctx_switch", "weft__ctx_entry"]
        task_chain += TASK[-2] in names
        sched_chain += last != "weft__ctx_entry"
    # Enough stops at each place (a switch hot loop would take long).
    for b in bps:
        if b.is_valid() and b.hit_count >= LIMIT:
            b.delete()
    if not ok:
        errors.append("%s: %s (%s)" % (at, names, gdb.frame_stop_reason_string(why)))
    # A few backtraces for the log: the task's, and the switch's just
    # before and just after the stack pointer changes hands.
    key = (at.split("+")[0], tuple(names))
    if key not in shown and (at == TASK[0] or len(shown) < 6):
        shown.add(key)
        print("--- at %s:" % at)
        print(gdb.execute("bt", to_string=True).rstrip())

# Not the nop before the resume point, nor the ud2 after the call.
missing = [where[a] for a in sw + en[1:-1] if where[a] not in hits]
if missing:
    errors.append("never stopped at " + ", ".join(missing))
if not task_chain:
    errors.append("no backtrace from %s through a task" % TASK[0])
if not new_ctx:
    errors.append("no stop in the switch into a new context")
if not sched_chain:
    errors.append("no stop in the switch on the scheduler's stack")
print("stops: %d at %d places" % (sum(hits.values()), len(hits)))
for e in errors[:20]:
    print("FAILED:", e)
print("gdb-unwind: " + ("ok" if not errors else "FAILED"))
