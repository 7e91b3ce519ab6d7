//! Canaries: a function may send a share of its invocations to one of its kept versions other
//! than the current one (the store holds which version, what share and since when:
//! `store/versions.rs`). The split is drawn per invocation; what each version's invocations
//! came to since the canary started is tallied here, in the Core's memory, for the canary
//! route (`GET /v1/fn/{module}/{function}/canary`) to answer, and counted in `/metrics`.
//!
//! Tallies exist only for functions whose canary ran since this Core started (so they are
//! bounded by the functions) and start again from zero when the Core does; `/metrics` keeps
//! its counters as Prometheus counters do.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Which side of a canary's split an invocation took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Track {
    /// The current version.
    Stable,
    /// The canary's version.
    Canary,
}

impl Track {
    /// Its name in answers, activation records and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Track::Stable => "stable",
            Track::Canary => "canary",
        }
    }
}

/// The version an invocation runs, and the side of the split it took when its function has
/// a canary (`None`: no canary, or a call pinned to a version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The version's number.
    pub version: i64,
    /// The side of the canary's split, and when that canary started.
    pub split: Option<(Track, i64)>,
}

impl Route {
    /// A route outside any split.
    pub fn plain(version: i64) -> Self {
        Self {
            version,
            split: None,
        }
    }

    /// The side of the split, if there was one.
    pub fn track(&self) -> Option<Track> {
        self.split.map(|(track, _)| track)
    }
}

/// Whether one invocation goes to a canary that gets `percent` of them: drawn independently
/// per invocation, so any number of Cores and callers split the same way.
pub fn draw(percent: u8) -> Track {
    if rand::random_range(0..100u8) < percent {
        Track::Canary
    } else {
        Track::Stable
    }
}

/// What one version's invocations came to under a canary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionTally {
    /// The version.
    pub version: i64,
    /// Its side of the split.
    pub track: Track,
    /// Invocations by outcome (`ok`, `function_error`, `trap`, `timeout`, `no_worker`, ...).
    pub outcomes: BTreeMap<&'static str, u64>,
}

#[derive(Debug)]
struct Tally {
    /// The start of the canary counted (another start is another canary).
    since: i64,
    versions: BTreeMap<i64, VersionTally>,
}

/// The tallies of every running canary.
#[derive(Debug, Default)]
pub struct Tallies {
    /// module → function → tally (nested so a count borrows its `&str`s).
    by_function: Mutex<HashMap<String, HashMap<String, Tally>>>,
}

impl Tallies {
    /// Counts an invocation of `module/name` that took `route` and ended with `outcome`
    /// (nothing when it took no split).
    pub fn count(&self, module: &str, name: &str, route: Route, outcome: &'static str) {
        let Some((track, since)) = route.split else {
            return;
        };
        let mut all = self.by_function.lock().unwrap_or_else(|p| p.into_inner());
        let names = match all.get_mut(module) {
            Some(names) => names,
            None => all.entry(module.to_string()).or_default(),
        };
        let tally = match names.get_mut(name) {
            Some(tally) => tally,
            None => names.entry(name.to_string()).or_insert(Tally {
                since,
                versions: BTreeMap::new(),
            }),
        };
        if tally.since != since {
            // A canary started again (perhaps of another version): its counts start over.
            if since < tally.since {
                return; // an invocation of the previous canary, finishing late
            }
            tally.since = since;
            tally.versions.clear();
        }
        let version = tally
            .versions
            .entry(route.version)
            .or_insert_with(|| VersionTally {
                version: route.version,
                track,
                outcomes: BTreeMap::new(),
            });
        version.track = track;
        *version.outcomes.entry(outcome).or_default() += 1;
    }

    /// What the canary of `module/name` that started at `since` came to so far, by version.
    pub fn of(&self, module: &str, name: &str, since: i64) -> Vec<VersionTally> {
        let all = self.by_function.lock().unwrap_or_else(|p| p.into_inner());
        match all.get(module).and_then(|names| names.get(name)) {
            Some(tally) if tally.since == since => tally.versions.values().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Drops the tally of `module/name` (its canary ended, or the function went).
    pub fn forget(&self, module: &str, name: &str) {
        let mut all = self.by_function.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(names) = all.get_mut(module) {
            names.remove(name);
            if names.is_empty() {
                all.remove(module);
            }
        }
    }

    /// Drops the tallies of every function of `module` (the module went).
    pub fn forget_module(&self, module: &str) {
        self.by_function
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(module);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(version: i64, track: Track, since: i64) -> Route {
        Route {
            version,
            split: Some((track, since)),
        }
    }

    #[test]
    fn the_draw_sends_about_its_share() {
        // 100,000 draws at 10%: the mean is 10,000, the standard deviation ~95; six of them
        // either side fails once in ~10^9 runs.
        let canary = (0..100_000).filter(|_| draw(10) == Track::Canary).count();
        assert!((9_430..=10_570).contains(&canary), "{canary} of 100,000");
        assert!((0..1_000).all(|_| draw(0) == Track::Stable));
        assert!((0..1_000).all(|_| draw(100) == Track::Canary));
    }

    #[test]
    fn counts_by_version_and_outcome_and_starts_over_with_a_new_canary() {
        let tallies = Tallies::default();
        tallies.count("m", "f", Route::plain(3), "ok");
        assert!(
            tallies.of("m", "f", 0).is_empty(),
            "a plain call is not counted"
        );
        tallies.count("m", "f", split(3, Track::Stable, 100), "ok");
        tallies.count("m", "f", split(3, Track::Stable, 100), "ok");
        tallies.count("m", "f", split(2, Track::Canary, 100), "function_error");
        let tally = tallies.of("m", "f", 100);
        assert_eq!(tally.len(), 2);
        assert_eq!((tally[0].version, tally[0].track), (2, Track::Canary));
        assert_eq!(tally[0].outcomes.get("function_error"), Some(&1));
        assert_eq!((tally[1].version, tally[1].track), (3, Track::Stable));
        assert_eq!(tally[1].outcomes.get("ok"), Some(&2));
        assert!(tallies.of("m", "f", 99).is_empty(), "another canary's");

        // A new canary starts from nothing; a late call of the old one is not mixed in.
        tallies.count("m", "f", split(1, Track::Canary, 200), "ok");
        tallies.count("m", "f", split(2, Track::Canary, 100), "ok");
        let tally = tallies.of("m", "f", 200);
        assert_eq!(tally.len(), 1);
        assert_eq!(tally[0].version, 1);

        tallies.forget("m", "f");
        assert!(tallies.of("m", "f", 200).is_empty());
        tallies.count("m", "g", split(1, Track::Canary, 5), "ok");
        tallies.forget_module("m");
        assert!(tallies.of("m", "g", 5).is_empty());
    }
}
