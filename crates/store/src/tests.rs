use super::*;
use chrono::TimeZone;

fn agent(id: &str, name: &str) -> AgentRow {
    AgentRow {
        id: id.into(),
        name: name.into(),
        spec: r#"{"command":["sleep","1"]}"#.into(),
        state: State::Starting,
        reason: None,
        run: 1,
        created_at: Utc.with_ymd_and_hms(2026, 11, 24, 7, 0, 0).unwrap(),
        health: Health::Unknown,
        health_reason: None,
        probe: None,
        restart_at: None,
    }
}

/// Events of `kind` about agent `id`, numbered on from the store's next
/// id, at `at`.
fn events(store: &Store, id: &str, kinds: &[&str], at: DateTime<Utc>) -> Vec<EventRecord> {
    kinds
        .iter()
        .enumerate()
        .map(|(index, kind)| {
            let number = store.next_event_id() + index as u64;
            EventRecord {
                id: number,
                at,
                kind: kind.to_string(),
                agent_id: Some(id.to_string()),
                agent_name: Some(format!("name-of-{id}")),
                group: None,
                run: Some(1),
                body: format!(r#"{{"id":{number},"type":"{kind}"}}"#),
            }
        })
        .collect()
}

/// Every event kept, oldest first, as (id, type).
fn kept(path: &std::path::Path) -> Vec<(u64, String)> {
    EventReader::open(path)
        .unwrap()
        .after(0, None, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|event| (event.id, event.kind))
        .collect()
}

/// A new store in a directory of its own (kept while the store is) with
/// agent `a1` in it, and the path of its file.
fn store_with_a1() -> (tempfile::TempDir, std::path::PathBuf, Store) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrangle.db");
    let mut store = Store::open(&path).unwrap();
    store
        .create(&agent("a1", "build"), &run("a1"), &[])
        .unwrap();
    (dir, path, store)
}

fn run(agent_id: &str) -> RunRow {
    RunRow {
        agent_id: agent_id.into(),
        run: 1,
        dir: format!("/tmp/runs/{agent_id}/1"),
        ..RunRow::default()
    }
}

#[test]
fn a_state_change_survives_reopening_with_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrangle.db");
    {
        let mut store = Store::open(&path).unwrap();
        let mut a = agent("a1", "build");
        let mut r = run("a1");
        let created = events(
            &store,
            "a1",
            &["agent.created", "agent.starting"],
            Utc::now(),
        );
        store.create(&a, &r, &created).unwrap();
        r.shim = Some((100, 5000));
        r.process = Some((101, 5001));
        r.started_at = Some(Utc::now());
        a.state = State::Running;
        a.health = Health::Healthy;
        let running = events(&store, "a1", &["agent.running"], Utc::now());
        store.record(&a, &r, Utc::now(), &running).unwrap();
        a.state = State::Failed;
        a.reason = Some("exited with code 3".into());
        r.exit_code = Some(3);
        r.ended_at = Some(Utc::now());
        r.cause = Some(Cause::Exit);
        let exited = events(&store, "a1", &["agent.exited"], Utc::now());
        store.record(&a, &r, Utc::now(), &exited).unwrap();
    }
    let store = Store::open(&path).unwrap();
    let loaded = store.load().unwrap();
    assert_eq!(loaded.len(), 1);
    let (a, r) = &loaded[0];
    assert_eq!(a.state, State::Failed);
    assert_eq!(a.health, Health::Healthy);
    assert_eq!(a.reason.as_deref(), Some("exited with code 3"));
    let r = r.as_ref().unwrap();
    assert_eq!(r.exit_code, Some(3));
    assert_eq!(r.cause, Some(Cause::Exit));
    assert_eq!(r.shim, Some((100, 5000)));
    assert_eq!(r.process, Some((101, 5001)));
    assert_eq!(
        kept(&path),
        [
            (1, "agent.created".to_string()),
            (2, "agent.starting".to_string()),
            (3, "agent.running".to_string()),
            (4, "agent.exited".to_string())
        ]
    );
    assert_eq!(store.next_event_id(), 5);
}

