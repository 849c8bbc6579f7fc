//! CPU lists in the kernel's notation (`0-3,8,10-11`).

use std::collections::BTreeSet;

use crate::error::TuneError;

/// A set of CPU numbers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpuSet(BTreeSet<u32>);

impl CpuSet {
    /// Parses `0-3,8`; whitespace and a trailing newline are ignored.
    pub fn parse(text: &str) -> Result<CpuSet, TuneError> {
        let mut cpus = BTreeSet::new();
        for part in text
            .trim()
            .split(',')
            .filter(|part| !part.trim().is_empty())
        {
            let part = part.trim();
            let bad = || TuneError::Usage(format!("bad CPU list {text:?} at {part:?}"));
            match part.split_once('-') {
                Some((first, last)) => {
                    let first: u32 = first.parse().map_err(|_| bad())?;
                    let last: u32 = last.parse().map_err(|_| bad())?;
                    if first > last || last - first > 65_536 {
                        return Err(bad());
                    }
                    cpus.extend(first..=last);
                }
                None => {
                    cpus.insert(part.parse().map_err(|_| bad())?);
                }
            }
        }
        Ok(CpuSet(cpus))
    }

    /// The CPUs in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }

    /// Number of CPUs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is no CPU.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// CPUs in `self` and not in `other`.
    pub fn minus(&self, other: &CpuSet) -> CpuSet {
        CpuSet(self.0.difference(&other.0).copied().collect())
    }

    /// True when the two sets share a CPU.
    pub fn intersects(&self, other: &CpuSet) -> bool {
        self.0.intersection(&other.0).next().is_some()
    }

    /// True when every CPU of `self` is in `other`.
    pub fn is_subset(&self, other: &CpuSet) -> bool {
        self.0.is_subset(&other.0)
    }
}

impl std::fmt::Display for CpuSet {
    /// Formats in the kernel's list notation, collapsing runs: `0-3,8`.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ranges: Vec<String> = Vec::new();
        let mut cpus = self.iter().peekable();
        while let Some(first) = cpus.next() {
            let mut last = first;
            while cpus.peek() == Some(&(last + 1)) {
                last += 1;
                cpus.next();
            }
            ranges.push(if first == last {
                first.to_string()
            } else {
                format!("{first}-{last}")
            });
        }
        write!(formatter, "{}", ranges.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_kernel_lists() {
        let set = CpuSet::parse("0-3,8,10-11\n").unwrap();
        assert_eq!(set.len(), 7);
        assert_eq!(set.to_string(), "0-3,8,10-11");
        assert_eq!(CpuSet::parse("1,0,2").unwrap().to_string(), "0-2");
        assert!(CpuSet::parse("3-1").is_err());
        assert!(CpuSet::parse("a").is_err());
        assert!(CpuSet::parse("").unwrap().is_empty());
    }

    #[test]
    fn set_operations() {
        let all = CpuSet::parse("0-3").unwrap();
        let shards = CpuSet::parse("1-3").unwrap();
        assert_eq!(all.minus(&shards).to_string(), "0");
        assert!(all.intersects(&shards));
        assert!(shards.is_subset(&all));
    }
}
