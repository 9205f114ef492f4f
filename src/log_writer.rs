//! Log output off the request path. Every log line (access lines and the
//! rest) is appended to one in-memory buffer; one thread writes whatever
//! has accumulated to standard output in one `write_all` per wake-up, so
//! under load many lines share a syscall and no request waits on stdout.
//! A line is on stdout a few milliseconds after it was logged.
//!
//! A `Mutex<Vec<u8>>` rather than a channel: appending is one `memcpy` of
//! an already formatted line into a contiguous buffer that the writer takes
//! whole by swapping it for its empty one, so there is no message, no
//! allocation handed across threads and no concatenation per line, and the
//! cap is in bytes, which is what memory is. The lock is held for that copy
//! only, never while writing.
//!
//! Bounded: past [`PENDING_CAP`] bytes waiting, a line is dropped and
//! counted (`mcp_access_log_dropped_total`) instead of making the request
//! wait for a slow or stuck reader of stdout; the writer logs one warning
//! when dropping starts. Lines are written in the order they were appended,
//! and a line is appended whole or not at all, so lines never interleave.
//! [`flush`] waits until what was appended has been written: the process
//! calls it before it exits ([`exit`]).

use prometheus::IntCounter;
use std::io::Write;
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// Bytes waiting to be written past which lines are dropped.
pub const PENDING_CAP: usize = 8 * 1024 * 1024;

/// How long [`flush`] waits for stdout: a reader that stopped reading
/// must not keep the process from exiting.
pub const FLUSH_LIMIT: Duration = Duration::from_secs(5);

/// How long the writer, woken by a line, waits for more before writing:
/// the delay a log line may see, and the least time between two writes
/// while lines trickle in.
const GATHER: Duration = Duration::from_millis(2);

/// A buffer larger than this after a burst is given back rather than kept
/// for the rest of the process's life.
const KEEP_CAPACITY: usize = 1024 * 1024;

/// Lines dropped because [`PENDING_CAP`] bytes were waiting. One per
/// process, like stdout; the metrics registry exports it.
pub static DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "mcp_access_log_dropped_total",
        "Log lines (access lines and others) dropped because stdout could not keep up",
    )
    .expect("valid metric definition")
});

/// The line the writer adds when dropping starts, given the number dropped
/// so far; `None` leaves it out (its level is filtered out).
pub type DropWarning = Box<dyn Fn(u64) -> Option<String> + Send>;

/// A handle on the buffer; clones append to the same one. As an
/// [`io::Write`](Write) (env_logger's pipe target) each `write` is one
/// whole record.
#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// The writer thread waits here for lines.
    lines: Condvar,
    /// [`LogWriter::flush_within`] waits here for the writer's progress.
    written: Condvar,
    dropped: IntCounter,
}

/// The buffer and its bookkeeping; the decisions are its methods, tested
/// without a thread.
#[derive(Debug, Default)]
struct State {
    pending: Vec<u8>,
    cap: usize,
    /// Bytes ever appended, and ever written (or lost to a failed write):
    /// a flush waits for `written` to reach `appended` as it was.
    appended: u64,
    written: u64,
    /// Dropping goes on: the last line offered was dropped.
    dropping: bool,
    /// Dropping started and the writer has not warned about it yet.
    warn: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Append {
    /// Taken; `wake`: the buffer was empty, so the writer may be asleep.
    Taken {
        wake: bool,
    },
    Dropped,
}

impl State {
    fn new(cap: usize) -> Self {
        State {
            cap,
            ..State::default()
        }
    }

    fn append(&mut self, line: &[u8]) -> Append {
        if self.pending.len() + line.len() > self.cap {
            if !self.dropping {
                self.dropping = true;
                self.warn = true;
            }
            return Append::Dropped;
        }
        let wake = self.pending.is_empty();
        self.pending.extend_from_slice(line);
        self.appended += line.len() as u64;
        self.dropping = false;
        Append::Taken { wake }
    }