#[test]
fn events_must_follow_on_from_the_next_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrangle.db");
    let mut store = Store::open(&path).unwrap();
    let mut skipping = events(&store, "a1", &["agent.created"], Utc::now());
    skipping[0].id += 1;
    let error = store
        .create(&agent("a1", "build"), &run("a1"), &skipping)
        .unwrap_err();
    assert!(error.to_string().contains("expected 1"), "{error}");
    assert!(store.load().unwrap().is_empty());
    assert_eq!(store.next_event_id(), 1);
}

#[test]
fn a_duplicate_name_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrangle.db");
    let mut store = Store::open(&path).unwrap();
    let first = events(&store, "a1", &["agent.created"], Utc::now());
    store
        .create(&agent("a1", "build"), &run("a1"), &first)
        .unwrap();
    let second = events(&store, "a2", &["agent.created"], Utc::now());
    let error = store
        .create(&agent("a2", "build"), &run("a2"), &second)
        .unwrap_err();
    assert!(
        matches!(error, StoreError::NameTaken(ref name) if name == "build"),
        "{error}"
    );
    assert_eq!(store.load().unwrap().len(), 1);
    assert_eq!(store.id_by_name("build").unwrap().as_deref(), Some("a1"));
    // No event of the refused agent, and its id is handed out next.
    assert_eq!(kept(&path), [(1, "agent.created".to_string())]);
    assert_eq!(store.next_event_id(), 2);
}

#[test]
fn deleting_an_agent_takes_its_runs_but_keeps_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrangle.db");
    let mut store = Store::open(&path).unwrap();
    let a = agent("a1", "build");
    let created = events(&store, "a1", &["agent.created"], Utc::now());
    store.create(&a, &run("a1"), &created).unwrap();
    let removed = events(&store, "a1", &["agent.removed"], Utc::now());
    assert!(store.delete_agent("a1", &removed).unwrap());
    assert!(!store.delete_agent("a1", &[]).unwrap());
    assert!(store.load().unwrap().is_empty());
    assert!(store.runs("a1").unwrap().is_empty());
    let specs: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT count(*) FROM agent_specs", [], |row| row.get(0))
        .unwrap();
    assert_eq!(specs, 0, "the spec goes with its agent");
    assert_eq!(
        kept(&path),
        [
            (1, "agent.created".to_string()),
            (2, "agent.removed".to_string())
        ]
    );
}

#[test]
fn event_ids_are_never_reused_even_after_everything_was_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrangle.db");
    let mut store = Store::open(&path).unwrap();
    let long_ago = Utc::now() - chrono::Duration::days(30);
    let old = events(
        &store,
        "a1",
        &["agent.created", "agent.starting", "agent.running"],
        long_ago,
    );
    store.append_events(&old).unwrap();
    let mut pruner = Connection::open(&path).unwrap();
    let retention = Retention {
        max_age: Some(Duration::from_secs(7 * 24 * 3600)),
        max_events: None,
    };
    assert_eq!(prune::prune(&mut pruner, retention, Utc::now()).unwrap(), 3);
    assert!(kept(&path).is_empty());
    let reader = EventReader::open(&path).unwrap();
    assert_eq!(
        reader.kept().unwrap(),
        Kept {
            pruned_through: 3,
            oldest: None,
            oldest_at: None,
            newest: None
        }
    );
    drop(store);
    // A new daemon numbers on from the highest id ever handed out.
    let mut store = Store::open(&path).unwrap();
    assert_eq!(store.next_event_id(), 4);
    let new = events(&store, "a1", &["agent.exited"], Utc::now());
    store.append_events(&new).unwrap();
    assert_eq!(kept(&path), [(4, "agent.exited".to_string())]);
}

#[test]
fn retention_takes_the_oldest_by_age_and_by_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrangle.db");
    let mut store = Store::open(&path).unwrap();
    let now = Utc::now();
    let old = events(
        &store,
        "a1",
        &["agent.created"; 700],
        now - chrono::Duration::hours(2),
    );
    store.append_events(&old).unwrap();
    let recent = events(&store, "a1", &["agent.running"; 600], now);
    store.append_events(&recent).unwrap();
    let mut pruner = Connection::open(&path).unwrap();
    // By age: the 700 older than an hour go, in batches.
    let by_age = Retention {
        max_age: Some(Duration::from_secs(3600)),
        max_events: None,
    };
    assert_eq!(prune::prune(&mut pruner, by_age, now).unwrap(), 700);
    let left = kept(&path);
    assert_eq!(left.len(), 600);
    assert_eq!(left[0].0, 701);
    // By count: the oldest past 100 go, whatever their age.
    let by_count = Retention {
        max_age: None,
        max_events: Some(100),
    };
    assert_eq!(prune::prune(&mut pruner, by_count, now).unwrap(), 500);
    let left = kept(&path);
    assert_eq!((left.len(), left[0].0, left[99].0), (100, 1201, 1300));
    assert_eq!(
        EventReader::open(&path)
            .unwrap()
            .kept()
            .unwrap()
            .pruned_through,
        1200
    );
    // Nothing more to do.
    assert_eq!(prune::prune(&mut pruner, by_count, now).unwrap(), 0);
}

