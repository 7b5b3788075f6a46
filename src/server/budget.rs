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

use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget shared by every request of a server.
#[derive(Debug)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    /// `buffered_request_bytes`: budget in use.
    gauge: Gauge,
}

/// The budget one request holds; given back when it is dropped.
#[derive(Debug)]
pub struct Held {
    permit: Option<OwnedSemaphorePermit>,
    gauge: Gauge,
}

impl BodyBudget {
    /// A budget of `bytes`, raised to `max_body_bytes` if below: one request must always
    /// be able to take a whole body, or it would wait for ever.
    pub fn new(bytes: usize, max_body_bytes: usize, gauge: Gauge) -> Self {
        let bytes = bytes.max(max_body_bytes).clamp(1, Semaphore::MAX_PERMITS);
        BodyBudget {
            bytes: Arc::new(Semaphore::new(bytes)),
            gauge,
        }
    }

    /// An empty holding for one request.
    pub fn hold(&self) -> Held {
        Held {
            permit: None,
            gauge: self.gauge.clone(),
        }
    }

    /// Adds `bytes` to what `held` holds, waiting while the budget is spent.
    pub async fn take(&self, held: &mut Held, bytes: usize) {
        let mut left = bytes;
        while left > 0 {
            let now = u32::try_from(left).unwrap_or(u32::MAX);
            // The semaphore is never closed, so acquiring cannot fail.
            let Ok(permit) = self.bytes.clone().acquire_many_owned(now).await else {
                return;
            };
            held.gauge.inc_by(i64::from(now));
            match &mut held.permit {
                Some(p) => p.merge(permit),
                None => held.permit = Some(permit),
            }
            left -= now as usize;
        }
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
