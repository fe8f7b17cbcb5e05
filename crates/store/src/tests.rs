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
    }
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
fn a_state_change_survives_reopening_with_its_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrangle.db");
    {
        let mut store = Store::open(&path).unwrap();
        let mut a = agent("a1", "build");
        let mut r = run("a1");
        store.create(&a, &r, Utc::now()).unwrap();
        r.shim = Some((100, 5000));
        r.process = Some((101, 5001));
        r.started_at = Some(Utc::now());
        a.state = State::Running;
        store.record(&a, &r, Utc::now()).unwrap();
        a.state = State::Failed;
        a.reason = Some("exited with code 3".into());
        r.exit_code = Some(3);
        r.ended_at = Some(Utc::now());
        store.record(&a, &r, Utc::now()).unwrap();
    }
    let store = Store::open(&path).unwrap();
    let loaded = store.load().unwrap();
    assert_eq!(loaded.len(), 1);
    let (a, r) = &loaded[0];
    assert_eq!(a.state, State::Failed);
    assert_eq!(a.reason.as_deref(), Some("exited with code 3"));
    let r = r.as_ref().unwrap();
    assert_eq!(r.exit_code, Some(3));
    assert_eq!(r.shim, Some((100, 5000)));
    assert_eq!(r.process, Some((101, 5001)));
    let states: Vec<State> = store
        .events("a1")
        .unwrap()
        .iter()
        .map(|e| e.state)
        .collect();
    assert_eq!(states, [State::Starting, State::Running, State::Failed]);
}

#[test]
fn a_duplicate_name_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("wrangle.db")).unwrap();
    store
        .create(&agent("a1", "build"), &run("a1"), Utc::now())
        .unwrap();
    let error = store
        .create(&agent("a2", "build"), &run("a2"), Utc::now())
        .unwrap_err();
    assert!(
        matches!(error, StoreError::NameTaken(ref name) if name == "build"),
        "{error}"
    );
    assert_eq!(store.load().unwrap().len(), 1);
    assert_eq!(store.id_by_name("build").unwrap().as_deref(), Some("a1"));
}

#[test]
fn deleting_an_agent_takes_its_runs_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("wrangle.db")).unwrap();
    let a = agent("a1", "build");
    store.create(&a, &run("a1"), Utc::now()).unwrap();
    assert!(store.delete_agent("a1").unwrap());
    assert!(!store.delete_agent("a1").unwrap());
    assert!(store.load().unwrap().is_empty());
    assert!(store.runs("a1").unwrap().is_empty());
    assert!(store.events("a1").unwrap().is_empty());
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
    let error = store
        .create(&agent("a1", "build"), &run("a1"), Utc::now())
        .unwrap_err();
    assert!(matches!(error, StoreError::Locked { .. }), "{error}");
    assert!(error.to_string().contains("wrangle.db"), "{error}");

    holder.execute_batch("ROLLBACK;").unwrap();
    store
        .create(&agent("a1", "build"), &run("a1"), Utc::now())
        .unwrap();
    assert_eq!(store.load().unwrap().len(), 1);
}

#[test]
fn group_limits_are_kept_changed_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrangle.db");
    let mut store = Store::open(&path).unwrap();
    store.set_group_limit("builds", Some(2)).unwrap();
    store.set_group_limit("agents", Some(8)).unwrap();
    store.set_group_limit("builds", Some(3)).unwrap();
    drop(store);
    let mut store = Store::open(&path).unwrap();
    assert_eq!(
        store.group_limits().unwrap(),
        vec![("agents".to_string(), 8), ("builds".to_string(), 3)]
    );
    store.set_group_limit("agents", None).unwrap();
    assert_eq!(
        store.group_limits().unwrap(),
        vec![("builds".to_string(), 3)]
    );
}

#[test]
fn a_store_of_the_schema_before_keeps_its_agents_runs_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrangle.db");
    {
        // A store as the version before this one left it.
        let connection = rusqlite::Connection::open(&path).unwrap();
        for migration in &schema::MIGRATIONS[..2] {
            connection.execute_batch(migration).unwrap();
        }
        connection.pragma_update(None, "user_version", 2).unwrap();
        connection
            .execute_batch(
                "INSERT INTO agents VALUES ('a1', 'build', '{}', 'running', NULL, 1, '2026-11-24 07:00:00+00:00', '2026-11-24 07:00:01+00:00');
                 INSERT INTO runs (agent_id, run, state, dir, shim_pid, shim_start_time, pid,
                     pid_start_time, started_at)
                     VALUES ('a1', 1, 'running', '/tmp/runs/a1/1', 100, 5000, 101, 5001, '2026-11-24 07:00:01+00:00');
                 INSERT INTO events (at, agent_id, run, state) VALUES ('2026-11-24 07:00:00+00:00', 'a1', 1, 'starting');
                 INSERT INTO events (at, agent_id, run, state) VALUES ('2026-11-24 07:00:01+00:00', 'a1', 1, 'running');",
            )
            .unwrap();
    }
    let mut store = Store::open(&path).unwrap();
    let loaded = store.load().unwrap();
    assert_eq!(loaded.len(), 1);
    let (mut a, r) = loaded.into_iter().next().unwrap();
    let mut r = r.expect("the run is kept");
    assert_eq!(a.state, State::Running);
    assert_eq!((r.shim, r.process), (Some((100, 5000)), Some((101, 5001))));
    let seqs: Vec<i64> = store.events("a1").unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2]);

    // Changes go on from there: the run is updated, events numbered on.
    a.state = State::Failed;
    r.exit_code = Some(3);
    store.record(&a, &r, Utc::now()).unwrap();
    let events = store.events("a1").unwrap();
    assert_eq!(
        events.last().map(|e| (e.seq, e.state)),
        Some((3, State::Failed))
    );
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
        store.create(&a, &run(&id), Utc::now()).unwrap();
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