#[test]
fn a_reader_finds_events_by_agent_and_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrangle.db");
    let mut store = Store::open(&path).unwrap();
    let start = Utc.with_ymd_and_hms(2026, 12, 6, 10, 0, 0).unwrap();
    for minute in 0..10 {
        let id = if minute % 2 == 0 { "even" } else { "odd" };
        let at = start + chrono::Duration::minutes(minute);
        let event = events(&store, id, &["agent.running"], at);
        store.append_events(&event).unwrap();
    }
    let reader = EventReader::open(&path).unwrap();
    let ids = |agent: &AgentMatch, after| -> Vec<u64> {
        reader
            .after(after, Some(agent), 3)
            .unwrap()
            .iter()
            .map(|event| event.id)
            .collect()
    };
    assert_eq!(ids(&AgentMatch::Id("odd".into()), 0), [2, 4, 6]);
    assert_eq!(ids(&AgentMatch::Id("odd".into()), 6), [8, 10]);
    assert_eq!(
        ids(&AgentMatch::IdOrName("name-of-even".into()), 4),
        [5, 7, 9]
    );
    let first = |minutes: i64, seconds: i64| {
        reader
            .first_at_or_after(
                start + chrono::Duration::minutes(minutes) + chrono::Duration::seconds(seconds),
            )
            .unwrap()
    };
    assert_eq!(first(-5, 0), Some(1));
    assert_eq!(first(0, 0), Some(1));
    assert_eq!(first(0, 1), Some(2));
    assert_eq!(first(4, 0), Some(5));
    assert_eq!(first(8, 30), Some(10));
    assert_eq!(first(9, 0), Some(10));
    assert_eq!(first(9, 1), None);
}

#[test]
fn a_store_from_a_newer_wrangle_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrangle.db");
    drop(Store::open(&path).unwrap());
    let connection = Connection::open(&path).unwrap();
    connection.pragma_update(None, "user_version", 99).unwrap();
    drop(connection);
    let error = Store::open(&path).err().unwrap();
    assert!(error.to_string().contains("upgrade wrangle"), "{error}");
}

#[test]
fn a_store_locked_by_another_process_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrangle.db");
    drop(Store::open(&path).unwrap());
    let holder = Connection::open(&path).unwrap();
    holder
        .execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;")
        .unwrap();
    let error = Store::open(&path).err().unwrap();
    assert!(matches!(error, StoreError::Locked { .. }), "{error}");
    assert!(error.to_string().contains("locked by another process"));
}

#[test]
fn a_store_another_process_holds_for_writing_is_refused_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrangle.db");
    let mut store = Store::open(&path).unwrap();
    // In WAL mode readers pass this lock; only writers are kept out.
    let holder = Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE;").unwrap();

    let error = Store::open(&path).err().unwrap();
    assert!(matches!(error, StoreError::Locked { .. }), "{error}");
    let created = events(&store, "a1", &["agent.created"], Utc::now());
    let error = store
        .create(&agent("a1", "build"), &run("a1"), &created)
        .unwrap_err();
    assert!(matches!(error, StoreError::Locked { .. }), "{error}");
    assert!(error.to_string().contains("wrangle.db"), "{error}");

    holder.execute_batch("ROLLBACK;").unwrap();
    store
        .create(&agent("a1", "build"), &run("a1"), &created)
        .unwrap();
    assert_eq!(store.load().unwrap().len(), 1);
}

