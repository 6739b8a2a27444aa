//! A mixed stress run of 10,000 operations, checked against an exact model of the final state.

use std::collections::HashMap;
use std::sync::Arc;

use narvik_core::{Error, SessionRecord, SessionStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use time::Duration;

use super::TASKS;
use crate::harness::{
    assert_absent, assert_same_record, assert_stored, assert_user_lists, live_record, must, now_ms,
    race, random_session_id, random_user_id,
};
use crate::Capabilities;

/// One operation of the stress case.
#[derive(Debug, Clone, Copy)]
enum Op {
    Save,
    Update,
    Delete,
    Fetch,
}

/// 20 tasks run 500 random operations each (save, update, delete, fetch; 10,000 in all), each
/// task on its own ids so that its model of the store is exact; every answer matches the
/// model, and so does the final state.
pub async fn mixed_stress_10000_ops_exact_state(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    const OPS_PER_TASK: usize = 500;
    const IDS_PER_TASK: usize = 25;
    let seed: u64 = rand::random();
    let shared = Arc::clone(&store);
    let models = race(TASKS, move |task| {
        let store = Arc::clone(&shared);
        async move {
            let mut rng = StdRng::seed_from_u64(seed ^ (task as u64).wrapping_mul(0x9e37_79b9));
            let user_id = random_user_id(&format!("stress{task}"));
            let ids: Vec<String> = (0..IDS_PER_TASK).map(|_| random_session_id()).collect();
            let mut model: HashMap<String, SessionRecord> = HashMap::new();
            let base = now_ms() + Duration::days(2);
            for step in 0..OPS_PER_TASK {
                let id = &ids[rng.random_range(0..IDS_PER_TASK)];
                let op = [Op::Save, Op::Update, Op::Delete, Op::Fetch][rng.random_range(0..4)];
                let expires_at = base + Duration::milliseconds(rng.random_range(0..86_400_000));
                let context = format!("stress task {task} step {step} ({op:?}, seed {seed})");
                match op {
                    Op::Save => {
                        let mut record =
                            live_record(&user_id, json!({ "task": task, "step": step }));
                        record.id.clone_from(id);
                        record.expires_at = expires_at;
                        match (store.save_session(&record).await, model.contains_key(id)) {
                            (Ok(()), false) => {
                                model.insert(id.clone(), record);
                            }
                            (Err(Error::DuplicateId), true) => {}
                            (outcome, exists) => panic!(
                                "{context}: save answered {outcome:?} where the id {} exist",
                                if exists { "did" } else { "did not" }
                            ),
                        }
                    }
                    Op::Update => {
                        must(
                            store.update_session_expiry(id, expires_at).await,
                            "update_session_expiry",
                        );
                        if let Some(record) = model.get_mut(id) {
                            record.expires_at = expires_at;
                        }
                    }
                    Op::Delete => {
                        must(store.delete_session(id).await, "delete_session");
                        model.remove(id);
                    }
                    Op::Fetch => {
                        let fetched = must(store.fetch_session(id).await, "fetch_session");
                        match model.get(id) {
                            Some(expected) => {
                                assert_same_record(fetched.as_ref(), expected, &context)
                            }
                            None => assert!(
                                fetched.is_none(),
                                "{context}: fetched a record the model does not hold: {fetched:?}"
                            ),
                        }
                    }
                }
            }
            (user_id, ids, model)
        }
    })
    .await;
    for (user_id, ids, model) in models {
        for id in &ids {
            match model.get(id) {
                Some(expected) => assert_stored(store.as_ref(), expected, "final state").await,
                None => assert_absent(store.as_ref(), id, "final state").await,
            }
        }
        let expected: Vec<SessionRecord> = model.into_values().collect();
        assert_user_lists(
            store.as_ref(),
            capabilities,
            &user_id,
            &expected,
            "final listing of a stress task's user",
        )
        .await;
    }
}