    /// Hands everything pending to the writer in exchange for its empty
    /// buffer: (what `written` becomes once it is out, whether to warn).
    fn take(&mut self, batch: &mut Vec<u8>) -> (u64, bool) {
        debug_assert!(batch.is_empty());
        std::mem::swap(&mut self.pending, batch);
        (self.appended, std::mem::take(&mut self.warn))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while appending leaves bytes, not a broken
    // invariant: keep logging.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LogWriter {
    /// Starts the writer thread writing to `sink`.
    pub fn spawn(
        sink: Box<dyn Write + Send>,
        cap: usize,
        dropped: IntCounter,
        warning: DropWarning,
    ) -> std::io::Result<LogWriter> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(cap)),
            lines: Condvar::new(),
            written: Condvar::new(),
            dropped,
        });
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_out(&writer, sink, &warning))?;
        Ok(LogWriter { shared })
    }

    /// Appends one or more whole lines (newlines included); never waits
    /// for stdout. False: dropped and counted.
    pub fn append(&self, line: &[u8]) -> bool {
        let outcome = lock(&self.shared.state).append(line);
        match outcome {
            // Only an empty buffer can have a sleeping writer: one wake-up
            // (a futex call) per batch, not per line.
            Append::Taken { wake } => {
                if wake {
                    self.shared.lines.notify_one();
                }
                true
            }
            Append::Dropped => {
                self.shared.dropped.inc();
                false
            }
        }
    }

    /// Waits until every line appended before the call has been written,
    /// at most `limit`. False: stdout did not take it in time.
    pub fn flush_within(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut state = lock(&self.shared.state);
        let target = state.appended;
        while state.written < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .shared
                .written
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

/// The writer thread: sleeps until lines are pending, then writes all of
/// them at once; the lock is not held while writing.
fn write_out(shared: &Shared, mut sink: Box<dyn Write + Send>, warning: &DropWarning) {
    let mut batch = Vec::new();
    loop {
        let (upto, warn) = {
            let mut state = lock(&shared.state);
            if state.pending.is_empty() {
                while state.pending.is_empty() {
                    state = shared
                        .lines
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                // Woken by the first line after a quiet spell: let the
                // lines of the next moment join it, so a steady stream of
                // requests costs one wake-up and one write per GATHER,
                // not one per line (on two cores the writer would
                // otherwise take a context switch from a worker per line).
                drop(state);
                std::thread::sleep(GATHER);
                state = lock(&shared.state);
            }
            state.take(&mut batch)
        };
        if warn {
            // After the lines that were taken: from here on some are missing.
            if let Some(line) = warning(shared.dropped.get()) {
                batch.extend_from_slice(line.as_bytes());
            }
        }
        // A closed or broken stdout loses the batch; there is nowhere else
        // to report it, and a flush must not wait for it forever.
        let _ = sink.write_all(&batch).and_then(|()| sink.flush());
        batch.clear();
        if batch.capacity() > KEEP_CAPACITY {
            batch = Vec::new();
        }
        lock(&shared.state).written = upto;
        shared.written.notify_all();
    }
}

impl Write for LogWriter {
    /// One env_logger record: taken whole or dropped whole, never partly,
    /// and never an error (a logger has nowhere to report one).
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.append(buf);
        Ok(buf.len())
    }

    /// env_logger flushes after every record: that must not wait for
    /// stdout. [`LogWriter::flush_within`] is the waiting flush.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static GLOBAL: OnceLock<LogWriter> = OnceLock::new();

/// Makes `writer` the process's log output (once; later calls are ignored).
pub fn install(writer: LogWriter) {
    let _ = GLOBAL.set(writer);
}

/// The process's log output, once `main` installed it.
pub fn global() -> Option<&'static LogWriter> {
    GLOBAL.get()
}

/// Waits (at most [`FLUSH_LIMIT`]) until every log line so far is written.
pub fn flush() {
    if let Some(writer) = GLOBAL.get() {
        writer.flush_within(FLUSH_LIMIT);
    }
}

/// Ends the process once the log is written: every exit after start-up
/// goes through here, or the last lines (the stop message, the access
/// lines of the last requests) would be lost with the buffer.
pub fn exit(code: i32) -> ! {
    flush();
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn appending_wakes_the_writer_only_on_an_empty_buffer_and_drops_past_the_cap() {
        let mut state = State::new(10);
        assert_eq!(state.append(b"abcd\n"), Append::Taken { wake: true });
        assert_eq!(state.append(b"efgh\n"), Append::Taken { wake: false });
        // Full: dropped whole, never cut, and one warning for the episode.
        assert_eq!(state.append(b"i\n"), Append::Dropped);
        assert_eq!(state.append(b"j\n"), Append::Dropped);
        assert_eq!((state.appended, state.pending.len()), (10, 10));
        let mut batch = Vec::new();
        assert_eq!(state.take(&mut batch), (10, true));
        assert_eq!(batch, b"abcd\nefgh\n");
        assert!(state.pending.is_empty());
        assert_eq!(state.append(b"k\n"), Append::Taken { wake: true });
        assert_eq!(state.take(&mut Vec::new()), (12, false));
        // A line that can never fit is dropped, and a new episode warns again.
        assert_eq!(state.append(&[b'x'; 11]), Append::Dropped);
        assert!(state.warn);
    }

    /// A sink recording each write; the first one waits until the test
    /// lets it go, so lines pile up meanwhile as under load.
    struct Gated {
        writes: Arc<Mutex<Vec<Vec<u8>>>>,
        entered: Option<mpsc::Sender<()>>,
        release: Option<mpsc::Receiver<()>>,
    }

    impl Write for Gated {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let (Some(entered), Some(release)) = (self.entered.take(), self.release.take()) {
                let _ = entered.send(());
                let _ = release.recv();
            }
            lock(&self.writes).push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct Harness {
        writer: LogWriter,
        writes: Arc<Mutex<Vec<Vec<u8>>>>,
        entered: mpsc::Receiver<()>,
        release: mpsc::Sender<()>,
        dropped: IntCounter,
    }

    fn gated(cap: usize) -> Harness {
        let writes = Arc::new(Mutex::new(Vec::new()));
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let dropped = IntCounter::new("dropped", "test").unwrap();
        let sink = Gated {
            writes: writes.clone(),
            entered: Some(entered_tx),
            release: Some(release_rx),
        };
        let warning: DropWarning = Box::new(|n| Some(format!("WARN dropping ({n} so far)\n")));
        let writer = LogWriter::spawn(Box::new(sink), cap, dropped.clone(), warning).unwrap();
        Harness {
            writer,
            writes,
            entered,
            release,
            dropped,
        }
    }

    fn line(i: usize) -> String {
        format!("line {i:04}\n")
    }

    #[test]
    fn lines_that_arrive_during_a_write_go_out_together_in_order() {
        let h = gated(PENDING_CAP);
        assert!(h.writer.append(line(0).as_bytes()));
        h.entered.recv().unwrap();
        let later: String = (1..=500).map(line).collect();
        for i in 1..=500 {
            assert!(h.writer.append(line(i).as_bytes()));
        }
        h.release.send(()).unwrap();
        assert!(h.writer.flush_within(Duration::from_secs(30)));
        let writes = lock(&h.writes).clone();
        assert_eq!(writes.len(), 2, "one write per wake-up");
        assert_eq!(writes[0], line(0).as_bytes());
        assert_eq!(String::from_utf8_lossy(&writes[1]), later);
        assert_eq!(h.dropped.get(), 0);
    }

    #[test]
    fn past_the_cap_lines_are_dropped_counted_and_warned_about_once() {
        let one = line(0).len();
        let h = gated(10 * one);
        assert!(h.writer.append(line(0).as_bytes()));
        // The writer holds line 0 and is stuck: the buffer fills.
        h.entered.recv().unwrap();
        let taken: Vec<bool> = (1..=15)
            .map(|i| h.writer.append(line(i).as_bytes()))
            .collect();
        assert_eq!(taken.iter().filter(|t| **t).count(), 10);
        assert!(taken[..10].iter().all(|t| *t) && taken[10..].iter().all(|t| !*t));
        assert_eq!(h.dropped.get(), 5);
        h.release.send(()).unwrap();
        assert!(h.writer.flush_within(Duration::from_secs(30)));
        // Room again: taken, and no second warning.
        assert!(h.writer.append(line(99).as_bytes()));
        assert!(h.writer.flush_within(Duration::from_secs(30)));
        let out: Vec<u8> = lock(&h.writes).concat();
        let expected: String = (0..=10)
            .map(line)
            .chain(["WARN dropping (5 so far)\n".to_string(), line(99)])
            .collect();
        assert_eq!(String::from_utf8_lossy(&out), expected);
    }

    #[test]
    fn flush_waits_for_the_write_and_gives_up_on_a_stuck_sink() {
        let h = gated(PENDING_CAP);
        assert!(h.writer.flush_within(Duration::ZERO), "nothing pending");
        assert!(h.writer.append(line(0).as_bytes()));
        h.entered.recv().unwrap();
        assert!(h.writer.append(line(1).as_bytes()));
        assert!(!h.writer.flush_within(Duration::from_millis(50)));
        h.release.send(()).unwrap();
        assert!(h.writer.flush_within(Duration::from_secs(30)));
        // Returned only once both lines were out.
        assert_eq!(
            lock(&h.writes).concat(),
            format!("{}{}", line(0), line(1)).as_bytes()
        );
    }

    #[test]
    fn env_logger_records_are_taken_whole_and_flushing_them_does_not_wait() {
        let h = gated(PENDING_CAP);
        let mut pipe = h.writer.clone();
        pipe.write_all(b"first\n").unwrap();
        h.entered.recv().unwrap();
        // The sink is stuck; a record and env_logger's flush still return.
        pipe.write_all(b"second\n").unwrap();
        pipe.flush().unwrap();
        h.release.send(()).unwrap();
        assert!(h.writer.flush_within(Duration::from_secs(30)));
        assert_eq!(lock(&h.writes).concat(), b"first\nsecond\n");
    }
}
