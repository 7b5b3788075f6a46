//! A bound on the request-body bytes held by all requests together.
//!
//! `--max-body-bytes` bounds one request; the budget bounds their sum, so that clients
//! each sending a large body slowly, or never finishing it, cannot push the process past
//! its memory limit (1024 connections × 4 MiB would be 4 GiB; the Deployment allows
//! 128 Mi). A body takes budget as its bytes arrive, not when it declares a length, so a
//! client must really send bytes to hold any. When the budget is spent, reading waits:
//! the client's further bytes stay in the kernel's socket buffers until other requests
//! finish or reach the request timeout. (A body that came in several chunks is briefly
//! there twice while it is joined: the peak is at most twice the budget, 64 MiB by
//! default.)
//!
//! With trusted peers (the API server, `super::peers`), requests from everyone else may
//! hold at most three quarters of the budget (and at least one whole body), so that bodies
//! sent slowly from untrusted addresses never keep the API server's reviews waiting: its
//! requests draw on the whole budget, the others on their share first.

use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget shared by every request of a server.
#[derive(Debug)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    /// With trusted peers: the share of untrusted requests, taken before `bytes`.
    untrusted: Option<Arc<Semaphore>>,
    /// `buffered_request_bytes`: budget in use.
    gauge: Gauge,
}

/// The budget one request holds; given back when it is dropped.
#[derive(Debug)]
pub struct Held {
    permit: Option<OwnedSemaphorePermit>,
    share: Option<OwnedSemaphorePermit>,
    trusted: bool,
    gauge: Gauge,
}

impl BodyBudget {
    /// A budget of `bytes`, raised to `max_body_bytes` if below: one request must always
    /// be able to take a whole body, or it would wait for ever. With `reserve`, untrusted
    /// requests share three quarters of it (at least `max_body_bytes`).
    pub fn new(bytes: usize, max_body_bytes: usize, reserve: bool, gauge: Gauge) -> Self {
        let bytes = bytes.max(max_body_bytes).clamp(1, Semaphore::MAX_PERMITS);
        let share = (bytes / 4 * 3).max(max_body_bytes).clamp(1, bytes);
        BodyBudget {
            bytes: Arc::new(Semaphore::new(bytes)),
            untrusted: reserve.then(|| Arc::new(Semaphore::new(share))),
            gauge,
        }
    }

    /// An empty holding for one request, from a trusted peer or not.
    pub fn hold(&self, trusted: bool) -> Held {
        Held {
            permit: None,
            share: None,
            trusted,
            gauge: self.gauge.clone(),
        }
    }

    /// Adds `bytes` to what `held` holds, waiting while the budget (or, for an untrusted
    /// request, its share) is spent.
    pub async fn take(&self, held: &mut Held, bytes: usize) {
        let mut left = bytes;
        while left > 0 {
            let now = u32::try_from(left).unwrap_or(u32::MAX);
            // The share first, then the whole: every request waits in the same order,
            // so none holds one while another holds the other.
            if let (false, Some(share)) = (held.trusted, &self.untrusted) {
                // The semaphores are never closed, so acquiring cannot fail.
                let Ok(permit) = share.clone().acquire_many_owned(now).await else {
                    return;
                };
                merge(&mut held.share, permit);
            }
            let Ok(permit) = self.bytes.clone().acquire_many_owned(now).await else {
                return;
            };
            held.gauge.inc_by(i64::from(now));
            merge(&mut held.permit, permit);
            left -= now as usize;
        }
    }
}

fn merge(held: &mut Option<OwnedSemaphorePermit>, permit: OwnedSemaphorePermit) {
    match held {
        Some(p) => p.merge(permit),
        None => *held = Some(permit),
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(permit) = &self.permit {
            self.gauge
                .dec_by(i64::try_from(permit.num_permits()).unwrap_or(i64::MAX));
        }
    }
}

#[cfg(test)]
mod tests;
