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
    for j in &jobs {
        let fields: Vec<&str> = j.split_whitespace().collect();
        drillbook::cron::Cron::parse(&fields[..5].join(" ")).expect("a cron expression");
        assert_eq!(fields[5], "drillbook");
    }
    assert!(
        jobs[0].contains("run") && jobs[0].contains("pitr-drill"),
        "{text}"
    );
    assert!(jobs[1].starts_with("0 0 * * * drillbook check"), "{text}");
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
            assert!(value.starts_with("/usr/local/bin/drillbook "), "{value}");
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
    }
}
