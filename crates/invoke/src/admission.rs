//! Admission control with Lambda's concurrency semantics: a function with reserved
//! concurrency N runs at most N requests at once (0 disables it); all other functions
//! of a namespace share what is left of the account limit. Over a limit is an
//! immediate 429, never a queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::ServiceError;
pub use crate::throttle::Throttle;

type Key = (String, String);

#[derive(Default)]
struct State {
    reserved: HashMap<Key, u32>,
    reserved_sum: HashMap<String, u32>,
    in_flight: HashMap<Key, u32>,
    /// In-flight requests of functions without a reservation, per namespace.
    unreserved_in_flight: HashMap<String, u32>,
}

pub struct Admission {
    account_limit: u32,
    min_unreserved: u32,
    state: Mutex<State>,
}

/// Holds one unit of concurrency until dropped.
pub struct Permit {
    admission: Arc<Admission>,
    key: Key,
    reserved: bool,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut st = self.admission.lock();
        if let Some(n) = st.in_flight.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.in_flight.remove(&self.key);
            }
        }
        if !self.reserved {
            if let Some(n) = st.unreserved_in_flight.get_mut(&self.key.0) {
                *n = n.saturating_sub(1);
            }
        }
    }
}

fn key(namespace: &str, name: &str) -> Key {
    (namespace.to_string(), name.to_string())
}

impl Admission {
    /// `account_limit` is each namespace's concurrency; reservations may never leave
    /// less than `min_unreserved` for the other functions.
    pub fn new(account_limit: u32, min_unreserved: u32) -> Arc<Self> {
        Arc::new(Admission {
            account_limit,
            min_unreserved: min_unreserved.min(account_limit),
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn account_limit(&self) -> u32 {
        self.account_limit
    }

    /// Loads the stored reservations (at startup).
    pub fn load(&self, rows: impl IntoIterator<Item = (String, String, u32)>) {
        let mut st = self.lock();
        for (ns, name, n) in rows {
            *st.reserved_sum.entry(ns.clone()).or_default() += n;
            st.reserved.insert((ns, name), n);
        }
    }

    pub fn reserved(&self, namespace: &str, name: &str) -> Option<u32> {
        self.lock().reserved.get(&key(namespace, name)).copied()
    }

    /// What functions without a reservation share in a namespace.
    pub fn unreserved(&self, namespace: &str) -> u32 {
        let sum = self
            .lock()
            .reserved_sum
            .get(namespace)
            .copied()
            .unwrap_or(0);
        self.account_limit.saturating_sub(sum)
    }

    /// Checks a new reservation against the account limit; the caller stores it and
    /// then calls [`Admission::set_reserved`].
    pub fn check_reservation(
        &self,
        namespace: &str,
        name: &str,
        reserved: u32,
    ) -> Result<(), ServiceError> {
        let st = self.lock();
        let others = st.reserved_sum.get(namespace).copied().unwrap_or(0)
            - st.reserved.get(&key(namespace, name)).copied().unwrap_or(0);
        if u64::from(others) + u64::from(reserved) + u64::from(self.min_unreserved)
            > u64::from(self.account_limit)
        {
            return Err(ServiceError::InvalidParameterValue(format!(
                "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [{}].",
                self.min_unreserved
            )));
        }
        Ok(())
    }

    pub fn set_reserved(&self, namespace: &str, name: &str, reserved: Option<u32>) {
        let mut st = self.lock();
        let k = key(namespace, name);
        let old = match reserved {
            Some(n) => st.reserved.insert(k, n),
            None => st.reserved.remove(&k),
        }
        .unwrap_or(0);
        let sum = st.reserved_sum.entry(namespace.to_string()).or_default();
        *sum = sum.saturating_sub(old) + reserved.unwrap_or(0);
    }

    /// Requests of a function running now.
    pub fn in_flight(&self, namespace: &str, name: &str) -> u32 {
        self.lock()
            .in_flight
            .get(&key(namespace, name))
            .copied()
            .unwrap_or(0)
    }

    /// Takes one unit of concurrency for a request, or says why not.
    pub fn admit(self: &Arc<Self>, namespace: &str, name: &str) -> Result<Permit, Throttle> {
        let mut st = self.lock();
        let k = key(namespace, name);
        let running = st.in_flight.get(&k).copied().unwrap_or(0);
        let reserved = st.reserved.get(&k).copied();
        match reserved {
            Some(0) => {
                return Err(Throttle::FunctionDisabled {
                    function: name.to_string(),
                })
            }
            Some(n) if running >= n => {
                return Err(Throttle::ReservedConcurrency {
                    function: name.to_string(),
                    reserved: n,
                })
            }
            Some(_) => {}
            None => {
                let pool = self
                    .account_limit
                    .saturating_sub(st.reserved_sum.get(namespace).copied().unwrap_or(0));
                let busy = st.unreserved_in_flight.get(namespace).copied().unwrap_or(0);
                if busy >= pool {
                    return Err(Throttle::AccountConcurrency { unreserved: pool });
                }
                *st.unreserved_in_flight
                    .entry(namespace.to_string())
                    .or_default() += 1;
            }
        }
        *st.in_flight.entry(k.clone()).or_default() += 1;
        Ok(Permit {
            admission: self.clone(),
            key: k,
            reserved: reserved.is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(e: Throttle) -> &'static str {
        e.reason()
    }

    #[test]
    fn reserved_zero_disables_the_function() {
        let a = Admission::new(10, 1);
        a.set_reserved("ns", "f", Some(0));
        let err = a.admit("ns", "f").err().expect("refused");
        assert_eq!(
            reason(err),
            "ReservedFunctionConcurrentInvocationLimitExceeded"
        );
    }

    #[test]
    fn reserved_n_caps_at_n_and_frees_on_drop() {
        let a = Admission::new(10, 1);
        a.set_reserved("ns", "f", Some(2));
        let p1 = a.admit("ns", "f").expect("1");
        let _p2 = a.admit("ns", "f").expect("2");
        assert!(a.admit("ns", "f").is_err());
        drop(p1);
        assert!(a.admit("ns", "f").is_ok());
    }

    #[test]
    fn account_limit_holds_across_functions_and_excludes_reservations() {
        let a = Admission::new(4, 1);
        a.set_reserved("ns", "r", Some(2));
        assert_eq!(a.unreserved("ns"), 2);
        let _x = a.admit("ns", "x").expect("x");
        let _y = a.admit("ns", "y").expect("y");
        let err = a.admit("ns", "z").err().expect("pool full");
        assert_eq!(reason(err), "ConcurrentInvocationLimitExceeded");
        // The reserved function still has its own share, and other namespaces theirs.
        assert!(a.admit("ns", "r").is_ok());
        assert!(a.admit("other", "z").is_ok());
    }

    #[test]
    fn reservations_must_leave_the_minimum_unreserved() {
        let a = Admission::new(10, 3);
        assert!(a.check_reservation("ns", "f", 7).is_ok());
        assert!(a.check_reservation("ns", "f", 8).is_err());
        a.set_reserved("ns", "f", Some(5));
        // Replacing a function's own reservation does not count it twice.
        assert!(a.check_reservation("ns", "f", 7).is_ok());
        assert!(a.check_reservation("ns", "g", 3).is_err());
        a.set_reserved("ns", "f", None);
        assert_eq!(a.unreserved("ns"), 10);
    }
}
