//! The engine through the library, with tokio's clock paused: timeouts, retries, polling and
//! objectives that span hours finish instantly, and the elapsed virtual time is asserted.

use std::sync::Mutex;

use drillbook::cancel::BoxFuture;
use drillbook::cancel::Cancel;
use drillbook::engine::{Observer, RunOptions};
use drillbook::record::{DrillRecord, StepRecord, StepStatus, Verdict};
use drillbook::runbook::{load_str, Runbook, Step};
use drillbook::steps::Interaction;
use tokio::time::{Duration, Instant};

use crate::support::TempDir;

/// A scripted operator: answers from a list, records what it was shown.
#[derive(Default)]
struct Operator {
    yes: bool,
    interactive: bool,
    answers: Mutex<Vec<bool>>,
    shown: Mutex<Vec<String>>,
}

impl Interaction for Operator {
    fn assume_yes(&self) -> bool {
        self.yes
    }
    fn is_interactive(&self) -> bool {
        self.interactive
    }
    fn show(&self, text: &str) {
        self.shown.lock().expect("lock").push(text.to_owned());
    }
    fn confirm(&self, _question: String) -> BoxFuture<'static, std::io::Result<bool>> {
        let answer = self.answers.lock().expect("lock").pop().unwrap_or(false);
        Box::pin(async move { Ok(answer) })
    }
}

impl Observer for Operator {
    fn started(&self, _: &DrillRecord, _: usize, _: usize) {}
    fn step_started(&self, _: bool, _: usize, _: &Step) {}
    fn step_finished(&self, _: bool, _: usize, _: &StepRecord) {}
}

fn runbook(steps: &str, cleanup: &str) -> Runbook {
    let yaml = format!("version: 1\nname: t\nobjectives: {{ rto: 1h }}\nprocedures:\n  p:\n    title: P\n    kind: drill\n    steps:\n{steps}    cleanup:\n{cleanup}");
    load_str("t.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"))
}

const TIDY: &str = "      - id: tidy\n        assert: 'true'\n";

async fn run(rb: &Runbook, op: &Operator) -> DrillRecord {
    let opts = RunOptions {
        operator: "tester".into(),
        ..RunOptions::default()
    };
    drillbook::engine::run(rb, "p", &opts, op, op, &Cancel::new())
        .await
        .expect("run starts")
}

