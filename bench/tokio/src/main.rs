//! The weft benchmark workloads (bench/*.c) written for Tokio's
//! multi-threaded runtime, so that bench/run can compare the two on the
//! same machine in the same run.
//!
//!   tokio-bench <workload> [--workers N] [--reps N] [--n N]
//!   tokio-bench echo_server|http_server [--workers N] [--port N]
//!
//! Same scaffolding as bench/bench.h: the workload is timed inside the
//! runtime, in a "main task" (a task spawned on the runtime, not the
//! block_on future, so that it runs on a worker like weft's main task),
//! runtime start-up excluded; one warm-up repetition, then the best of
//! `reps` (default 3), printed as
//!   RESULT tokio <workload> <value> <unit> key=value...
//! in the C programs' units. --workers 0 (the default) means the number of
//! online CPUs, like weft's default; context_switch defaults to 1 worker.
//!
//! Two ways to yield. weft_yield puts the task at the back of its worker's
//! queue, behind every task that is runnable now. Tokio's `yield_now`
//! (since Tokio 1.24) does not queue the task at all: it hands the waker to
//! the worker's defer list, which the worker wakes only when it has run out
//! of other work or reaches its periodic maintenance (every 61 polls), each
//! time after polling its driver with a zero timeout. So yield_many and
//! context_switch come in two versions here:
//!   yield_many, context_switch            a self-waking yield (SelfWakeYield
//!                                          below): the task wakes its own
//!                                          waker and returns Pending once, so
//!                                          the scheduler puts it at the back
//!                                          of the run queue: weft's operation;
//!   yield_many_yield_now,                 Tokio's `task::yield_now()`:
//!   context_switch_yield_now               Tokio's own idiom, whose cost
//!                                          includes the defer list and the
//!                                          driver polls.
//!
//! echo_server and http_server are the network baselines: servers, not
//! timed workloads, loaded by bench/run with bench/echo_load and wrk like
//! the weft example servers and the plain epoll servers (bench/epoll_*.c).
//! They are written the way a Tokio program is: a listener, a spawned task
//! per connection, AsyncReadExt/AsyncWriteExt. They print
//! "listening on port N" and serve until killed.

use std::future::Future;
use std::pin::Pin;
use std::process::exit;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use std::io::Write;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{self, JoinHandle};

const WORKLOADS: &[&str] = &[
    "spawn_many",
    "yield_many",
    "yield_many_yield_now",
    "chained_spawn",
    "chained_spawn_oneshot",
    "context_switch",
    "context_switch_yield_now",
    "park_many",
    "ping_pong",
    "echo_server",
    "http_server",
];

struct Args {
    workload: String,
    workers: usize, // 0: online CPUs
    reps: u32,
    n: u64, // 0: the workload's default
    port: u16, // servers: 0 picks a free port
}

fn usage(prog: &str) -> ! {
    eprintln!(
        "usage: {} <{}> [--workers N] [--reps N] [--n N] [--port N]",
        prog,
        WORKLOADS.join("|")
    );
    exit(2);
}

fn parse() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let prog = argv.first().map(String::as_str).unwrap_or("tokio-bench");
    if argv.len() < 2 || !WORKLOADS.contains(&argv[1].as_str()) {
        usage(prog);
    }
    let mut a = Args {
        workload: argv[1].clone(),
        workers: 0,
        reps: 3,
        n: 0,
        port: 0,
    };
    let mut i = 2;
    while i < argv.len() {
        if i + 1 >= argv.len() {
            usage(prog);
        }
        let v: u64 = argv[i + 1].parse().unwrap_or_else(|_| usage(prog));
        match argv[i].as_str() {
            "--workers" => a.workers = v as usize,
            "--reps" => a.reps = v as u32,
            "--n" => a.n = v,
            "--port" if v <= 65535 => a.port = v as u16,
            _ => usage(prog),
        }
        i += 2;
    }
    a
}

fn elapsed_ns(t0: Instant) -> u64 {
    t0.elapsed().as_nanos() as u64
}

/// Current resident set in KiB, from /proc/self/statm (as bench_rss_kib).
fn rss_kib() -> i64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<i64>().ok())
        })
        .map(|pages| pages * 4)
        .unwrap_or(0)
}

/// Peak resident set of the process so far, in KiB (as bench_peak_rss_kib).
fn peak_rss_kib() -> i64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_maxrss as i64
}

