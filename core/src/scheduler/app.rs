//! FunLess's APP scheduling scripts (YAML).
//!
//! A script is a list of tags; each tag maps to ordered blocks of workers and a `followup`:
//!
//! ```yaml
//! - edge:                       # functions whose metadata tag is "edge"
//!     - workers: [pi-1, pi-2]   # worker names, or tags given with --tag
//!       strategy: best-first    # best-first (default) | random | platform
//!       invalidate:
//!         capacity_used: 50%    # skip a worker whose memory would be over 50 % used
//!         max_concurrent_invocations: 4
//!     - workers: "*"            # every worker
//!       strategy: platform
//!   followup: default           # fail (default) | default: then try the "default" tag
//! - default:
//!     - workers: "*"
//! ```
//!
//! Blocks are tried in order; the first block with a valid worker decides. A worker is valid
//! when its free memory covers the function's need and no `invalidate` rule excludes it.
//! `best-first` takes the first valid worker in the block's order, `random` any valid one,
//! `platform` asks the default policy among the valid ones. A function whose tag the script
//! lacks uses the script's `default` tag. A block's `affinity` list (`[a, "!b"]`) is accepted
//! and shown, as FunLess does, and, as in FunLess, not applied.

use std::collections::HashMap;

use rand::Rng;
use serde_yaml_ng::Value;

use super::{Candidate, NoWorker, best_of};

/// Name of the tag used when a function's tag is missing from the script.
pub const DEFAULT_TAG: &str = "default";

/// A parsed script.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    tags: HashMap<String, Tag>,
}

#[derive(Debug, Clone, PartialEq)]
struct Tag {
    blocks: Vec<Block>,
    followup: Followup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Followup {
    Fail,
    Default,
}

impl Followup {
    fn as_str(self) -> &'static str {
        match self {
            Followup::Fail => "fail",
            Followup::Default => "default",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Block {
    workers: Workers,
    strategy: Strategy,
    /// Largest share of the worker's memory in use after placing the function, percent.
    capacity_used: Option<f64>,
    /// Invocations in flight at which the worker stops being valid.
    max_concurrent: Option<u64>,
    /// FunLess's `affinity` entries, kept to show them (FunLess does not apply them either).
    affinity: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Workers {
    All,
    Named(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    BestFirst,
    Random,
    Platform,
}

impl Strategy {
    fn as_str(self) -> &'static str {
        match self {
            Strategy::BestFirst => "best-first",
            Strategy::Random => "random",
            Strategy::Platform => "platform",
        }
    }
}

/// Why a script was refused, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

fn err<T>(message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(message.into()))
}

impl Script {
    /// Parses and checks a script.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let yaml: Value = serde_yaml_ng::from_str(text)
            .map_err(|e| ParseError(format!("not valid YAML: {e}")))?;
        let Value::Sequence(entries) = yaml else {
            return err("a script is a list of tags (`- tag_name: [blocks]`)");
        };
        if entries.is_empty() {
            return err("the script has no tags");
        }
        let mut tags = HashMap::new();
        for (i, entry) in entries.iter().enumerate() {
            let (name, tag) =
                parse_tag(entry).map_err(|e| ParseError(format!("entry {}: {e}", i + 1)))?;
            if tags.insert(name.clone(), tag).is_some() {
                return err(format!("tag '{name}' is defined twice"));
            }
        }
        Ok(Self { tags })
    }

    /// The script in FunLess's parsed shape (`Parsers.APP.to_map`), for API answers.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let limit = |v: Option<serde_json::Value>| v.unwrap_or_else(|| json!("infinity"));
        let tags: serde_json::Map<String, serde_json::Value> = self
            .tags
            .iter()
            .map(|(name, tag)| {
                let blocks: Vec<serde_json::Value> = tag
                    .blocks
                    .iter()
                    .map(|b| {
                        let (anti, affinity): (Vec<&String>, Vec<&String>) =
                            b.affinity.iter().partition(|a| a.starts_with('!'));
                        let anti: Vec<&str> = anti.iter().map(|a| &a[1..]).collect();
                        json!({
                            "workers": match &b.workers {
                                Workers::All => json!("*"),
                                Workers::Named(names) => json!(names),
                            },
                            "strategy": b.strategy.as_str(),
                            "affinity": { "affinity": affinity, "antiaffinity": anti },
                            "invalidate": {
                                "capacity_used": limit(b.capacity_used.map(|p| json!(p))),
                                "max_concurrent_invocations":
                                    limit(b.max_concurrent.map(|m| json!(m))),
                            },
                        })
                    })
                    .collect();
                let tag = json!({ "blocks": blocks, "followup": tag.followup.as_str() });
                (name.clone(), tag)
            })
            .collect();
        json!({ "tags": tags })
    }

