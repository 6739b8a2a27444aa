//! The time bounds a store promises on its default settings.

use std::time::Duration;

/// The bounds the scenarios assert, each with `margin` added for a loaded machine.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Opening a connection or taking one from the pool.
    pub connect: Duration,
    /// One call, end to end.
    pub call: Duration,
    /// From the server accepting connections again to a call succeeding.
    pub recover: Duration,
    /// Slack added to every bound: the test machine is shared and has two cores.
    pub margin: Duration,
}

impl Default for Bounds {
    /// narvik's reliability rules: connect 2 s, call 5 s, recovery 1 s, margin 750 ms.
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(2),
            call: Duration::from_secs(5),
            recover: Duration::from_secs(1),
            margin: Duration::from_millis(750),
        }
    }
}