/// Warm-up, then the best of `reps`; None if any repetition failed.
/// `$rep` is an async block (evaluated afresh for each repetition) giving
/// Option<u64>, the repetition's duration in ns.
macro_rules! best {
    ($reps:expr, $rep:expr) => {{
        let mut res: Option<u64> = $rep.await;
        if res.is_some() {
            let mut b = u64::MAX;
            for _ in 0..$reps {
                match $rep.await {
                    Some(d) => b = b.min(d),
                    None => {
                        res = None;
                        break;
                    }
                }
            }
            if res.is_some() {
                res = Some(b);
            }
        }
        res
    }};
}

// ---------------------------------------------------------------- spawn_many
// From one task, spawn n tasks (default 200,000) that each return their
// index, await them all in order, check the sum. ns per task.

async fn spawn_many(a: &Args, workers: usize) -> Option<()> {
    let n = if a.n != 0 { a.n } else { 200_000 } as usize;
    // Preallocated outside the timed region, like the C program's array.
    let mut h: Vec<JoinHandle<usize>> = Vec::with_capacity(n);
    let b = best!(a.reps, async {
        let t0 = Instant::now();
        for i in 0..n {
            h.push(tokio::spawn(async move { i }));
        }
        let mut sum: u64 = 0;
        for jh in h.drain(..) {
            sum += jh.await.ok()? as u64;
        }
        let d = elapsed_ns(t0);
        let want = n as u64 * (n as u64 - 1) / 2;
        if sum != want {
            eprintln!("spawn_many: bad sum {}", sum);
            return None;
        }
        Some(d)
    })?;
    println!(
        "RESULT tokio spawn_many {:.1} ns/task tasks={} workers={}",
        b as f64 / n as f64,
        n,
        workers
    );
    Some(())
}

// ------------------------------------------------------------ the two yields

/// A yield that re-queues the task at the back of its worker's run queue,
/// as weft_yield does: the first poll wakes the task's own waker and
/// returns Pending; the second returns Ready. The wake happens while the
/// task is running, so Tokio only marks it notified; when the poll returns
/// Pending, the task harness hands it back to the scheduler as a yield
/// (multi_thread worker: `yield_now` -> `schedule_task(task, true)`), which
/// pushes it to the back of the local run queue and never to the LIFO slot.
/// This is what Tokio's own `yield_now` did before 1.24.
struct SelfWakeYield {
    yielded: bool,
}

impl Future for SelfWakeYield {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

fn self_wake_yield() -> SelfWakeYield {
    SelfWakeYield { yielded: false }
}

/// Which yield a workload uses.
#[derive(Clone, Copy)]
enum Yield {
    /// SelfWakeYield: to the back of the run queue (weft's operation).
    SelfWake,
    /// tokio::task::yield_now: deferred until the worker is out of work.
    YieldNow,
}

impl Yield {
    async fn now(self) {
        match self {
            Yield::SelfWake => self_wake_yield().await,
            Yield::YieldNow => task::yield_now().await,
        }
    }

    /// The workload's name suffix in RESULT lines.
    fn suffix(self) -> &'static str {
        match self {
            Yield::SelfWake => "",
            Yield::YieldNow => "_yield_now",
        }
    }
}

// ---------------------------------------------------------------- yield_many
// 1,000 tasks each yield n times (default 1,000). Wall ns per yield.

const YIELD_TASKS: usize = 1000;

async fn yield_many(a: &Args, workers: usize, y: Yield) -> Option<()> {
    let yields = if a.n != 0 { a.n } else { 1000 };
    let b = best!(a.reps, async {
        let t0 = Instant::now();
        let h: Vec<JoinHandle<()>> = (0..YIELD_TASKS)
            .map(|_| {
                tokio::spawn(async move {
                    for _ in 0..yields {
                        y.now().await;
                    }
                })
            })
            .collect();
        for jh in h {
            jh.await.ok()?;
        }
        Some(elapsed_ns(t0))
    })?;
    println!(
        "RESULT tokio yield_many{} {:.2} ns/yield tasks={} yields={} workers={}",
        y.suffix(),
        b as f64 / (YIELD_TASKS as f64 * yields as f64),
        YIELD_TASKS,
        yields,
        workers
    );
    Some(())
}

// ------------------------------------------------------------- chained_spawn
// A chain of n tasks (default 100,000), each spawning the next (detached:
// the JoinHandle is dropped) and ending. As in the C program, the main task
// waits for the last link by yielding until an atomic flag is set.
// ns per link. The main task polls with Tokio's yield_now, which parks it
// in the defer list until the worker runs out of links to run; weft's main
// task goes to the back of the queue each time and so takes turns with the
// links. The polling therefore costs Tokio less than it costs weft here.

static REACHED: AtomicU32 = AtomicU32::new(0);

