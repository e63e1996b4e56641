//! `drillbook schedule --emit`: every format parses as what it claims to be, names the
//! environment variables without values, and runs each scheduled procedure and the checks.

use crate::support::{root, Cli};

fn emit(format: &str) -> String {
    let r = Cli::new()
        .args([
            "schedule",
            &root()
                .join("runbooks/neon-production.yaml")
                .display()
                .to_string(),
            "--emit",
            format,
        ])
        .run();
    r.code(0);
    assert!(!r.stdout.contains("napi-") && !r.stdout.contains("hooks.slack.com"));
    r.stdout
}

const ENV: [&str; 4] = [
    "NEON_API_KEY",
    "NEON_PROJECT_ID",
    "SLACK_WEBHOOK_URL",
    "BETTERSTACK_HEARTBEAT_URL",
];

#[test]
fn crontab_lines_are_valid_cron_and_run_the_drill_and_the_checks() {
    let text = emit("crontab");
    let jobs: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains('=') && !l.trim().is_empty())
        .collect();
    assert_eq!(jobs.len(), 2, "{text}");
    let bin = std::fs::canonicalize(crate::support::BIN).expect("the binary");
    for j in &jobs {
        let fields: Vec<&str> = j.split_whitespace().collect();
        drillbook::cron::Cron::parse(&fields[..5].join(" ")).expect("a cron expression");
        // absolute paths: cron starts jobs in the home directory with a bare PATH
        assert_eq!(fields[5], "cd", "{text}");
        assert!(fields[6].starts_with('/'), "{text}");
        assert!(j.contains(&format!("{} ", bin.display())), "{text}");
    }
    assert!(
        jobs[0].contains("run") && jobs[0].contains("pitr-drill"),
        "{text}"
    );
    assert!(
        jobs[1].starts_with("0 0 * * * cd ") && jobs[1].contains(" check "),
        "{text}"
    );
    assert!(text.contains("CRON_TZ=UTC"));
    for e in ENV {
        assert!(
            text.contains(&format!("#   {e}=…")),
            "{e} not named:\n{text}"
        );
    }
}

#[test]
fn systemd_units_have_known_sections_and_keys() {
    let text = emit("systemd");
    let known = [
        ("Unit", ["Description", "Wants", "After"].as_slice()),
        (
            "Service",
            ["Type", "WorkingDirectory", "EnvironmentFile", "ExecStart"].as_slice(),
        ),
        ("Timer", ["OnCalendar", "Persistent", "Unit"].as_slice()),
        ("Install", ["WantedBy"].as_slice()),
    ];
    let mut section = "";
    let mut timers = 0;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = known
                .iter()
                .find(|(s, _)| *s == name)
                .map(|(s, _)| *s)
                .unwrap_or_else(|| panic!("unknown section {name}"));
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key=value: {line}"));
        let keys = known
            .iter()
            .find(|(s, _)| *s == section)
            .expect("inside a section")
            .1;
        assert!(keys.contains(&key), "{key} in [{section}]");
        assert!(!value.is_empty());
        if key == "OnCalendar" {
            timers += 1;
            assert!(value.ends_with(" UTC"), "{value}");
        }
        if key == "ExecStart" {
            let bin = std::fs::canonicalize(crate::support::BIN).expect("the binary");
            assert!(value.starts_with(&format!("{} ", bin.display())), "{value}");
        }
        if key == "WorkingDirectory" {
            assert!(value.starts_with('/'), "{value}");
        }
    }
    assert_eq!(timers, 2);
    assert!(text.contains("OnCalendar=*-*-01 09:00:00 UTC"));
    assert!(text.contains("OnCalendar=*-*-* 00:00:00 UTC"));
}