#[test]
fn group_limits_are_kept_changed_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrangle.db");
    let mut store = Store::open(&path).unwrap();
    store.set_group("builds", Some(2), None, &[]).unwrap();
    store.set_group("agents", Some(8), None, &[]).unwrap();
    let changed = events(&store, "builds", &["group.changed"], Utc::now());
    store.set_group("builds", Some(3), None, &changed).unwrap();
    drop(store);
    let mut store = Store::open(&path).unwrap();
    assert_eq!(
        store.group_limits().unwrap(),
        vec![("agents".to_string(), 8), ("builds".to_string(), 3)]
    );
    assert_eq!(kept(&path), [(1, "group.changed".to_string())]);
    store.set_group("agents", None, None, &[]).unwrap();
    assert_eq!(
        store.group_limits().unwrap(),
        vec![("builds".to_string(), 3)]
    );
}

/// Makes the store file at `path` as schema `version` left it, with
/// `rows` (SQL) in it.
fn store_of_schema(path: &std::path::Path, version: usize, rows: &str) {
    let connection = rusqlite::Connection::open(path).unwrap();
    for migration in &schema::MIGRATIONS[..version] {
        connection.execute_batch(migration).unwrap();
    }
    connection
        .pragma_update(None, "user_version", version as i64)
        .unwrap();
    connection.execute_batch(rows).unwrap();
}

#[test]
fn a_store_of_an_earlier_schema_keeps_its_agents_runs_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrangle.db");
    // A store as schema 2 left it (schema 3 and 4 convert it).
    store_of_schema(
        &path,
        2,
        r#"INSERT INTO agents VALUES ('a1', 'build', '{"group":"ci"}', 'stopping', 'timeout: ran longer than 2s, stopping', 1, '2026-11-24 07:00:00+00:00', '2026-11-24 07:00:01+00:00');
                 INSERT INTO runs (agent_id, run, state, dir, shim_pid, shim_start_time, pid,
                     pid_start_time, started_at, reason)
                     VALUES ('a1', 1, 'stopping', '/tmp/runs/a1/1', 100, 5000, 101, 5001, '2026-11-24 07:00:01+00:00', 'timeout: ran longer than 2s, stopping');
                 INSERT INTO events (at, agent_id, run, state) VALUES ('2026-11-24 07:00:00.25+00:00', 'a1', 1, 'starting');
                 INSERT INTO events (at, agent_id, run, state) VALUES ('2026-11-24 07:00:01+00:00', 'a1', 1, 'running');
                 INSERT INTO events (at, agent_id, run, state, reason) VALUES ('2026-11-24 07:00:03+00:00', 'a1', 1, 'stopping', 'timeout: ran longer than 2s, stopping');"#,
    );
    let mut store = Store::open(&path).unwrap();
    let loaded = store.load().unwrap();
    assert_eq!(loaded.len(), 1);
    let (mut a, r) = loaded.into_iter().next().unwrap();
    let mut r = r.expect("the run is kept");
    assert_eq!(a.state, State::Stopping);
    assert_eq!(a.health, Health::Unknown);
    // The spec moved to a table of its own (schema 10).
    assert_eq!(a.spec, r#"{"group":"ci"}"#);
    // The stop's cause, once only in words, is a value now.
    assert_eq!(r.cause, Some(Cause::Timeout));
    assert_eq!((r.shim, r.process), (Some((100, 5000)), Some((101, 5001))));
    let reader = EventReader::open(&path).unwrap();
    let old = reader.after(0, None, 10).unwrap();
    let kinds: Vec<(u64, &str)> = old.iter().map(|e| (e.id, e.kind.as_str())).collect();
    assert_eq!(
        kinds,
        [
            (1, "agent.starting"),
            (2, "agent.running"),
            (3, "agent.stopping")
        ]
    );
    let body: serde_json::Value = serde_json::from_str(&old[0].body).unwrap();
    assert_eq!(body["id"], 1);
    assert_eq!(body["time"], "2026-11-24T07:00:00.250Z");
    assert_eq!(body["agent"]["name"], "build");
    assert_eq!(body["agent"]["group"], "ci");
    assert_eq!(old[0].group.as_deref(), Some("ci"));
    assert_eq!(
        old[0].at,
        Utc.with_ymd_and_hms(2026, 11, 24, 7, 0, 0).unwrap() + chrono::Duration::milliseconds(250)
    );

    // Changes go on from there: the run is updated, events numbered on.
    a.state = State::Failed;
    r.exit_code = Some(3);
    let exited = events(&store, "a1", &["agent.exited"], Utc::now());
    assert_eq!(exited[0].id, 4);
    store.record(&a, &r, Utc::now(), &exited).unwrap();
    assert_eq!(store.runs("a1").unwrap().len(), 1);
    assert_eq!(store.runs("a1").unwrap()[0].exit_code, Some(3));
}