    /// Chooses a worker for a function with metadata tag `tag` needing `need_bytes`.
    pub fn select<K: Copy>(
        &self,
        script: &str,
        tag: Option<&str>,
        candidates: &[Candidate<'_, K>],
        need_bytes: u64,
        turn: u64,
    ) -> Result<K, NoWorker> {
        if candidates.is_empty() {
            return Err(NoWorker::NoneConnected);
        }
        let wanted = tag.unwrap_or(DEFAULT_TAG);
        let default = self.tags.get(DEFAULT_TAG);
        let (used, rule) = match self.tags.get(wanted) {
            Some(rule) => (wanted, rule),
            None => match default {
                Some(rule) => (DEFAULT_TAG, rule),
                None => {
                    return Err(NoWorker::NoMatchingTag {
                        script: script.to_string(),
                        tag: wanted.to_string(),
                    });
                }
            },
        };
        if let Some(key) = on_blocks(&rule.blocks, candidates, need_bytes, turn) {
            return Ok(key);
        }
        if rule.followup == Followup::Default
            && used != DEFAULT_TAG
            && let Some(key) =
                default.and_then(|d| on_blocks(&d.blocks, candidates, need_bytes, turn))
        {
            return Ok(key);
        }
        Err(NoWorker::NoValidWorker {
            script: script.to_string(),
            tag: used.to_string(),
            workers: candidates.len(),
            followup: rule.followup.as_str(),
        })
    }
}

fn on_blocks<K: Copy>(
    blocks: &[Block],
    candidates: &[Candidate<'_, K>],
    need_bytes: u64,
    turn: u64,
) -> Option<K> {
    blocks
        .iter()
        .find_map(|block| block.choose(candidates, need_bytes, turn))
}

impl Block {
    fn valid<K>(&self, c: &Candidate<'_, K>, need_bytes: u64) -> bool {
        if c.memory_free < need_bytes {
            return false;
        }
        if self.max_concurrent.is_some_and(|max| c.in_flight >= max) {
            return false;
        }
        match self.capacity_used {
            Some(limit) if c.memory_total > 0 => {
                let used = c.memory_total.saturating_sub(c.memory_free) + need_bytes;
                used as f64 / c.memory_total as f64 * 100.0 <= limit
            }
            Some(_) => false,
            None => true,
        }
    }

    fn choose<K: Copy>(
        &self,
        candidates: &[Candidate<'_, K>],
        need_bytes: u64,
        turn: u64,
    ) -> Option<K> {
        // Valid workers in the block's order: the order of its list, or the workers' names for "*".
        let mut valid: Vec<&Candidate<'_, K>> = match &self.workers {
            Workers::All => {
                let mut all: Vec<_> = candidates.iter().collect();
                all.sort_by(|a, b| a.name.cmp(b.name));
                all
            }
            Workers::Named(names) => names
                .iter()
                .flat_map(|name| {
                    candidates
                        .iter()
                        .filter(move |c| c.name == name || c.tags.iter().any(|t| t == name))
                })
                .collect(),
        };
        valid.retain(|c| self.valid(c, need_bytes));
        valid.dedup_by_key(|c| c.name);
        match self.strategy {
            Strategy::BestFirst => valid.first().map(|c| c.key),
            Strategy::Random if valid.is_empty() => None,
            Strategy::Random => Some(valid[rand::rng().random_range(0..valid.len())].key),
            Strategy::Platform => best_of(valid.into_iter(), turn),
        }
    }
}

fn parse_tag(entry: &Value) -> Result<(String, Tag), String> {
    let Value::Mapping(map) = entry else {
        return Err("each entry is a map `tag_name: [blocks]` with an optional `followup`".into());
    };
    let mut name = None;
    let mut followup = Followup::Fail;
    for (key, value) in map {
        let Some(key) = key.as_str() else {
            return Err("keys must be strings".into());
        };
        if key == "followup" {
            followup = match value.as_str() {
                Some("fail") => Followup::Fail,
                Some("default") => Followup::Default,
                _ => return Err("followup must be 'fail' or 'default'".into()),
            };
        } else if name.is_some() {
            return Err(format!(
                "unexpected key '{key}': one tag per entry (plus `followup`)"
            ));
        } else {
            name = Some((key.to_string(), value));
        }
    }
    let Some((name, blocks)) = name else {
        return Err("the entry names no tag".into());
    };
    let Value::Sequence(blocks) = blocks else {
        return Err(format!(
            "tag '{name}': its value must be a non-empty list of blocks"
        ));
    };
    if blocks.is_empty() {
        return Err(format!("tag '{name}' has no blocks"));
    }
    let blocks = blocks
        .iter()
        .enumerate()
        .map(|(i, b)| parse_block(b).map_err(|e| format!("tag '{name}', block {}: {e}", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((name, Tag { blocks, followup }))
}

fn parse_block(block: &Value) -> Result<Block, String> {
    let Value::Mapping(map) = block else {
        return Err("a block is a map with `workers`".into());
    };
    let mut workers = None;
    let mut strategy = Strategy::BestFirst;
    let mut capacity_used = None;
    let mut max_concurrent = None;
    let mut affinity = Vec::new();
    for (key, value) in map {
        match key.as_str() {
            Some("workers") => {
                workers = Some(match value {
                    Value::String(s) if s == "*" => Workers::All,
                    Value::String(s) => Workers::Named(vec![s.clone()]),
                    Value::Sequence(names) => Workers::Named(
                        names
                            .iter()
                            .map(|n| n.as_str().map(str::to_string))
                            .collect::<Option<Vec<_>>>()
                            .ok_or("workers must be \"*\" or a list of worker names or tags")?,
                    ),
                    _ => {
                        return Err(
                            "workers must be \"*\" or a list of worker names or tags".into()
                        );
                    }
                })
            }
            Some("strategy") => {
                strategy = match value.as_str() {
                    Some("best-first") => Strategy::BestFirst,
                    Some("random") => Strategy::Random,
                    Some("platform") => Strategy::Platform,
                    _ => return Err("strategy must be 'best-first', 'random' or 'platform'".into()),
                }
            }
            Some("invalidate") => {
                let Value::Mapping(rules) = value else {
                    return Err("invalidate must be a map".into());
                };
                for (rule, value) in rules {
                    match rule.as_str() {
                        Some("capacity_used") => capacity_used = Some(percentage(value)?),
                        Some("max_concurrent_invocations") => {
                            max_concurrent = Some(value.as_u64().ok_or(
                                "max_concurrent_invocations must be a non-negative integer",
                            )?)
                        }
                        _ => {
                            return Err(format!(
                                "unknown invalidate rule {}: expected capacity_used or max_concurrent_invocations",
                                key_text(rule)
                            ));
                        }
                    }
                }
            }
            Some("affinity") => {
                affinity = match value {
                    Value::Sequence(items) => items
                        .iter()
                        .map(|i| i.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                        .ok_or("affinity must be a list of worker names or tags")?,
                    _ => return Err("affinity must be a list of worker names or tags".into()),
                }
            }
            _ => {
                return Err(format!(
                    "unknown key {}: expected workers, strategy, invalidate or affinity",
                    key_text(key)
                ));
            }
        }
    }
    Ok(Block {
        workers: workers.ok_or("the block has no `workers`")?,
        strategy,
        capacity_used,
        max_concurrent,
        affinity,
    })
}

fn key_text(key: &Value) -> String {
    match key.as_str() {
        Some(s) => format!("'{s}'"),
        None => "(not a string)".into(),
    }
}

/// `50`, `50.5`, `"50"` or `"50%"`, between 0 and 100.
fn percentage(value: &Value) -> Result<f64, String> {
    let number = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().trim_end_matches('%').trim().parse().ok(),
        _ => None,
    };
    match number {
        Some(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err("capacity_used must be a percentage between 0 and 100, like 50%".into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn w(key: u32, name: &'static str, free: u64, in_flight: u64) -> Candidate<'static, u32> {
        Candidate {
            key,
            name,
            tags: &[],
            memory_total: 1000,
            memory_free: free,
            in_flight,
            cpu_load_permille: 0,
            has_code: false,
        }
    }

    const SCRIPT: &str = r#"
- edge:
    - workers: [b, a]
      invalidate:
        capacity_used: 50%
        max_concurrent_invocations: 2
    - workers: ["c"]
      strategy: best-first
  followup: default
- strict:
    - workers: [a]
- default:
    - workers: "*"
      strategy: platform
"#;

    #[test]
    fn best_first_follows_the_block_order_and_invalidation() {
        let s = Script::parse(SCRIPT).unwrap();
        let workers = [w(1, "a", 900, 0), w(2, "b", 900, 0), w(3, "c", 900, 0)];
        // b is listed first.
        assert_eq!(s.select("s", Some("edge"), &workers, 100, 0), Ok(2));
        // b at its concurrency limit: a.
        let workers = [w(1, "a", 900, 0), w(2, "b", 900, 2), w(3, "c", 900, 0)];
        assert_eq!(s.select("s", Some("edge"), &workers, 100, 0), Ok(1));
        // Both over 50 % used once the function is placed (1000 - 500 + 50 = 55 %): next block.
        let workers = [w(1, "a", 500, 0), w(2, "b", 500, 0), w(3, "c", 100, 0)];
        assert_eq!(s.select("s", Some("edge"), &workers, 50, 0), Ok(3));
        assert_eq!(
            s.select("s", Some("edge"), &workers, 200, 0),
            Ok(1),
            "followup default: the platform picks among the valid ones"
        );
    }

    #[test]
    fn the_parsed_shape_is_funless_s() {
        let s = Script::parse(
            "- edge:\n  - workers: [a]\n    affinity: [x, '!y']\n    invalidate: {capacity_used: 50%}\n  followup: default",
        )
        .unwrap();
        assert_eq!(
            s.to_json(),
            serde_json::json!({ "tags": { "edge": {
                "followup": "default",
                "blocks": [{
                    "workers": ["a"],
                    "strategy": "best-first",
                    "affinity": { "affinity": ["x"], "antiaffinity": ["y"] },
                    "invalidate": { "capacity_used": 50.0, "max_concurrent_invocations": "infinity" },
                }],
            } } })
        );
    }

    #[test]
    fn followup_fail_and_missing_tags() {
        let s = Script::parse(SCRIPT).unwrap();
        let workers = [w(1, "a", 10, 0), w(2, "b", 900, 0)];
        let e = s.select("s", Some("strict"), &workers, 100, 0).unwrap_err();
        assert!(
            matches!(e, NoWorker::NoValidWorker { ref tag, followup: "fail", .. } if tag == "strict"),
            "{e}"
        );
        // An unknown tag uses the default tag.
        assert_eq!(s.select("s", Some("other"), &workers, 100, 0), Ok(2));
        assert_eq!(s.select("s", None, &workers, 100, 0), Ok(2));
        let no_default = Script::parse("- only:\n    - workers: '*'\n").unwrap();
        assert_eq!(
            no_default.select("s", Some("x"), &workers, 1, 0),
            Err(NoWorker::NoMatchingTag {
                script: "s".into(),
                tag: "x".into()
            })
        );
        assert_eq!(
            no_default.select("s", Some("x"), &[] as &[Candidate<'_, u32>], 1, 0),
            Err(NoWorker::NoneConnected)
        );
    }

    #[test]
    fn random_picks_only_valid_workers_and_names_match_tags() {
        let s = Script::parse("- t:\n    - workers: [gpu]\n      strategy: random\n").unwrap();
        let gpu = ["gpu".to_string()];
        let mut a = w(1, "a", 900, 0);
        a.tags = &gpu;
        let mut b = w(2, "b", 900, 0);
        b.tags = &gpu;
        let c = w(3, "c", 900, 0);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            seen.insert(
                s.select("s", Some("t"), &[a.clone(), b.clone(), c.clone()], 1, 0)
                    .unwrap(),
            );
        }
        assert_eq!(seen, [1, 2].into_iter().collect());
        b.memory_free = 0;
        for _ in 0..50 {
            assert_eq!(
                s.select("s", Some("t"), &[a.clone(), b.clone(), c.clone()], 1, 0),
                Ok(1)
            );
        }
    }

    /// Keeps the README's example true.
    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../../../README.md");
        let start = readme.find("<<'YAML'\n").unwrap() + "<<'YAML'\n".len();
        let end = start + readme[start..].find("\nYAML").unwrap();
        let script = Script::parse(&readme[start..end]).unwrap();
        let tagged = ["edge".to_string()];
        let mut a = w(1, "pi-1", 900, 0);
        a.tags = &tagged;
        assert_eq!(
            script.select("site", Some("edge"), &[w(2, "b", 900, 0), a], 1, 0),
            Ok(1)
        );
    }

    #[test]
    fn refuses_bad_scripts_with_where_and_why() {
        for (text, expected) in [
            ("{", "not valid YAML"),
            ("a: b", "list of tags"),
            ("[]", "no tags"),
            ("- t: []", "tag 't' has no blocks"),
            (
                "- t:\n  - strategy: random",
                "block 1: the block has no `workers`",
            ),
            (
                "- t:\n  - workers: '*'\n    strategy: fastest",
                "strategy must be",
            ),
            (
                "- t:\n  - workers: '*'\n  followup: later",
                "followup must be",
            ),
            (
                "- t:\n  - workers: '*'\n    invalidate: {capacity_used: 150%}",
                "percentage",
            ),
            (
                "- t:\n  - workers: '*'\n    invalidate: {max_concurrent_invocations: -1}",
                "non-negative",
            ),
            (
                "- t:\n  - workers: '*'\n    affinity: x",
                "affinity must be a list",
            ),
            (
                "- t:\n  - workers: '*'\n    affinity: [x]\n    weight: 3",
                "unknown key 'weight'",
            ),
            (
                "- t:\n  - workers: '*'\n- t:\n  - workers: '*'",
                "defined twice",
            ),
        ] {
            let e = Script::parse(text).unwrap_err().to_string();
            assert!(e.contains(expected), "{text:?}: {e}");
        }
    }
}
