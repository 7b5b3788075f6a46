//! `--trusted-peers`: the source addresses the API server calls the webhook from, as
//! CIDR ranges. The listener serves these addresses first and never refuses them
//! (`server::peers`); `doctor` reads the same value from the Deployment.
//!
//! A range is written `10.0.0.0/24`, `fd00::/64`, or a bare address (a `/32` or `/128`).
//! Host bits below the prefix are refused rather than masked: `10.0.0.5/24` is more
//! likely a typo for `10.0.0.5/32` than a wish to trust 255 neighbours too.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// One CIDR range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// The ranges of `--trusted-peers`; empty when the flag is not set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedPeers(Vec<Cidr>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{0:?} is not an IP address or CIDR range (such as 10.0.0.10/32 or fd00::/64)")]
    Syntax(String),
    #[error("{text:?}: the prefix length must be at most {max}")]
    Prefix { text: String, max: u8 },
    #[error(
        "{0:?} is an IPv4-mapped IPv6 range: write it as IPv4 (IPv4 clients are matched as IPv4)"
    )]
    Mapped(String),
    #[error(
        "{text:?} has host bits set below /{prefix}: write {network}/{prefix} for the range, or the address alone"
    )]
    HostBits {
        text: String,
        network: IpAddr,
        prefix: u8,
    },
}

impl Cidr {
    /// Whether `address` lies in this range (an IPv4 client of a dual-stack listener,
    /// `::ffff:a.b.c.d`, counts as `a.b.c.d`).
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.network, canonical(address)) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                u32::from(net) == u32::from(a) & v4_mask(self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                u128::from(net) == u128::from(a) & v6_mask(self.prefix)
            }
            _ => false,
        }
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn is_ipv4(&self) -> bool {
        self.network.is_ipv4()
    }
}

fn v4_mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn v6_mask(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = || CidrError::Syntax(text.to_string());
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address = address.parse::<IpAddr>().map_err(|_| syntax())?;
        if let IpAddr::V6(v6) = address
            && v6.to_ipv4_mapped().is_some()
        {
            return Err(CidrError::Mapped(text.to_string()));
        }
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            // Digits only: `u8::from_str` would also take `+24`.
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or(CidrError::Prefix {
                    text: text.to_string(),
                    max,
                })?,
            Some(_) => return Err(syntax()),
        };
        let network = match address {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) & v4_mask(prefix)).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) & v6_mask(prefix)).into()),
        };
        if network != address {
            return Err(CidrError::HostBits {
                text: text.to_string(),
                network,
                prefix,
            });
        }
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl TrustedPeers {
    pub fn new(ranges: Vec<Cidr>) -> Self {
        TrustedPeers(ranges)
    }

    /// No range: every address is treated alike.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn ranges(&self) -> &[Cidr] {
        &self.0
    }

    /// Whether `address` is in one of the ranges.
    pub fn contains(&self, address: IpAddr) -> bool {
        self.0.iter().any(|range| range.contains(address))
    }
}

/// Ranges separated by commas (blanks around them ignored, empty items skipped, so an
/// empty value is no range at all).
impl FromStr for TrustedPeers {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedPeers)
    }
}

impl fmt::Display for TrustedPeers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, range) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{range}")?;
        }
        Ok(())
    }
}

/// An IPv4 client of a dual-stack listener shows as `::ffff:a.b.c.d`: the same peer as
/// `a.b.c.d`.
pub fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests;
