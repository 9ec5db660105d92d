//! The memory function URLs may hold for request bodies, across every request at once.
//!
//! A function URL reads the body of anyone who asks (an `AWS_IAM` URL after checking
//! the key, but before the signature over the body), and holds it, with the event built
//! from it, until the function answers. The listener bounds connections, not bytes:
//! 4,096 connections with a 6 MB body each would be 24 GB. A request's share grows as
//! its body's bytes arrive (not by what it announces, so holding budget costs a client
//! the bytes it holds) and is given back with its response; a body that finds no room
//! is a 429.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget is counted in units of this many bytes.
const UNIT: usize = 1024;

#[derive(Debug)]
pub struct BodyBudget {
    units: Arc<Semaphore>,
}

/// A request's share of the budget; returned when dropped.
#[derive(Debug, Default)]
pub struct BodyShare {
    units: Option<OwnedSemaphorePermit>,
}

impl BodyShare {
    fn held(&self) -> usize {
        self.units
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits)
    }
}

impl BodyBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> Self {
        BodyBudget {
            units: Arc::new(Semaphore::new(bytes.div_ceil(UNIT))),
        }
    }

    /// Grows `share` to cover `bytes` in all; false, leaving it as it was, when the
    /// budget has no room for them.
    pub fn grow(&self, share: &mut BodyShare, bytes: usize) -> bool {
        let want = bytes.div_ceil(UNIT);
        let held = share.held();
        if want <= held {
            return true;
        }
        let Ok(more) = u32::try_from(want - held) else {
            return false;
        };
        match self.units.clone().try_acquire_many_owned(more) {
            Ok(permit) => {
                match &mut share.units {
                    Some(units) => units.merge(permit),
                    None => share.units = Some(permit),
                }
                true
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_share_the_budget_as_their_bytes_arrive_and_give_it_back_when_done() {
        let budget = BodyBudget::new(10 * UNIT);
        let mut big = BodyShare::default();
        assert!(budget.grow(&mut big, 3 * UNIT));
        assert!(budget.grow(&mut big, 6 * UNIT), "grows as bytes arrive");
        assert_eq!(big.held(), 6);
        let mut other = BodyShare::default();
        assert!(!budget.grow(&mut other, 6 * UNIT), "6 more do not fit");
        assert_eq!(other.held(), 0, "a refused share is left as it was");
        assert!(budget.grow(&mut other, 100), "a small body still fits");
        assert!(!budget.grow(&mut other, 5 * UNIT), "3 units left");
        drop(big);
        assert!(budget.grow(&mut other, 9 * UNIT), "back after the response");
    }
}