fn spawn_link(left: u64) {
    drop(tokio::spawn(async move {
        if left == 0 {
            REACHED.store(1, Ordering::Release);
        } else {
            spawn_link(left - 1);
        }
    }));
}

async fn chained_spawn(a: &Args, workers: usize) -> Option<()> {
    let n = if a.n != 0 { a.n } else { 100_000 };
    let b = best!(a.reps, async {
        REACHED.store(0, Ordering::SeqCst);
        let t0 = Instant::now();
        spawn_link(n - 1);
        while REACHED.load(Ordering::Acquire) == 0 {
            task::yield_now().await;
        }
        Some(elapsed_ns(t0))
    })?;
    println!(
        "RESULT tokio chained_spawn {:.1} ns/link links={} workers={}",
        b as f64 / n as f64,
        n,
        workers
    );
    Some(())
}

// Variant (not in the C suite): the main task awaits a oneshot that the
// last link sends, instead of polling with yield_now. The sender is moved
// down the chain.

fn spawn_link_oneshot(left: u64, tx: oneshot::Sender<()>) {
    drop(tokio::spawn(async move {
        if left == 0 {
            let _ = tx.send(());
        } else {
            spawn_link_oneshot(left - 1, tx);
        }
    }));
}

async fn chained_spawn_oneshot(a: &Args, workers: usize) -> Option<()> {
    let n = if a.n != 0 { a.n } else { 100_000 };
    let b = best!(a.reps, async {
        let t0 = Instant::now();
        let (tx, rx) = oneshot::channel();
        spawn_link_oneshot(n - 1, tx);
        rx.await.ok()?;
        Some(elapsed_ns(t0))
    })?;
    println!(
        "RESULT tokio chained_spawn_oneshot {:.1} ns/link links={} workers={}",
        b as f64 / n as f64,
        n,
        workers
    );
    Some(())
}

// ------------------------------------------------------------ context_switch
// Two tasks switch back and forth by yielding (n = yields per task, default
// 1,000,000) on a 1-worker multi-thread runtime (Tokio cannot pin a task to
// a worker; with one worker there is nowhere else to run). The main task
// spawns both, starts the clock and awaits them (parks). ns per switch =
// total / (2 n). With the self-waking yield each yield is one switch to
// the other task, as in the C program; with yield_now both tasks go to the
// defer list and the worker wakes them after a zero-timeout park, so that
// variant also counts one park per two switches.

async fn context_switch(a: &Args, workers: usize, y: Yield) -> Option<()> {
    let n = if a.n != 0 { a.n } else { 1_000_000 };
    let b = best!(a.reps, async {
        let pingpong = move || async move {
            for _ in 0..n {
                y.now().await;
            }
        };
        let h0 = tokio::spawn(pingpong());
        let h1 = tokio::spawn(pingpong());
        let t0 = Instant::now();
        h0.await.ok()?;
        h1.await.ok()?;
        Some(elapsed_ns(t0))
    })?;
    println!(
        "RESULT tokio context_switch{} {:.2} ns/switch switches={} workers={}",
        y.suffix(),
        b as f64 / (2.0 * n as f64),
        2 * n,
        workers
    );
    Some(())
}

// ----------------------------------------------------------------- park_many
// n tasks (default 1,000,000) parked at once, each awaiting one gate, then
// released and gathered. The gate: a gate task that yields until an atomic
// flag opens (as in the C program), then signals a tokio::sync::watch
// channel; each waiter holds a clone of the watch::Receiver and awaits
// changed() (weft's waiters instead await the gate task's completion;
// Tokio allows only one JoinHandle per task). Reports seconds per
// repetition and RSS per parked task: growth of /proc/self/statm's
// resident size, sampled once all waiters have started, over its size
// before the first repetition, divided by n (max over repetitions).

static PARKED: AtomicUsize = AtomicUsize::new(0);
static OPEN_GATE: AtomicBool = AtomicBool::new(false);

