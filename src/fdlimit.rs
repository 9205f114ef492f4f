//! The open-file limit, raised at start-up as nginx's `worker_rlimit_nofile`
//! does.
//!
//! Every open MCP stream holds two descriptors in the gateway for its whole
//! life: the client's connection and the upstream connection it is proxied
//! to. A shell's or systemd's default soft limit (1,024) would cap the
//! gateway at about 384 connected clients, while the hard limit (524,288
//! under systemd, `LimitNOFILE=` in the unit) is there to be used; a process
//! may raise its soft limit up to the hard one without privileges.

use std::io;

/// Descriptors an open stream holds: client side and upstream side.
pub const FDS_PER_STREAM: u64 = 2;

/// Descriptors that are not streams: the idle upstream pool (Pingora keeps up
/// to 128 idle connections by default), listeners, the runtime's epoll and
/// wake-up descriptors per thread, logs, health checks and a margin.
pub const RESERVED_FDS: u64 = 256;

/// The number of open streams the gateway is sized for (issue 10's target):
/// below the descriptors these need, start-up warns.
pub const DESIGN_STREAMS: u64 = 10_000;

/// Linux refuses a soft limit above `fs.nr_open` (1,048,576 by default) even
/// when the hard limit is "unlimited".
const NR_OPEN_DEFAULT: u64 = 1 << 20;

/// The soft limit to set, given the current soft and hard limits and the
/// kernel's ceiling (`fs.nr_open`, if readable); `None` to keep the current
/// one (already at the hard limit, or above it in the case of an odd setup).
pub fn raised_soft(soft: u64, hard: u64, nr_open: Option<u64>) -> Option<u64> {
    let target = hard.min(nr_open.unwrap_or(NR_OPEN_DEFAULT));
    (target > soft).then_some(target)
}

/// How many streams `limit` descriptors leave room for.
pub fn stream_capacity(limit: u64) -> u64 {
    limit.saturating_sub(RESERVED_FDS) / FDS_PER_STREAM
}

/// The warning to log when `limit` is below what [`DESIGN_STREAMS`] need.
pub fn shortfall(limit: u64) -> Option<String> {
    let needed = DESIGN_STREAMS * FDS_PER_STREAM + RESERVED_FDS;
    (limit < needed).then(|| {
        format!(
            "open-file limit {limit} leaves room for about {} open MCP streams \
             ({FDS_PER_STREAM} descriptors each, {RESERVED_FDS} reserved); {DESIGN_STREAMS} \
             streams need {needed}: raise the hard limit (systemd LimitNOFILE=, \
             ulimit -Hn, the container runtime's nofile ulimit)",
            stream_capacity(limit)
        )
    })
}

/// Raises the soft limit to the hard limit and logs the effective limit (a
/// warning if it is short). Never fails start-up: a gateway with fewer
/// descriptors still serves.
pub fn raise_at_start() {
    let effective = match get() {
        Err(e) => {
            log::warn!("cannot read the open-file limit: {e}");
            return;
        }
        Ok((soft, hard)) => match raised_soft(soft, hard, nr_open()) {
            None => soft,
            Some(target) => match set_soft(target, hard) {
                Ok(()) => target,
                Err(e) => {
                    log::warn!("cannot raise the open-file limit from {soft} to {target}: {e}");
                    soft
                }
            },
        },
    };
    match shortfall(effective) {
        Some(warning) => log::warn!("{warning}"),
        None => log::info!(
            "open-file limit {effective}: room for about {} open MCP streams",
            stream_capacity(effective)
        ),
    }
}

fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn get() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // rlim_t is u64 on Linux, the only target (systemd, containers).
    Ok((lim.rlim_cur, lim.rlim_max))
}

fn set_soft(soft: u64, hard: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads only the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_goes_up_to_the_hard_one() {
        assert_eq!(raised_soft(1024, 524_288, Some(1 << 20)), Some(524_288));
    }

    #[test]
    fn an_unlimited_hard_limit_stops_at_the_kernel_ceiling() {
        assert_eq!(raised_soft(1024, u64::MAX, Some(1 << 20)), Some(1 << 20));
        assert_eq!(
            raised_soft(1024, u64::MAX, Some(2_000_000)),
            Some(2_000_000)
        );
        assert_eq!(raised_soft(1024, u64::MAX, None), Some(1 << 20));
    }

    #[test]
    fn a_limit_already_at_or_above_the_target_is_kept() {
        assert_eq!(raised_soft(65_536, 65_536, Some(1 << 20)), None);
        assert_eq!(raised_soft(u64::MAX, u64::MAX, Some(1 << 20)), None);
    }

    #[test]
    fn capacity_counts_two_descriptors_per_stream_after_the_reserve() {
        assert_eq!(stream_capacity(1024), (1024 - RESERVED_FDS) / 2);
        assert_eq!(stream_capacity(100), 0);
    }

    #[test]
    fn the_warning_starts_below_what_ten_thousand_streams_need() {
        let needed = DESIGN_STREAMS * FDS_PER_STREAM + RESERVED_FDS;
        assert!(shortfall(needed).is_none());
        assert!(shortfall(524_288).is_none());
        let warning = shortfall(1024).expect("1,024 is short");
        assert!(warning.contains("384 open MCP streams"), "{warning}");
        assert!(shortfall(needed - 1).is_some());
    }
}