#[test]
fn github_actions_workflow_is_yaml_with_utc_crons_and_secrets() {
    let text = emit("github-actions");
    let wf: serde_yaml::Value = serde_yaml::from_str(&text).expect("YAML");
    let crons: Vec<&str> = wf["on"]["schedule"]
        .as_sequence()
        .expect("on.schedule")
        .iter()
        .map(|c| c["cron"].as_str().expect("cron"))
        .collect();
    assert_eq!(crons, ["0 9 1 * *", "0 0 * * *"]);
    for c in &crons {
        drillbook::cron::Cron::parse(c).expect("cron");
    }
    let jobs = wf["jobs"].as_mapping().expect("jobs");
    assert_eq!(jobs.len(), 2);
    let drill = &wf["jobs"]["pitr-drill"];
    assert_eq!(drill["runs-on"], "ubuntu-latest");
    assert_eq!(drill["env"]["NEON_API_KEY"], "${{ secrets.NEON_API_KEY }}");
    let steps = drill["steps"].as_sequence().expect("steps");
    assert!(steps.iter().any(|s| s["run"]
        == "drillbook run runbooks/neon-production.yaml pitr-drill"
        || s["run"]
            .as_str()
            .is_some_and(|r| r.starts_with("drillbook run ") && r.ends_with(" pitr-drill"))));
    // a job its timeout kills leaves nothing: `gc` runs whatever happened
    assert!(
        steps.iter().any(|s| s["if"] == "always()"
            && s["run"]
                .as_str()
                .is_some_and(|r| r.starts_with("drillbook gc --yes "))),
        "{text}"
    );
}