async fn park_many(a: &Args, workers: usize) -> Option<()> {
    let n = if a.n != 0 { a.n } else { 1_000_000 } as usize;
    let mut h: Vec<JoinHandle<bool>> = Vec::with_capacity(n);
    let rss_base = rss_kib();
    let mut parked_rss_kib: i64 = 0;
    let b = best!(a.reps, async {
        let t0 = Instant::now();
        PARKED.store(0, Ordering::SeqCst);
        OPEN_GATE.store(false, Ordering::SeqCst);
        let (tx, rx) = watch::channel(());
        let gate = tokio::spawn(async move {
            while !OPEN_GATE.load(Ordering::Acquire) {
                task::yield_now().await;
            }
            tx.send(()).is_ok()
        });
        for _ in 0..n {
            let mut rx = rx.clone();
            h.push(tokio::spawn(async move {
                PARKED.fetch_add(1, Ordering::Relaxed);
                rx.changed().await.is_ok()
            }));
        }
        drop(rx);
        while PARKED.load(Ordering::Relaxed) < n {
            task::yield_now().await;
        }
        let rss = rss_kib() - rss_base;
        if rss > parked_rss_kib {
            parked_rss_kib = rss;
        }
        OPEN_GATE.store(true, Ordering::Release);
        let mut ok = true;
        for jh in h.drain(..) {
            ok &= jh.await.unwrap_or(false);
        }
        ok &= gate.await.unwrap_or(false);
        if !ok {
            eprintln!("park_many: a waiter or the gate failed");
            return None;
        }
        Some(elapsed_ns(t0))
    })?;
    let peak = peak_rss_kib();
    println!(
        "RESULT tokio park_many {:.3} s tasks={} workers={} rss_per_task_kib={:.2} peak_rss_mib={}",
        b as f64 / 1e9,
        n,
        workers,
        parked_rss_kib as f64 / n as f64,
        peak / 1024
    );
    Some(())
}

// ----------------------------------------------------------------- ping_pong
// 1,000 pairs of tasks pass a token back and forth n round trips (default
// 200) over two tokio::sync::mpsc channels of capacity 1 each, all pairs at
// once, as bench/ping_pong.c does with weft_chan. ns per round trip (wall
// time over all pairs' round trips).
//
// The timed region is the same as the C program's: spawning the 2,000
// tasks, the round trips, awaiting the tasks. The 2,000 channels are made
// before the clock starts, as the C program makes its channels before the
// first repetition: the C program reuses its channels in every repetition,
// while a Tokio channel's halves move into the tasks and are dropped with
// them, so here each repetition makes fresh ones, untimed. The handle
// vector is allocated untimed too (the C program's task array is).

async fn ping_pong(a: &Args, workers: usize) -> Option<()> {
    let trips = if a.n != 0 { a.n } else { 200 };
    let pairs: u64 = 1000;
    type Pair = (
        (mpsc::Sender<u64>, mpsc::Receiver<u64>),
        (mpsc::Sender<u64>, mpsc::Receiver<u64>),
    );
    let b = best!(a.reps, async {
        let chans: Vec<Pair> = (0..pairs)
            .map(|_| (mpsc::channel::<u64>(1), mpsc::channel::<u64>(1)))
            .collect();
        let mut hs: Vec<JoinHandle<bool>> = Vec::with_capacity(2 * pairs as usize);
        let t0 = Instant::now();
        for ((atx, mut arx), (btx, mut brx)) in chans {
            hs.push(tokio::spawn(async move {
                for _ in 0..trips {
                    let Some(t) = arx.recv().await else { return false };
                    if btx.send(t).await.is_err() {
                        return false;
                    }
                }
                true
            }));
            hs.push(tokio::spawn(async move {
                for i in 0..trips {
                    if atx.send(i).await.is_err() {
                        return false;
                    }
                    if brx.recv().await != Some(i) {
                        return false;
                    }
                }
                true
            }));
        }
        for h in hs {
            if !h.await.ok()? {
                return None;
            }
        }
        Some(elapsed_ns(t0))
    })?;
    println!(
        "RESULT tokio ping_pong {:.1} ns/roundtrip pairs={} trips={} workers={}",
        b as f64 / (pairs * trips) as f64,
        pairs,
        trips,
        workers
    );
    Some(())
}

// ---------------------------------------------------------------------- main

async fn amain(a: Args, workers: usize) -> Option<()> {
    match a.workload.as_str() {
        "spawn_many" => spawn_many(&a, workers).await,
        "yield_many" => yield_many(&a, workers, Yield::SelfWake).await,
        "yield_many_yield_now" => yield_many(&a, workers, Yield::YieldNow).await,
        "chained_spawn" => chained_spawn(&a, workers).await,
        "chained_spawn_oneshot" => chained_spawn_oneshot(&a, workers).await,
        "context_switch" => context_switch(&a, workers, Yield::SelfWake).await,
        "context_switch_yield_now" => context_switch(&a, workers, Yield::YieldNow).await,
        "park_many" => park_many(&a, workers).await,
        "ping_pong" => ping_pong(&a, workers).await,
        "echo_server" => echo_server(&a).await,
        "http_server" => http_server(&a).await,
        _ => None,
    }
}

// ------------------------------------------------------------------- servers