/// Names of this process's threads.
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect()
}

#[test]
fn the_log_is_checkpointed_by_a_thread_of_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrangle.db");
    let checkpointers = || {
        thread_names()
            .iter()
            .filter(|name| *name == "wal-checkpoint")
            .count()
    };
    let mut store = Store::open(&path).unwrap();
    // Other tests of this binary run stores of their own meanwhile.
    assert!(checkpointers() >= 1);
    let database_bytes = || std::fs::metadata(&path).unwrap().len();
    let before = database_bytes();
    // Each start writes some pages to the log; this is well past the
    // threshold at which the thread is woken.
    for index in 0..400 {
        let id = format!("agent{index}");
        let mut a = agent(&id, &format!("name{index}"));
        a.spec = "x".repeat(2000);
        let created = events(&store, &id, &["agent.created"], Utc::now());
        store.create(&a, &run(&id), &created).unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while database_bytes() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint: the database file stayed at {before} bytes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Nothing was lost on the way.
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.load().unwrap().len(), 400);
}

#[test]
fn writes_and_prunes_at_the_same_time_both_go_through() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrangle.db");
    let mut store = Store::open(&path).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pruning = {
        let (path, stop) = (path.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut connection = Connection::open(&path).unwrap();
            connection.busy_timeout(Duration::from_secs(2)).unwrap();
            let keep_few = Retention {
                max_age: None,
                max_events: Some(50),
            };
            let mut pruned = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                pruned += prune::prune(&mut connection, keep_few, Utc::now()).unwrap();
            }
            pruned
        })
    };
    for _ in 0..2000 {
        let event = events(&store, "a1", &["agent.progress"], Utc::now());
        store.append_events(&event).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let pruned = pruning.join().unwrap();
    assert!(pruned > 0);
    assert_eq!(store.next_event_id(), 2001);
}

#[test]
fn a_session_only_moves_forward_and_goes_with_its_agent() {
    let (_dir, path, mut store) = store_with_a1();
    let row = |read_to: u64, reader: &str| SessionRow {
        agent_id: "a1".into(),
        run: 1,
        read_to,
        reader: reader.into(),
    };
    store
        .record_findings(&[], &[row(100, "at 100")], &[], &[])
        .unwrap();
    // A reader that is behind (a tick that read before the run's end was
    // read to the end) does not undo what was stored.
    store
        .record_findings(&[], &[row(40, "at 40")], &[], &[])
        .unwrap();
    assert_eq!(store.session("a1", 1).unwrap(), Some(row(100, "at 100")));
    store
        .record_findings(&[], &[row(250, "at 250")], &[], &[])
        .unwrap();
    drop(store);
    let mut store = Store::open(&path).unwrap();
    assert_eq!(store.session("a1", 1).unwrap(), Some(row(250, "at 250")));
    assert_eq!(store.session("a1", 2).unwrap(), None);
    store.delete_agent("a1", &[]).unwrap();
    assert_eq!(store.session("a1", 1).unwrap(), None);
}

#[test]
fn an_idempotency_key_names_its_agents_until_a_day_has_passed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrangle.db");
    let mut store = Store::open(&path).unwrap();
    let (a, b) = (agent("a1", "one"), agent("b2", "two"));
    let (ra, rb) = (run("a1"), run("b2"));
    store
        .create_many(&[(&a, &ra), (&b, &rb)], Some("key-1"), &[])
        .unwrap();
    assert_eq!(
        store.created_by("key-1").unwrap(),
        Some(vec!["a1".to_string(), "b2".to_string()])
    );
    assert_eq!(store.created_by("key-2").unwrap(), None);
    // A key taken again is refused, and the batch with it.
    let c = agent("c3", "three");
    let rc = run("c3");
    assert!(store.create_many(&[(&c, &rc)], Some("key-1"), &[]).is_err());
    assert!(store.load().unwrap().iter().all(|(row, _)| row.id != "c3"));
    // Kept a day after the agents' creation, then pruned.
    let mut connection = Connection::open(&path).unwrap();
    let keep = Retention {
        max_age: None,
        max_events: None,
    };
    prune::prune(
        &mut connection,
        keep,
        a.created_at + chrono::Duration::hours(23),
    )
    .unwrap();
    assert!(store.created_by("key-1").unwrap().is_some());
    prune::prune(
        &mut connection,
        keep,
        a.created_at + chrono::Duration::hours(25),
    )
    .unwrap();
    assert_eq!(store.created_by("key-1").unwrap(), None);
}