#[tokio::test(start_paused = true)]
async fn timeout_stops_a_step_and_cleanup_still_runs() {
    let rb = runbook(
        "      - id: long\n        wait: 2h\n        timeout: 30m\n",
        TIDY,
    );
    let start = Instant::now();
    let rec = run(&rb, &Operator::default()).await;
    assert_eq!(rec.steps[0].status, StepStatus::TimedOut);
    assert_eq!(rec.verdict, Verdict::Failed);
    assert_eq!(rec.cleanup[0].status, StepStatus::Passed);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(1800) && waited < Duration::from_secs(7200),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_exponentially() {
    let dir = TempDir::new();
    let counter = dir.join("count");
    let step = format!(
        "      - id: flaky\n        shell:\n          run: 'n=$(cat \"$C\" 2>/dev/null || echo 0); n=$((n+1)); echo $n > \"$C\"; [ $n -ge 3 ]'\n          env: {{ C: \"{}\" }}\n        retries: {{ attempts: 3, backoff: 1h }}\n",
        counter.display()
    );
    let rb = runbook(&step, TIDY);
    let start = Instant::now();
    let rec = run(&rb, &Operator::default()).await;
    assert_eq!(
        rec.steps[0].status,
        StepStatus::Passed,
        "{:?}",
        rec.steps[0].error
    );
    assert_eq!(rec.steps[0].attempts, 3);
    // 1h after the first failure, 2h after the second
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(3 * 3600) && waited < Duration::from_secs(4 * 3600),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn wait_polls_until_the_expectation_holds_or_the_deadline() {
    let rb = runbook("      - id: never\n        wait: { poll: { assert: 'false' }, interval: 1m, deadline: 10m }\n", TIDY);
    let rec = run(&rb, &Operator::default()).await;
    assert_eq!(rec.steps[0].status, StepStatus::Failed);
    let err = rec.steps[0].error.clone().unwrap_or_default();
    // polls at 0, 1, …, 10 minutes
    assert!(err.contains("gave up after 10m and 11 polls"), "{err}");

    let dir = TempDir::new();
    let step = format!(
        "      - id: eventually\n        wait:\n          poll:\n            shell:\n              run: 'n=$(cat \"$C\" 2>/dev/null || echo 0); n=$((n+1)); echo $n > \"$C\"; echo $n'\n              env: {{ C: \"{}\" }}\n          until: result.stdout | int >= 4\n          interval: 5m\n          deadline: 1h\n",
        dir.join("n").display()
    );
    let rb = runbook(&step, TIDY);
    let start = Instant::now();
    let rec = run(&rb, &Operator::default()).await;
    assert_eq!(
        rec.steps[0].status,
        StepStatus::Passed,
        "{:?}",
        rec.steps[0].error
    );
    assert_eq!(rec.steps[0].outputs["polls"], 4);
    assert_eq!(rec.steps[0].outputs["stdout"], "4");
    assert!(start.elapsed() >= Duration::from_secs(15 * 60));
}

/// `fail_when` ends a wait as failed the moment it holds, long before the deadline.
#[tokio::test(start_paused = true)]
async fn wait_fails_at_once_when_fail_when_holds() {
    let dir = TempDir::new();
    let step = format!(
        "      - id: restore\n        wait:\n          poll:\n            shell:\n              run: 'n=$(cat \"$C\" 2>/dev/null || echo 0); n=$((n+1)); echo $n > \"$C\"; [ $n -ge 3 ] && echo error || echo running'\n              env: {{ C: \"{}\" }}\n          until: result.stdout == 'done'\n          fail_when: result.stdout == 'error'\n          interval: 1h\n          deadline: 7d\n",
        dir.join("n").display()
    );
    let rb = runbook(&step, TIDY);
    let start = Instant::now();
    let rec = run(&rb, &Operator::default()).await;
    assert_eq!(rec.steps[0].status, StepStatus::Failed);
    assert_eq!(
        rec.steps[0].error.as_deref(),
        Some("`fail_when: result.stdout == 'error'` held at poll 3")
    );
    assert_eq!(rec.steps[0].outputs["polls"], 3);
    // two intervals, not seven days
    assert!(start.elapsed() < Duration::from_secs(3 * 3600));
}

/// What answered and then cannot be reached is gone: `gone_after` (3) unreachable polls in
/// a row end the wait; what never answered is waited for until the deadline.
#[tokio::test(start_paused = true)]
async fn wait_fails_fast_when_what_it_polls_is_gone() {
    let dir = TempDir::new();
    // a probe that answers once and removes itself: the next polls cannot start it
    let probe = dir.join("probe");
    std::fs::write(&probe, "#!/bin/sh\nrm \"$0\"\necho up\n").expect("probe");
    std::fs::set_permissions(&probe, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let step = |path: &std::path::Path| {
        format!(
            "      - id: server\n        wait:\n          poll: {{ shell: {{ argv: [\"{}\"] }} }}\n          until: result.stdout == 'promoted'\n          interval: 1h\n          deadline: 7d\n",
            path.display()
        )
    };
    let rec = run(&runbook(&step(&probe), TIDY), &Operator::default()).await;
    assert_eq!(rec.steps[0].status, StepStatus::Failed);
    let err = rec.steps[0].error.clone().unwrap_or_default();
    assert!(
        err.starts_with(
            "what it polls is gone: it answered poll 1, then 3 polls in a row could not reach it: cannot start"
        ),
        "{err}"
    );
    // never there: polled until the deadline (every hour for 7 days)
    let rec = run(
        &runbook(&step(&dir.join("never")), TIDY),
        &Operator::default(),
    )
    .await;
    let err = rec.steps[0].error.clone().unwrap_or_default();
    assert!(err.starts_with("gave up after 7d and 169 polls"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn slow_drill_fails_its_rto_objective() {
    let rb = runbook(
        "      - id: restore\n        wait: 2h\n      - id: check\n        assert: 'true'\n",
        TIDY,
    );
    let rec = run(&rb, &Operator::default()).await;
    assert_eq!(rec.verdict, Verdict::Failed);
    let rto = rec.rto.expect("rto");
    assert_eq!(rto.met, Some(false));
    assert!(rto.measured_ms.unwrap_or(0) >= 7_200_000);
    assert!(rec
        .reason
        .unwrap_or_default()
        .contains("exceeds the objective of 1h"));
}

#[tokio::test(start_paused = true)]
async fn when_skips_and_cleanup_skips_what_never_ran() {
    let rb = runbook(
        "      - id: create\n        shell: exit 1\n      - id: optional\n        when: params is defined and false\n        assert: 'true'\n",
        "      - id: delete\n        shell: { run: 'true', env: { ID: \"{{ steps.create.stdout }}\" } }\n      - id: always\n        assert: 'true'\n",
    );
    let rec = run(&rb, &Operator::default()).await;
    assert_eq!(rec.steps[0].status, StepStatus::Failed);
    assert_eq!(rec.steps[1].status, StepStatus::NotRun);
    assert_eq!(rec.cleanup[0].status, StepStatus::Skipped);
    assert!(rec.cleanup[0]
        .note
        .clone()
        .unwrap_or_default()
        .contains("step `create` did not pass"));
    assert_eq!(rec.cleanup[1].status, StepStatus::Passed);

    let rb = runbook("      - id: a\n        assert: 'true'\n      - id: b\n        when: steps.a.checked == 2\n        assert: 'false'\n", TIDY);
    let rec = run(&rb, &Operator::default()).await;
    assert_eq!(rec.steps[1].status, StepStatus::Skipped);
    assert_eq!(rec.verdict, Verdict::Passed);
}

#[tokio::test(start_paused = true)]
async fn manual_step_at_a_terminal_records_the_answer() {
    let rb = runbook(
        "      - id: look\n        manual: Check the restored orders in the admin panel\n",
        TIDY,
    );
    let op = Operator {
        interactive: true,
        answers: Mutex::new(vec![true]),
        ..Operator::default()
    };
    let rec = run(&rb, &op).await;
    assert_eq!(rec.verdict, Verdict::Passed);
    assert_eq!(rec.approvals.len(), 1);
    assert_eq!(rec.approvals[0].via, "terminal");
    assert_eq!(rec.approvals[0].by, "tester");
    assert_eq!(
        op.shown.lock().expect("lock")[0],
        "Check the restored orders in the admin panel"
    );

    let op = Operator {
        interactive: true,
        answers: Mutex::new(vec![false]),
        ..Operator::default()
    };
    let rec = run(&rb, &op).await;
    assert_eq!(rec.verdict, Verdict::Failed);
    assert!(rec.steps[0]
        .error
        .clone()
        .unwrap_or_default()
        .contains("operator answered no"));
}

#[tokio::test(start_paused = true)]
async fn interrupt_cancels_the_step_and_runs_cleanup() {
    let rb = runbook(
        "      - id: long\n        wait: 5h\n      - id: next\n        assert: 'true'\n",
        "      - id: tidy\n        wait: 10m\n",
    );
    let cancel = Cancel::new();
    let op = Operator::default();
    let opts = RunOptions {
        operator: "tester".into(),
        ..RunOptions::default()
    };
    let interrupter = {
        let cancel = cancel.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            cancel.interrupt();
        }
    };
    let start = Instant::now();
    let (rec, ()) = tokio::join!(
        drillbook::engine::run(&rb, "p", &opts, &op, &op, &cancel),
        interrupter
    );
    let rec = rec.expect("run");
    assert_eq!(rec.verdict, Verdict::Interrupted);
    assert_eq!(rec.verdict.exit_code(), 130);
    assert_eq!(rec.steps[0].status, StepStatus::Cancelled);
    assert_eq!(rec.steps[1].status, StepStatus::NotRun);
    assert_eq!(
        rec.cleanup[0].status,
        StepStatus::Passed,
        "cleanup ran to the end"
    );
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(660) && waited < Duration::from_secs(3600),
        "{waited:?}"
    );
}

/// An operator whose terminal breaks: showing anything panics, in the middle of a step.
struct BrokenTerminal;

impl Interaction for BrokenTerminal {
    fn assume_yes(&self) -> bool {
        true
    }
    fn is_interactive(&self) -> bool {
        false
    }
    fn show(&self, _text: &str) {
        panic!("the terminal broke");
    }
    fn confirm(&self, _question: String) -> BoxFuture<'static, std::io::Result<bool>> {
        Box::pin(async { Ok(true) })
    }
}

impl Observer for BrokenTerminal {
    fn started(&self, _: &DrillRecord, _: usize, _: usize) {}
    fn step_started(&self, _: bool, _: usize, _: &Step) {}
    fn step_finished(&self, _: bool, _: usize, _: &StepRecord) {}
}

/// A step that panics (a bug, here in the operator's terminal) fails as could-not-run: the
/// scratch server an earlier step started is still stopped and removed, the cleanup steps
/// still run, and the record says which step broke; the exit code is 3. Real time: a real
/// server starts and stops.
#[tokio::test]
async fn a_panicking_step_is_an_internal_error_and_the_run_still_cleans_up() {
    let dir = TempDir::new();
    let cluster = dir.join("scratch");
    let marker = dir.join("cleanup-ran");
    let steps = format!(
        "      - id: scratch\n        local.cluster: {{ dir: \"{}\" }}\n      - id: boom\n        manual: Look at the restored rows\n      - id: after\n        assert: 'true'\n",
        cluster.display()
    );
    let cleanup = format!(
        "      - id: tidy\n        shell:\n          run: touch \"$M\"\n          env: {{ M: \"{}\" }}\n",
        marker.display()
    );
    let rb = runbook(&steps, &cleanup);
    let opts = RunOptions {
        operator: "tester".into(),
        ..RunOptions::default()
    };
    let rec = drillbook::engine::run(
        &rb,
        "p",
        &opts,
        &BrokenTerminal,
        &BrokenTerminal,
        &Cancel::new(),
    )
    .await
    .expect("run starts");
    assert_eq!(
        rec.steps[0].status,
        StepStatus::Passed,
        "{:?}",
        rec.steps[0].error
    );
    let boom = &rec.steps[1];
    assert_eq!(boom.status, StepStatus::Failed);
    assert_eq!(
        boom.error_class,
        Some(drillbook::record::ErrorClass::Unavailable)
    );
    let error = boom.error.clone().unwrap_or_default();
    assert!(
        error.starts_with("internal error in step `boom`: the terminal broke"),
        "{error}"
    );
    assert_eq!(rec.steps[2].status, StepStatus::NotRun);
    assert_eq!(rec.verdict, Verdict::Error);
    assert_eq!(rec.verdict.exit_code(), 3);
    assert!(
        rec.reason
            .as_deref()
            .unwrap_or_default()
            .contains("internal error in step `boom`"),
        "{:?}",
        rec.reason
    );
    // the cleanup step, then the undo of what `scratch` created
    assert_eq!(rec.cleanup[0].status, StepStatus::Passed);
    assert!(marker.exists(), "cleanup did not run");
    assert_eq!(rec.cleanup[1].id, "scratch:undo");
    assert_eq!(
        rec.cleanup[1].status,
        StepStatus::Passed,
        "{:?}",
        rec.cleanup[1].error
    );
    assert!(!cluster.exists(), "the scratch cluster was left behind");
}

#[tokio::test(start_paused = true)]
async fn validations_after_a_failed_validation_still_run_and_other_steps_stop() {
    let rb = runbook(
        concat!(
            "      - id: restore\n        shell: echo restored\n",
            "      - id: rows\n        assert: { that: 'false', message: rows differ }\n",
            "      - id: schema\n        assert: \"steps.restore.stdout == 'restored'\"\n",
            "      - id: fix\n        shell: echo fixed\n",
            "      - id: after_fix\n        assert: \"steps.fix.stdout == 'fixed'\"\n",
            "      - id: rows_again\n        assert: { that: 'false', message: still differ }\n",
            "      - id: rows_read\n        assert: 'steps.rows.checked is defined'\n",
        ),
        TIDY,
    );
    let rec = run(&rb, &Operator::default()).await;
    let status: Vec<_> = rec.steps.iter().map(|s| s.status).collect();
    assert_eq!(
        status,
        [
            StepStatus::Passed,
            StepStatus::Failed,
            StepStatus::Passed,
            StepStatus::NotRun,
            StepStatus::NotRun,
            StepStatus::Failed,
            StepStatus::NotRun,
        ]
    );
    let note = |i: usize| rec.steps[i].note.clone().unwrap_or_default();
    assert!(note(3).contains("step `rows` failed"), "{}", note(3));
    assert!(note(4).contains("steps.fix"), "{}", note(4));
    assert!(note(6).contains("steps.rows"), "{}", note(6));
    assert_eq!(rec.verdict, Verdict::Failed);
    let reason = rec.reason.clone().unwrap_or_default();
    assert!(reason.contains("rows"), "{reason}");
    assert_eq!(rec.cleanup[0].status, StepStatus::Passed);
}