#[test]
fn kubernetes_cronjobs_parse_with_utc_and_secret_references() {
    let text = emit("kubernetes");
    let docs: Vec<serde_yaml::Value> = text
        .split("\n---\n")
        .skip(1)
        .map(|d| serde_yaml::from_str(d).expect("a YAML document"))
        .collect();
    assert_eq!(docs.len(), 2);
    for d in &docs {
        assert_eq!(d["apiVersion"], "batch/v1");
        assert_eq!(d["kind"], "CronJob");
        assert_eq!(d["spec"]["timeZone"], "Etc/UTC");
        assert_eq!(d["spec"]["concurrencyPolicy"], "Forbid");
        drillbook::cron::Cron::parse(d["spec"]["schedule"].as_str().expect("schedule"))
            .expect("cron");
        let name = d["metadata"]["name"].as_str().expect("name");
        assert!(
            name.len() <= 52
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
        let c = &d["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
        let env: Vec<&str> = c["env"]
            .as_sequence()
            .expect("env")
            .iter()
            .map(|e| e["name"].as_str().expect("name"))
            .collect();
        assert!(env.contains(&"NEON_API_KEY"), "{env:?}");
        assert_eq!(
            c["env"][0]["valueFrom"]["secretKeyRef"]["name"],
            "drillbook-neon-production"
        );
        // a variable the job can do without is an optional secret reference: the pod
        // starts when the Secret lacks it
        for e in c["env"].as_sequence().expect("env") {
            let name = e["name"].as_str().expect("name");
            let optional = e["valueFrom"]["secretKeyRef"]["optional"] == true;
            let can_do_without = [
                "DRILLBOOK_HISTORY",
                "SLACK_WEBHOOK_URL",
                "BETTERSTACK_HEARTBEAT_URL",
            ]
            .contains(&name);
            assert_eq!(optional, can_do_without, "{name}");
        }
    }
}

/// A runbook with a scheduled drill of shell steps, in a working directory whose name has
/// a `%` (cron turns an unescaped `%` into a newline) and a space.
fn local_setup(c: &Cli) -> std::path::PathBuf {
    let work = c.dir.join("ops 100% drills");
    std::fs::create_dir_all(work.join("runbooks")).expect("mkdir");
    std::fs::write(
        work.join("runbooks/nightly.yaml"),
        "version: 1\nname: nightly\nprocedures:\n  drill:\n    title: Drill\n    kind: drill\n    schedule: '0 3 * * *'\n    steps:\n      - shell: 'echo drilled in \"$PWD\"'\nchecks:\n  - id: up\n    shell: 'true'\n",
    )
    .expect("write runbook");
    work
}

/// Each crontab line works when installed as printed: run as cron runs it (the `\\%`
/// unescaped, `sh -c`, from the home directory, with a bare PATH and no other variable),
/// it runs drillbook in the working directory, which records and logs there.
#[test]
fn emitted_crontab_lines_run_as_installed() {
    let c = Cli::new();
    let work = local_setup(&c);
    let runbook = work.join("runbooks/nightly.yaml").display().to_string();
    let workdir = work.display().to_string();
    // the Cli (and so its directory) lives to the end of the test
    let c = c.args([
        "schedule",
        &runbook,
        "--emit",
        "crontab",
        "--workdir",
        &workdir,
    ]);
    let r = c.run();
    r.code(0);
    let jobs: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains("CRON_TZ") && !l.trim().is_empty())
        .collect();
    assert_eq!(jobs.len(), 2, "{}", r.stdout);
    // the runbook is named relative to the working directory, as a run by hand there would
    assert!(
        jobs[0].contains(" run runbooks/nightly.yaml drill "),
        "{}",
        r.stdout
    );
    for job in jobs {
        let command: String = job.splitn(6, ' ').nth(5).expect("a command").into();
        assert!(
            !command.replace("\\%", "").contains('%'),
            "an unescaped %: {job}"
        );
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(command.replace("\\%", "%"))
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", "/")
            .current_dir("/")
            .status()
            .expect("sh");
        assert!(status.success(), "{job}");
    }
    let log = std::fs::read_to_string(work.join("drills/cron.log")).expect("cron.log");
    assert!(
        log.contains("drill: PASSED") && log.contains("nightly: OK"),
        "{log}"
    );
    let history = std::fs::read_to_string(work.join("drills/history.jsonl")).expect("history");
    assert_eq!(history.lines().count(), 2, "{history}");
}

/// A GitHub Actions job whose steps need the machine's PostgreSQL binaries or backups runs
/// on a self-hosted runner, says why, and `schedule` warns.
#[test]
fn github_jobs_with_local_restores_run_on_a_self_hosted_runner() {
    let r = Cli::new()
        .args([
            "schedule",
            &root()
                .join("runbooks/postgres-pitr-drill.yaml")
                .display()
                .to_string(),
            "--emit",
            "github-actions",
        ])
        .run();
    r.code(0);
    let wf: serde_yaml::Value = serde_yaml::from_str(&r.stdout).expect("YAML");
    let jobs = wf["jobs"].as_mapping().expect("jobs");
    let drill = jobs
        .iter()
        .find(|(k, _)| k.as_str() != Some("checks"))
        .map(|(_, v)| v)
        .expect("the drill job");
    assert_eq!(drill["runs-on"], "self-hosted", "{}", r.stdout);
    assert!(
        r.stdout
            .contains("`local.restore` needs the PostgreSQL server binaries"),
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains("warning: job"), "{}", r.stderr);
}

/// A procedure's title is written on one line: a line break in it cannot add a cron job to
/// the crontab or a key (`ExecStart=`) to a systemd unit.
#[test]
fn a_title_cannot_add_a_line_to_a_crontab_or_a_unit() {
    let yaml = "version: 1\nname: titled\nprocedures:\n  drill:\n    title: \"Drill\\n* * * * * touch /tmp/pwned\\nExecStart=/bin/touch /tmp/pwned\"\n    kind: drill\n    schedule: \"0 3 * * *\"\n    steps:\n      - id: a\n        shell: \"true\"\n";
    for format in ["crontab", "systemd"] {
        let r = Cli::new()
            .runbook(yaml)
            .args(["schedule", "runbook.yaml", "--emit", format])
            .run();
        r.code(0);
        let injected: Vec<&str> = r
            .stdout
            .lines()
            .filter(|l| l.starts_with("* * * * *") || l.starts_with("ExecStart=/bin/touch"))
            .collect();
        assert_eq!(injected, Vec::<&str>::new(), "{format}:\n{}", r.stdout);
        assert!(
            r.stdout.contains(
                "drill: Drill * * * * * touch /tmp/pwned ExecStart=/bin/touch /tmp/pwned"
            ),
            "{format}:\n{}",
            r.stdout
        );
    }
}

const CALENDAR_RUNBOOK: &str = r#"version: 1
name: shop
objectives:
  rto: 20m
checks:
  - id: always
    shell: "true"
procedures:
  drill:
    title: Monthly restore drill
    kind: drill
    schedule: "0 9 1 * *"
    steps:
      - shell: "true"
  weekly:
    title: Weekly, with a comma; and a semicolon
    kind: drill
    schedule: "30 2 * * 1"
    steps:
      - shell: "true"
  twice:
    title: Twice a day on some days of two months
    kind: drill
    schedule: "0 6,18 */10 3,9 *"
    steps:
      - shell: "true"
  leap:
    title: Leap day
    kind: drill
    schedule: "15 12 29 2 *"
    steps:
      - shell: "true"
  by-hand:
    title: Not scheduled
    kind: drill
    steps:
      - shell: "true"
"#;

/// Reads an .ics file with the `icalendar` package and expands each event's RRULE from its
/// DTSTART with `dateutil.rrule`: per event, its properties, the first occurrences (UTC,
/// RFC 3339), whether DTSTART is in UTC, and its alarms.
const READ_ICS: &str = r#"
import json, sys, datetime
from icalendar import Calendar
from dateutil.rrule import rrulestr
cal = Calendar.from_ical(open(sys.argv[1], 'rb').read())
count = int(sys.argv[2])
out = {"version": str(cal.get("VERSION")), "prodid": str(cal.get("PRODID")), "events": []}
for ev in cal.walk("VEVENT"):
    start = ev.decoded("DTSTART")
    rule = ev.get("RRULE").to_ical().decode()
    occurrences = []
    for t in rrulestr(rule, dtstart=start):
        occurrences.append(t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        if len(occurrences) == count:
            break
    alarms = []
    for a in ev.walk("VALARM"):
        trigger = a.get("TRIGGER")
        alarms.append({
            "action": str(a.get("ACTION")),
            "trigger_seconds": trigger.dt.total_seconds(),
            "related": trigger.params.get("RELATED", "START"),
        })
    out["events"].append({
        "uid": str(ev.get("UID")),
        "summary": str(ev.get("SUMMARY")),
        "description": str(ev.get("DESCRIPTION")),
        "url": str(ev.get("URL")),
        "rrule": rule,
        "utc": start.tzinfo is not None and start.utcoffset() == datetime.timedelta(0) and start.tzname() == "UTC",
        "duration_seconds": ev.decoded("DURATION").total_seconds(),
        "occurrences": occurrences,
        "alarms": alarms,
    })
print(json.dumps(out))
"#;

/// The calendar `schedule --emit ics` writes at `epoch`, read by the Python parser.
fn read_calendar(epoch: i64) -> (String, serde_json::Value) {
    let r = Cli::new()
        .runbook(CALENDAR_RUNBOOK)
        .env("SOURCE_DATE_EPOCH", &epoch.to_string())
        .args([
            "schedule",
            "runbook.yaml",
            "--emit",
            "ics",
            "--drillbook",
            "/usr/local/bin/drillbook",
            "--workdir",
            "/srv/drills",
            "--doc",
            "https://wiki.example.com/shop-runbook.md",
        ])
        .run();
    r.code(0);
    let file = crate::support::TempDir::new();
    let path = file.join("shop.ics");
    std::fs::write(&path, &r.stdout).expect("write the calendar");
    let out = std::process::Command::new(crate::support::ical_python())
        .args(["-c", READ_ICS])
        .arg(&path)
        .arg("6")
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "the calendar does not parse:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        r.stdout
    );
    (
        r.stdout,
        serde_json::from_slice(&out.stdout).expect("the reader's JSON"),
    )
}

#[test]
fn ics_events_recur_as_the_cron_does_in_utc_with_a_reminder_the_day_before() {
    let epoch = 1_795_000_000; // 2026-11-18T11:06:40Z
    let (text, cal) = read_calendar(epoch);
    // CRLF line ends, lines folded at 75 octets
    assert!(
        text.split_terminator('\n')
            .all(|l| l.ends_with('\r') && l.len() <= 76),
        "{text:?}"
    );
    assert_eq!(cal["version"], "2.0");
    let events = cal["events"].as_array().expect("events");
    // one per scheduled procedure; the checks and the unscheduled procedure are not events
    let uids: Vec<&str> = events.iter().filter_map(|e| e["uid"].as_str()).collect();
    assert_eq!(
        uids,
        [
            "drillbook/shop/drill",
            "drillbook/shop/weekly",
            "drillbook/shop/twice",
            "drillbook/shop/leap"
        ]
    );
    let from = chrono::DateTime::from_timestamp(epoch, 0).expect("epoch");
    for (e, cron) in events.iter().zip([
        "0 9 1 * *",
        "30 2 * * 1",
        "0 6,18 */10 3,9 *",
        "15 12 29 2 *",
    ]) {
        let cron = drillbook::cron::Cron::parse(cron).expect("cron");
        let expected: Vec<String> = cron
            .upcoming(from)
            .take(6)
            .map(drillbook::timestamp::rfc3339)
            .collect();
        assert_eq!(e["occurrences"], serde_json::json!(expected), "{e}");
        assert_eq!(e["utc"], true, "{e}");
        assert_eq!(e["duration_seconds"], 1200.0, "the RTO objective: {e}");
        assert_eq!(
            e["alarms"],
            serde_json::json!([{"action": "DISPLAY", "trigger_seconds": -86400.0, "related": "START"}]),
            "{e}"
        );
    }
    let drill = &events[0];
    assert_eq!(drill["summary"], "drillbook drill: shop / drill");
    assert_eq!(drill["rrule"], "FREQ=MONTHLY;BYMONTHDAY=1");
    let description = drill["description"].as_str().expect("description");
    assert!(
        description
            .contains("\ncd /srv/drills && mkdir -p drills && /usr/local/bin/drillbook run ")
            && description.contains("/runbook.yaml drill\n"),
        "{description}"
    );
    let link = "https://wiki.example.com/shop-runbook.md#monthly-restore-drill";
    assert!(description.ends_with(link), "{description}");
    assert_eq!(drill["url"], link);
    // escaped text reads back as written
    assert!(events[1]["description"]
        .as_str()
        .is_some_and(|d| d.contains("Weekly, with a comma; and a semicolon")));

    // a later export keeps the UIDs: a re-import updates the events
    let (_, again) = read_calendar(epoch + 86_400 * 40);
    let again: Vec<&str> = again["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["uid"].as_str())
        .collect();
    assert_eq!(again, uids);
}

#[test]
fn ics_refuses_a_schedule_no_rrule_can_express_and_a_runbook_with_no_schedule() {
    let r = Cli::new()
        .runbook("version: 1\nname: x\nprocedures:\n  p:\n    title: P\n    kind: drill\n    schedule: \"0 9 1 * 1\"\n    steps:\n      - shell: 'true'\n")
        .args(["schedule", "runbook.yaml", "--emit", "ics"])
        .run();
    r.code(2);
    assert!(
        r.stderr.contains("the schedule `0 9 1 * 1` of `p` restricts both the day of month and the day of week (cron runs on either), which an iCalendar RRULE cannot express"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty());
    let r = Cli::new()
        .runbook("version: 1\nname: x\nchecks:\n  - id: c\n    shell: 'true'\nprocedures:\n  p:\n    title: P\n    kind: drill\n    steps:\n      - shell: 'true'\n")
        .args(["schedule", "runbook.yaml", "--emit", "ics"])
        .run();
    r.code(2);
    assert!(
        r.stderr
            .contains("has no procedure with a `schedule`: there is nothing to put in a calendar"),
        "{}",
        r.stderr
    );
}