/// A run's calls come back in the order they came (also across a
/// reopening), whatever their keys; those of a run that is not its
/// agent's current one are not read back, and forgetting earlier runs
/// forgets their folded figures.
#[test]
fn telemetry_calls_come_back_by_run_in_the_order_they_came() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrangle.db");
    let call = |key: &str, second: i64| TelemetryCall {
        agent_id: "a1".into(),
        run: 1,
        key: key.into(),
        at: Utc.timestamp_opt(1_765_000_000 + second, 0).unwrap(),
        model: "claude-sonnet-4-5".into(),
        tokens: wrangle_wire::TokenCounts {
            input: 100,
            output: 10,
            cache_read: 0,
            cache_write: 0,
        },
        cost_usd: Some(0.01),
    };
    // Keys as digests are: in no order of time.
    let (first, second, third) = (call("ff01", 1), call("0a02", 2), call("7c03", 3));
    {
        let mut store = Store::open(&path).unwrap();
        store
            .create(&agent("a1", "build"), &run("a1"), &[])
            .unwrap();
        store
            .record_telemetry(&[second.clone(), first.clone()], &[], &[], &[])
            .unwrap();
    }
    let mut store = Store::open(&path).unwrap();
    let of_run_2 = TelemetryCall {
        run: 2,
        ..call("aa04", 4)
    };
    store
        .record_telemetry(&[third.clone(), of_run_2.clone()], &[], &[], &[])
        .unwrap();
    let by_run = store.telemetry_calls_of_current_runs().unwrap();
    assert_eq!(
        by_run,
        CallsByRun::from([(("a1".to_string(), 1), vec![second, first, third])]),
        "run 1 is the agent's current run; run 2's call is not read back"
    );

    // Run 2 begins: it is read back, run 1 no more.
    let mut a = agent("a1", "build");
    a.run = 2;
    let r = RunRow {
        run: 2,
        ..run("a1")
    };
    store.record(&a, &r, Utc::now(), &[]).unwrap();
    assert_eq!(
        store.telemetry_calls_of_current_runs().unwrap(),
        CallsByRun::from([(("a1".to_string(), 2), vec![of_run_2])])
    );
}

/// The calls a store of schema 11 kept by run (schema 12 keeps them in
/// the order they came) are all there after the migration, in the order
/// they were made.
#[test]
fn telemetry_calls_stored_by_run_survive_the_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrangle.db");
    store_of_schema(
        &path,
        11,
        "INSERT INTO agents (id, name, state, reason, run, created_at, updated_at, health)
                     VALUES ('a1', 'build', 'running', NULL, 1, '2026-11-24 07:00:00+00:00',
                             '2026-11-24 07:00:00+00:00', 'unknown');
                 INSERT INTO telemetry_calls VALUES
                     ('a1', 1, 'ff', 2000000, 'sonnet', 20, 2, 0, 0, 0.2),
                     ('a1', 1, '0a', 1000000, 'sonnet', 10, 1, 0, 0, NULL);",
    );
    let store = Store::open(&path).unwrap();
    let calls = store.telemetry_calls_of_current_runs().unwrap();
    let calls = &calls[&("a1".to_string(), 1)];
    let kept: Vec<(&str, i64, u64, Option<f64>)> = calls
        .iter()
        .map(|c| (c.key.as_str(), c.at.timestamp(), c.tokens.input, c.cost_usd))
        .collect();
    assert_eq!(kept, [("0a", 1, 10, None), ("ff", 2, 20, Some(0.2))]);
}

