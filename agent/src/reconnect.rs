//! Delays between reconnection attempts: exponential backoff with full jitter.
//!
//! The agent reconnects to the coordinator forever. When the coordinator restarts, every agent
//! loses its session at the same instant; if they all waited the same exponential delays they
//! would reconnect in lockstep and hit the coordinator as a thundering herd, attempt after
//! attempt. "Full jitter" (AWS Architecture Blog, "Exponential Backoff And Jitter") spreads them
//! out: the n-th delay is drawn uniformly from `[0, min(cap, base * 2^n)]`.
//!
//! The ceilings `min(cap, base * 2^n)` come from backon's [`ExponentialBuilder`], used without
//! its own jitter: backon's jitter adds `[0, d)` on top of `d`, which keeps every agent at least
//! `d` away and so preserves the lockstep. This module draws the uniform delay under each ceiling
//! itself.
//!
//! The session loop owns one [`Reconnect`]: it sleeps for [`Reconnect::next_delay`] before each
//! attempt and calls [`Reconnect::reset`] once a session has proved stable.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The endless sequence of ceilings `min(cap, base * 2^n)` produced by backon.
type BackonCeilings = <ExponentialBuilder as BackoffBuilder>::Backoff;

/// Shape of the reconnect delays: where they start and how large they may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// Ceiling of the first delay. Small, so that a blip in the network costs about a second.
    /// A zero base gives zero delays, which only makes sense in tests.
    pub base: Duration,
    /// Largest ceiling. Bounds how long an agent stays away after the coordinator is back, and
    /// so how stale its results can get; a base above the cap is clamped to the cap.
    pub cap: Duration,
}

impl ReconnectPolicy {
    /// The default ceiling of the first delay: one second.
    pub const DEFAULT_BASE: Duration = Duration::from_secs(1);
    /// The default largest ceiling: one minute.
    pub const DEFAULT_CAP: Duration = Duration::from_secs(60);

    /// Returns the endless sequence of jittered delays for a fresh series of attempts.
    ///
    /// Each call starts a new series with its own random generator; use [`Reconnect`] when the
    /// series must be reset after a successful connection.
    pub fn delays(&self) -> impl Iterator<Item = Duration> + Send + use<> {
        Reconnect::new(*self)
    }

    /// Returns the endless sequence of ceilings `min(cap, base * 2^n)`, before jitter.
    fn ceilings(&self) -> Ceilings {
        Ceilings::new(*self)
    }
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            base: Self::DEFAULT_BASE,
            cap: Self::DEFAULT_CAP,
        }
    }
}

/// The ceilings `min(cap, base * 2^n)`: backon's exponential sequence, clamped to the cap.
///
/// backon returns the base unclamped as its first value and stops after `usize::MAX` attempts;
/// the clamp and the fallback to the cap keep the contract here exact and endless.
#[derive(Debug)]
struct Ceilings {
    backon: BackonCeilings,
    cap: Duration,
}

impl Ceilings {
    fn new(policy: ReconnectPolicy) -> Self {
        let backon = ExponentialBuilder::new()
            .with_factor(2.0)
            .with_min_delay(policy.base)
            .with_max_delay(policy.cap)
            .without_max_times()
            .build();
        Self {
            backon,
            cap: policy.cap,
        }
    }
}

impl Iterator for Ceilings {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let ceiling = self.backon.next().unwrap_or(self.cap);
        Some(ceiling.min(self.cap))
    }
}

/// Returns a duration drawn uniformly from `[0, ceiling]`, at nanosecond resolution.
fn full_jitter(rng: &mut impl Rng, ceiling: Duration) -> Duration {
    let ceiling_nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(0..=ceiling_nanos))
}

/// The reconnect state of one session loop: where it is in the backoff sequence.
///
/// ```ignore
/// let mut reconnect = Reconnect::new(ReconnectPolicy::default());
/// loop {
///     let connected_at = Instant::now();
///     let outcome = run_session(&config).await;
///     if connected_at.elapsed() >= STABLE_SESSION {
///         reconnect.reset();
///     }
///     tokio::time::sleep(reconnect.next_delay()).await;
/// }
/// ```
///
/// It is also an endless [`Iterator`] of delays.
#[derive(Debug)]
pub struct Reconnect {
    policy: ReconnectPolicy,
    ceilings: Ceilings,
    rng: StdRng,
}

impl Reconnect {
    /// Creates the state for a fresh series of attempts, with a randomly seeded generator so
    /// that agents do not share their delays.
    pub fn new(policy: ReconnectPolicy) -> Self {
        Self::with_rng(policy, StdRng::from_rng(&mut rand::rng()))
    }

    /// Creates the state with a generator seeded from `seed`, for reproducible delays in tests
    /// and simulations. Agents in production must not share a seed.
    pub fn with_seed(policy: ReconnectPolicy, seed: u64) -> Self {
        Self::with_rng(policy, StdRng::seed_from_u64(seed))
    }

    fn with_rng(policy: ReconnectPolicy, rng: StdRng) -> Self {
        Self {
            policy,
            ceilings: policy.ceilings(),
            rng,
        }
    }

    /// Returns the policy this state follows.
    pub fn policy(&self) -> ReconnectPolicy {
        self.policy
    }

