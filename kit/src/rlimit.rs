//! The process's open-file limit, raised from its soft value to its hard
//! one at start: a gateway holds a socket per client, and the soft default
//! (often 1,024) would run out long before any configured cap.

/// Raises the soft limit of open files to the hard limit; the new soft
/// limit, or None when it cannot be read or changed.
pub fn raise_open_files() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return None;
            }
        }
    }
    Some(limit.rlim_cur)
}
