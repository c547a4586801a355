//! Failure injection for the fault tests: a debug build stops dead at a
//! named point when `OFFERGATE_FAULT` names it (comma-separated), as a
//! process killed there would. Release builds compile it to nothing.

/// Aborts the process at `point` when the environment asks for it.
#[inline]
pub fn point(point: &str) {
    #[cfg(debug_assertions)]
    if let Ok(wanted) = std::env::var("OFFERGATE_FAULT")
        && wanted.split(',').any(|w| w.trim() == point)
    {
        eprintln!("offergate: injected fault at {point}: aborting");
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = point;
}