    /// Returns how long to wait before the next attempt and advances the sequence.
    ///
    /// The n-th call (counting from 0 since creation or the last [`reset`](Self::reset)) returns
    /// a duration drawn uniformly from `[0, min(cap, base * 2^n)]`.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceilings.next().unwrap_or(self.policy.cap);
        full_jitter(&mut self.rng, ceiling)
    }

    /// Starts the sequence over, so that the next delay is at most `base` again.
    ///
    /// The caller decides when a connection counts as successful: resetting as soon as the TCP
    /// or TLS handshake succeeds would let a coordinator that accepts and then immediately drops
    /// sessions pin every agent at the base delay. Reset once the session has stayed up for a
    /// while (for example 30 seconds) or has completed a useful exchange.
    pub fn reset(&mut self) {
        self.ceilings = self.policy.ceilings();
    }
}

impl Iterator for Reconnect {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.next_delay())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENTS: u64 = 1000;

    fn secs(value: u64) -> Duration {
        Duration::from_secs(value)
    }

    #[test]
    fn ceilings_double_up_to_the_cap_and_stay_there() {
        let ceilings: Vec<Duration> = ReconnectPolicy::default().ceilings().take(1000).collect();
        assert_eq!(ceilings.len(), 1000, "the sequence is endless");
        assert_eq!(
            ceilings[..8],
            [
                secs(1),
                secs(2),
                secs(4),
                secs(8),
                secs(16),
                secs(32),
                secs(60),
                secs(60)
            ]
        );
        assert!(ceilings[6..].iter().all(|&ceiling| ceiling == secs(60)));
    }

    #[test]
    fn base_above_the_cap_is_clamped() {
        let policy = ReconnectPolicy {
            base: secs(90),
            cap: secs(60),
        };
        assert!(policy.ceilings().take(10).all(|ceiling| ceiling == secs(60)));
    }

    #[test]
    fn every_delay_is_within_its_ceiling() {
        let policy = ReconnectPolicy::default();
        let mut reconnect = Reconnect::with_seed(policy, 7);
        let mut count = 0;
        for ceiling in policy.ceilings().take(1000) {
            let delay = reconnect.next_delay();
            assert!(delay <= ceiling, "delay {delay:?} above ceiling {ceiling:?}");
            count += 1;
        }
        assert_eq!(count, 1000);
    }

    #[test]
    fn delays_iterator_is_endless_and_capped() {
        let delays: Vec<Duration> = ReconnectPolicy::default().delays().take(1000).collect();
        assert_eq!(delays.len(), 1000);
        assert!(delays.iter().all(|&delay| delay <= secs(60)));
    }

    #[test]
    fn jitter_spreads_a_fleet_of_agents() {
        let policy = ReconnectPolicy::default();
        let mut fleet: Vec<Reconnect> = (0..AGENTS).map(|seed| Reconnect::with_seed(policy, seed)).collect();
        for ceiling in policy.ceilings().take(5) {
            let delays: Vec<Duration> = fleet.iter_mut().map(Reconnect::next_delay).collect();
            let ceiling_secs = ceiling.as_secs_f64();

            let mut distinct = delays.clone();
            distinct.sort();
            distinct.dedup();
            assert!(distinct.len() > 990, "only {} distinct delays", distinct.len());

            // Uniform on [0, c]: mean c/2 with a standard error of c/sqrt(12 * 1000) ~ 0.009c,
            // so a tolerance of 0.1c is more than ten standard errors.
            let mean = delays.iter().map(Duration::as_secs_f64).sum::<f64>() / AGENTS as f64;
            assert!(
                (mean - ceiling_secs / 2.0).abs() < ceiling_secs * 0.1,
                "mean {mean} for ceiling {ceiling_secs}"
            );

            // No tenth of the window gets much more than its tenth of the fleet (100 expected).
            let mut buckets = [0_u32; 10];
            for delay in &delays {
                let bucket = (delay.as_secs_f64() / ceiling_secs * 10.0) as usize;
                buckets[bucket.min(9)] += 1;
            }
            assert!(
                buckets.iter().all(|&count| (50..=150).contains(&count)),
                "uneven spread {buckets:?} for ceiling {ceiling_secs}"
            );
        }
    }

    #[test]
    fn reset_goes_back_to_the_base_ceiling() {
        let policy = ReconnectPolicy::default();
        let mut reconnect = Reconnect::with_seed(policy, 42);
        for _ in 0..100 {
            for _ in 0..10 {
                reconnect.next_delay();
            }
            reconnect.reset();
            let delay = reconnect.next_delay();
            assert!(delay <= policy.base, "delay {delay:?} after reset");
        }
    }

    #[test]
    fn zero_base_gives_zero_delays() {
        let policy = ReconnectPolicy {
            base: Duration::ZERO,
            cap: secs(60),
        };
        assert!(policy.delays().take(100).all(|delay| delay.is_zero()));
    }

    #[test]
    fn reconnect_can_move_between_tasks() {
        fn assert_send<T: Send + 'static>(_: &T) {}
        let reconnect = Reconnect::new(ReconnectPolicy::default());
        assert_send(&reconnect);
        assert_send(&ReconnectPolicy::default().delays());
    }
}