/// Calls made before a moment fold into one figure per model of their
/// run, with nothing lost (calls, tokens, cost where given); folding
/// again adds to it; later calls stay one by one; and the folded figures
/// go with the run's calls when a later run begins.
#[test]
fn telemetry_calls_fold_into_their_run_s_figures_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("wrangle.db")).unwrap();
    store
        .create(&agent("a1", "build"), &run("a1"), &[])
        .unwrap();
    let at = |second: i64| Utc.timestamp_opt(1_765_000_000 + second, 0).unwrap();
    let call =
        |key: &str, second: i64, model: &str, input: u64, cost_usd: Option<f64>| TelemetryCall {
            agent_id: "a1".into(),
            run: 1,
            key: key.into(),
            at: at(second),
            model: model.into(),
            tokens: wrangle_wire::TokenCounts {
                input,
                output: 10,
                cache_read: 1,
                cache_write: 2,
            },
            cost_usd,
        };
    let calls = [
        call("k1", 1, "sonnet", 100, Some(0.25)),
        call("k2", 2, "sonnet", 200, None),
        call("k3", 3, "haiku", 50, None),
        call("k4", 10, "sonnet", 300, Some(0.5)),
    ];
    store.record_telemetry(&calls, &[], &[], &[]).unwrap();

    assert_eq!(store.fold_telemetry(at(5)).unwrap(), 3);
    assert_eq!(
        store.telemetry_calls_of_current_runs().unwrap(),
        CallsByRun::from([(("a1".to_string(), 1), vec![calls[3].clone()])])
    );
    let tokens = |input, calls| wrangle_wire::TokenCounts {
        input,
        output: 10 * calls,
        cache_read: calls,
        cache_write: 2 * calls,
    };
    assert_eq!(
        store.telemetry_folded("a1", 1).unwrap(),
        vec![
            FoldedCalls {
                model: "haiku".into(),
                calls: 1,
                tokens: tokens(50, 1),
                cost_usd: None,
            },
            FoldedCalls {
                model: "sonnet".into(),
                calls: 2,
                tokens: tokens(300, 2),
                cost_usd: Some(0.25),
            },
        ]
    );

    // Folding again adds to the figures; nothing to fold changes nothing.
    assert_eq!(store.fold_telemetry(at(5)).unwrap(), 0);
    assert_eq!(store.fold_telemetry(at(11)).unwrap(), 1);
    assert!(store.telemetry_calls_of_current_runs().unwrap().is_empty());
    let sonnet = &store.telemetry_folded("a1", 1).unwrap()[1];
    assert_eq!((sonnet.calls, sonnet.tokens), (3, tokens(600, 3)));
    assert_eq!(sonnet.cost_usd, Some(0.75));

    // Run 2 begins: run 1's folded figures go with its calls.
    store.forget_telemetry_before("a1", 2).unwrap();
    assert!(store.telemetry_folded("a1", 1).unwrap().is_empty());
}

/// A fold goes through any number of calls, a few thousand a
/// transaction, oldest first, and stops at those made since; the calls of
/// an earlier run and of a removed agent are dropped, not folded.
#[test]
fn a_fold_takes_every_old_call_and_drops_those_of_stale_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("wrangle.db")).unwrap();
    for id in ["a1", "gone"] {
        store.create(&agent(id, id), &run(id), &[]).unwrap();
    }
    let at = |second: i64| Utc.timestamp_opt(1_765_000_000 + second, 0).unwrap();
    let call = |agent_id: &str, run: u32, n: i64| TelemetryCall {
        agent_id: agent_id.into(),
        run,
        key: format!("k{n}"),
        at: at(n),
        model: "sonnet".into(),
        tokens: wrangle_wire::TokenCounts {
            input: 1,
            output: 0,
            cache_read: 0,
            cache_write: 0,
        },
        cost_usd: None,
    };
    // Ten thousand calls of run 1, then one of run 0 (an earlier run, come
    // late), one of an agent removed since, and ten made after the cut.
    let old: Vec<TelemetryCall> = (0..10_000).map(|n| call("a1", 1, n)).collect();
    store.record_telemetry(&old, &[], &[], &[]).unwrap();
    store
        .record_telemetry(&[call("a1", 0, 5), call("gone", 1, 6)], &[], &[], &[])
        .unwrap();
    let recent: Vec<TelemetryCall> = (20_000..20_010).map(|n| call("a1", 1, n)).collect();
    store.record_telemetry(&recent, &[], &[], &[]).unwrap();
    store.delete_agent("gone", &[]).unwrap();

    assert_eq!(store.fold_telemetry(at(10_000)).unwrap(), 10_002);
    let folded = store.telemetry_folded("a1", 1).unwrap();
    assert_eq!(folded.len(), 1);
    assert_eq!((folded[0].calls, folded[0].tokens.input), (10_000, 10_000));
    assert!(store.telemetry_folded("a1", 0).unwrap().is_empty());
    assert_eq!(
        store.telemetry_calls_of_current_runs().unwrap(),
        CallsByRun::from([(("a1".to_string(), 1), recent)])
    );
    assert_eq!(store.fold_telemetry(at(10_000)).unwrap(), 0);
}

