//! loom model: two `l0_unmap`s of the same L1 range race (L0 changed its
//! map once; two of its paths report it). Each, once it returns, must leave
//! no shadow leaf built on the removed pages: L0 may free the page then.
//! Without `l0_unmap`'s one-at-a-time lock the call whose batch finds no
//! record (the other took it and released the reverse-map lock before
//! unmapping its leaf) returned while the leaf still mapped L0's old page
//! (review 16 F2); the model fails when that lock is removed.
#![cfg(loom)]

use crate::shadow_support;

use ipc::message::L0Change;
use ipc::tlbi::IpaRange;
use loom::thread;
use shadow_support::*;

#[test]
fn two_l0_unmaps_of_one_range_each_leave_no_leaf_when_they_return() {
    loom::model(|| {
        let s = service(1);
        let w = s.worker();
        assert_eq!(l1_of(&read(&s, &w, &key(ROOT), 0), 0), Some(OLD));
        s.l0().remove_old();
        let other = {
            let s = s.clone();
            thread::spawn(move || {
                let w = s.worker();
                s.l0_unmap(
                    &w,
                    IpaRange::new(OLD, OLD + 0x1000).unwrap(),
                    L0Change::Unmap,
                );
                assert_eq!(s.shadow_lookup(&w, &key(ROOT), 0), None, "other returned");
            })
        };
        s.l0_unmap(
            &w,
            IpaRange::new(OLD, OLD + 0x1000).unwrap(),
            L0Change::Unmap,
        );
        assert_eq!(
            s.shadow_lookup(&w, &key(ROOT), 0),
            None,
            "this one returned"
        );
        other.join().unwrap();
    });
}