async fn listen(port: u16) -> Option<TcpListener> {
    match TcpListener::bind(("0.0.0.0", port)).await {
        Ok(l) => {
            let p = l.local_addr().map(|a| a.port()).unwrap_or(0);
            println!("listening on port {}", p);
            let _ = std::io::stdout().flush();
            Some(l)
        }
        Err(e) => {
            eprintln!("listen: {}", e);
            None
        }
    }
}

/// Accepts for ever, a spawned task per connection (TCP_NODELAY, as the
/// weft and epoll servers set it).
async fn serve<F, Fut>(a: &Args, conn: F) -> Option<()>
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let l = listen(a.port).await?;
    loop {
        match l.accept().await {
            Ok((s, _)) => {
                let _ = s.set_nodelay(true);
                tokio::spawn(conn(s));
            }
            // Out of descriptors and the like: let connections finish.
            Err(_) => task::yield_now().await,
        }
    }
}

/// Echo: what comes in goes back, until end of stream or an error.
async fn echo_conn(mut s: TcpStream) {
    let mut buf = vec![0u8; 16384];
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if s.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn echo_server(a: &Args) -> Option<()> {
    serve(a, echo_conn).await
}

const HTTP_OK: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!";
const HTTP_BAD: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const HTTP_HDR_MAX: usize = 8 * 1024;

/// One request head (without its final CRLF CRLF): whether it is one
/// (request line "METHOD TARGET HTTP/1.x"), whether the connection stays
/// open after it, and the body length to skip.
fn http_head(head: &[u8]) -> Option<(bool, usize)> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let req: Vec<&str> = lines.next()?.split(' ').collect();
    if req.len() != 3 || !req[2].starts_with("HTTP/1.") {
        return None;
    }
    let mut keep = req[2] == "HTTP/1.1";
    let mut body = 0usize;
    for l in lines {
        let (k, v) = l.split_once(':')?;
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            body = v.parse().ok()?;
        } else if k.eq_ignore_ascii_case("connection") {
            keep = if v.eq_ignore_ascii_case("close") {
                false
            } else {
                keep || v.eq_ignore_ascii_case("keep-alive")
            };
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            return None; // no chunked bodies here
        }
    }
    Some((keep, body))
}

/// HTTP/1.1 keep-alive, pipelined requests answered in order with one
/// write per read; a malformed or oversized head gets 400 and a close.
async fn http_conn(mut s: TcpStream) {
    let mut buf: Vec<u8> = Vec::with_capacity(HTTP_HDR_MAX);
    let mut out: Vec<u8> = Vec::new();
    let mut skip = 0usize; // body bytes still to drop
    loop {
        let mut keep = true;
        let mut start = 0usize;
        loop {
            if skip > 0 {
                let k = skip.min(buf.len() - start);
                start += k;
                skip -= k;
                if skip > 0 {
                    break;
                }
            }
            let end = match buf[start..].windows(4).position(|w| w == b"\r\n\r\n") {
                Some(end) => end,
                None => {
                    if buf.len() - start > HTTP_HDR_MAX {
                        out.extend_from_slice(HTTP_BAD);
                        keep = false;
                    }
                    break;
                }
            };
            match http_head(&buf[start..start + end]) {
                Some((k, body)) => {
                    out.extend_from_slice(HTTP_OK);
                    start += end + 4;
                    skip = body;
                    if !k {
                        keep = false;
                        break;
                    }
                }
                None => {
                    out.extend_from_slice(HTTP_BAD);
                    keep = false;
                    break;
                }
            }
        }
        buf.drain(..start);
        if !out.is_empty() {
            if s.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if !keep {
            let _ = s.shutdown().await;
            return;
        }
        match s.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

async fn http_server(a: &Args) -> Option<()> {
    serve(a, http_conn).await
}

fn main() {
    let a = parse();
    let mut workers = a.workers;
    if workers == 0 {
        workers = if a.workload.starts_with("context_switch") {
            1
        } else {
            // Like bench_workers(): sysconf(_SC_NPROCESSORS_ONLN).
            let c = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
            if c > 0 {
                c as usize
            } else {
                1
            }
        };
    }
    // The I/O driver only for the servers: the timed workloads need none.
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(workers);
    if a.workload.ends_with("_server") {
        b.enable_io();
        // A shell starts background commands with SIGINT ignored; the
        // servers are stopped with it, as the C servers are.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
        }
    }
    let rt = match b.build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio runtime: {}", e);
            exit(1);
        }
    };
    // The main task is a spawned task (on a worker), like weft's main task.
    let res = rt.block_on(async move { tokio::spawn(amain(a, workers)).await });
    drop(rt);
    match res {
        Ok(Some(())) => {}
        _ => exit(1),
    }
}