/// A change of run 1 of `agent_id` on `model`: `input` tokens, `cost`.
fn cost(agent_id: &str, model: &str, input: i64, cost_usd: f64) -> CostDelta {
    CostDelta {
        agent_id: agent_id.into(),
        agent_name: format!("name-of-{agent_id}"),
        agent_group: None,
        run: 1,
        model: model.into(),
        at: Utc::now(),
        tokens: SignedTokens {
            input,
            ..SignedTokens::default()
        },
        cost_usd,
        unpriced: false,
    }
}

/// The ledger's input tokens of every row of `agent_id`, read from the
/// file by a connection of its own: what a crash would leave.
fn ledger_on_disk(path: &std::path::Path, agent_id: &str) -> i64 {
    let connection = Connection::open(path).unwrap();
    connection
        .query_row(
            "SELECT coalesce(sum(input), 0) FROM costs WHERE agent_id = ?1",
            [agent_id],
            |row| row.get(0),
        )
        .unwrap()
}

#[test]
fn the_ledger_changes_of_running_telemetry_wait_and_are_never_lost_to_a_reader() {
    let (_dir, path, mut store) = store_with_a1();
    // A running run's change waits; one of a run that ended is written
    // with its calls.
    store
        .record_telemetry(
            &[],
            &[cost("a1", "m", 7, 0.5)],
            &[cost("a1", "m", 100, 1.0)],
            &[],
        )
        .unwrap();
    assert_eq!(ledger_on_disk(&path, "a1"), 7);
    // The ledgered figures of the run count what waits.
    let ledgered = store.ledgered("a1", 1).unwrap();
    assert_eq!(ledgered["m"].tokens.input, 107);
    assert_eq!(ledgered["m"].cost_usd, 1.5);
    // Another write (an agent's change of state) writes what waits.
    let at = Utc::now();
    let written = events(&store, "a1", &["agent.state"], at);
    store.append_events(&written).unwrap();
    assert_eq!(ledger_on_disk(&path, "a1"), 107);
    assert_eq!(store.ledgered("a1", 1).unwrap()["m"].tokens.input, 107);
    // A report writes what waits first, and shows it.
    store
        .record_telemetry(&[], &[], &[cost("a1", "m", 1000, 2.0)], &[])
        .unwrap();
    assert_eq!(ledger_on_disk(&path, "a1"), 107);
    let (_, total) = store.cost_report(CostKey::Agent, None).unwrap();
    assert_eq!(total.tokens.input, 1107);
    assert_eq!(ledger_on_disk(&path, "a1"), 1107);
    // Once the oldest has waited its second, the next telemetry writes all.
    store
        .record_telemetry(&[], &[], &[cost("a1", "m", 10_000, 0.0)], &[])
        .unwrap();
    std::thread::sleep(ledger::DEFER_AT_MOST);
    store
        .record_telemetry(&[], &[], &[cost("a1", "m", 100_000, 0.0)], &[])
        .unwrap();
    assert_eq!(ledger_on_disk(&path, "a1"), 111_107);
    // And the store's own call writes the rest, as does its end.
    store.write_deferred_costs().unwrap();
    store.write_deferred_costs().unwrap();
    assert_eq!(ledger_on_disk(&path, "a1"), 111_107);
    store
        .record_telemetry(&[], &[], &[cost("a1", "m", 1_000_000, 0.0)], &[])
        .unwrap();
    drop(store);
    assert_eq!(ledger_on_disk(&path, "a1"), 1_111_107);
}
