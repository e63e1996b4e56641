//! The `neon` provider's steps: point-in-time branches, branch restores, snapshots and the
//! checks that prove backups are configured, all through Neon's API ([`crate::neon`]).
//!
//! Safety rules every kind follows:
//! - a branch or snapshot drillbook creates is registered for undo *before* the request is
//!   sent (by its unique name), so it is deleted on every path — failure, timeout, Ctrl-C —
//!   unless the step says `keep: true`;
//! - a point in time is checked against the project's restore window before anything is
//!   changed;
//! - a create whose response was lost or failed with a server error is never sent twice:
//!   the branch is looked up by name first and adopted when it exists.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{Run, StepCx, StepError, Undo};
use crate::duration::Duration;
use crate::kind::neon::{
    NeonBackupSchedule, NeonConnectionUri, NeonCreateBranch, NeonCreateSnapshot, NeonDeleteBranch,
    NeonDeleteSnapshot, NeonFinalizeRestore, NeonProject, NeonRestoreBranch, NeonRestoreSnapshot,
    NeonRetention, NeonSchemaDiff, NeonSetDefaultBranch, NeonSnapshotAge,
};
use crate::neon::{Branch, Client, NeonError, Project, ScheduleItem};
use crate::record::Outputs;
use crate::runbook::TargetKind;
use crate::timestamp::{rfc3339, rfc3339_precise, TimeSpec};

/// A Neon target with its templates rendered.
#[derive(Debug, Clone)]
pub struct NeonPlace {
    pub project: String,
    pub branch: Option<String>,
    pub database: Option<String>,
    pub role: Option<String>,
}

/// The rendered `neon:` settings of target `name`.
pub fn place(cx: &StepCx<'_>, name: &str) -> Result<NeonPlace, StepError> {
    place_in(cx.runbook, cx.templates, cx.vars, name)
}

/// [`place`] outside a running step (the preflight renders targets before any step runs).
pub fn place_in(
    runbook: &crate::runbook::Runbook,
    templates: &minijinja::Environment<'static>,
    vars: &minijinja::Value,
    name: &str,
) -> Result<NeonPlace, StepError> {
    let target = runbook
        .targets
        .get(name)
        .ok_or_else(|| StepError::failed(format!("no target `{name}`")))?;
    let TargetKind::Neon(n) = &target.kind else {
        return Err(StepError::failed(format!(
            "target `{name}` is not a Neon target"
        )));
    };
    let render = |t: &str| -> Result<String, StepError> {
        crate::template::render(templates, t, vars)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .map_err(|e| {
                StepError::failed(format!(
                    "target `{name}`: {}",
                    crate::template::describe_error(&e)
                ))
            })
    };
    let project = render(&n.project_id)?;
    if project.trim().is_empty() {
        return Err(StepError::unavailable(format!(
            "target `{name}`: the Neon project id is empty (is NEON_PROJECT_ID set?)"
        )));
    }
    Ok(NeonPlace {
        project: project.trim().to_owned(),
        branch: n.branch.as_deref().map(render).transpose()?,
        database: n.database.as_deref().map(render).transpose()?,
        role: n.role.as_deref().map(render).transpose()?,
    })
}

/// The connection string of a Neon target's branch (its database and role), for steps whose
/// `db:` names the target.
pub async fn branch_uri(cx: &StepCx<'_>, name: &str) -> Result<String, StepError> {
    let place = place(cx, name)?;
    let client = client_for(cx)?;
    let b = client
        .find_branch(&place.project, place.branch.as_deref())
        .await?;
    let (db, role) = database_and_role(&client, &place, &b.id, None, None).await?;
    Ok(client
        .connection_uri(&place.project, &b.id, &db, &role, false)
        .await?)
}

/// The target's place, a client, and the branch named (by name or id), else the target's
/// own branch, else the project's default.
async fn open(
    cx: &StepCx<'_>,
    target: &str,
    branch: Option<&str>,
) -> Result<(NeonPlace, Client, Branch), StepError> {
    let place = place(cx, target)?;
    let client = client_for(cx)?;
    let b = client
        .find_branch(&place.project, branch.or(place.branch.as_deref()))
        .await?;
    Ok((place, client, b))
}

pub(crate) fn client() -> Result<Client, StepError> {
    Client::from_env().map_err(StepError::from)
}

/// A client for step `cx`, which shows the operations it waits for at the operator's
/// terminal.
fn client_for(cx: &StepCx<'_>) -> Result<Client, StepError> {
    let progress = cx.interaction.progress(
        &format!("Neon ({})", cx.step_id),
        crate::progress::Unit::None,
    );
    Ok(Client::from_env()?.with_progress(progress))
}

/// A time as sent to Neon: RFC 3339 UTC with microseconds (PostgreSQL's resolution; a
/// relative time resolved from the clock has nanoseconds nobody can restore to).
pub fn wire_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A point in a branch's history: a time or a WAL position.
#[derive(Debug, Clone, PartialEq)]
pub enum Point {
    Time(DateTime<Utc>),
    Lsn(String),
}

impl Point {
    pub fn parse(text: &str, now: DateTime<Utc>) -> Result<Point, String> {
        let t = text.trim();
        if let Some((a, b)) = t.split_once('/') {
            let hex =
                |s: &str| !s.is_empty() && s.len() <= 8 && s.chars().all(|c| c.is_ascii_hexdigit());
            if hex(a) && hex(b) {
                return Ok(Point::Lsn(t.to_uppercase()));
            }
        }
        t.parse::<TimeSpec>()
            .map(|s| Point::Time(s.resolve(now)))
            .map_err(|_| {
                format!(
                    "`{t}` is neither a timestamp (RFC 3339 or `now-24h`) nor an LSN (`0/1DE2850`)"
                )
            })
    }

    pub fn describe(&self) -> String {
        match self {
            Point::Time(t) => rfc3339_precise(*t),
            Point::Lsn(l) => format!("LSN {l}"),
        }
    }

    /// The value Neon gets: RFC 3339 UTC for times, the LSN as written.
    pub fn wire(&self) -> String {
        match self {
            Point::Time(t) => wire_time(*t),
            Point::Lsn(l) => l.clone(),
        }
    }
}

/// A point this close to the old edge of the window is refused: by the time the request
/// reaches Neon it may have left the window.
const EDGE_MINUTES: i64 = 5;

/// The oldest point a restore window of `retention` seconds reaches back to. Neon's answer
/// may be any number: a window longer than the calendar holds everything.
fn oldest_restorable(now: DateTime<Utc>, retention: i64) -> DateTime<Utc> {
    chrono::Duration::try_seconds(retention)
        .and_then(|r| now.checked_sub_signed(r))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Whether `point` lies inside the project's restore window now: `Ok(text)` says how far
/// inside, `Err(text)` why not.
pub fn within_window(
    project: &Project,
    point: &Point,
    now: DateTime<Utc>,
) -> Result<String, String> {
    let Point::Time(t) = point else {
        return Ok("an LSN: Neon checks it against the restore window itself".into());
    };
    let retention = project.history_retention_seconds.unwrap_or(0);
    let window = Duration::from_secs(retention.max(0).unsigned_abs()).to_string();
    if retention <= 0 {
        return Err(format!("project {} keeps no history (history_retention_seconds = 0): point-in-time restore is disabled", project.id));
    }
    if *t > now {
        return Err(format!("{} is in the future", rfc3339_precise(*t)));
    }
    let oldest = oldest_restorable(now, retention);
    let edge = oldest
        .checked_add_signed(chrono::Duration::minutes(EDGE_MINUTES))
        .unwrap_or(oldest);
    if *t < edge {
        if *t >= oldest {
            return Err(format!(
                "{} is within {EDGE_MINUTES} minutes of the oldest restorable point of project {}'s {window} restore window ({}): it would fall out of the window before the run reaches it; choose a later point",
                rfc3339_precise(*t),
                project.id,
                rfc3339(oldest)
            ));
        }
        return Err(format!(
            "{} is outside project {}'s restore window of {window} (the oldest restorable point is {})",
            rfc3339_precise(*t),
            project.id,
            rfc3339(oldest)
        ));
    }
    let spare = *t - oldest;
    Ok(format!(
        "{} is inside the {window} restore window ({} to spare)",
        rfc3339(*t),
        crate::duration::human(spare.to_std().unwrap_or_default())
    ))
}

/// Parses `at` and checks it against the window (fetching the project), before any change.
async fn checked_point(client: &Client, project: &str, at: &str) -> Result<Point, StepError> {
    let point = Point::parse(at, Utc::now()).map_err(StepError::failed)?;
    let p = client.project(project).await?;
    within_window(&p, &point, Utc::now()).map_err(StepError::failed)?;
    Ok(point)
}

/// The name of something a step creates: the one given, else `drillbook-<run>-<step>`;
/// a retry adds `-<attempt>` (the failed attempt's is still there until the run's undo).
fn created_name(cx: &StepCx<'_>, given: Option<&str>) -> String {
    let mut n = given.map_or_else(
        || format!("drillbook-{}-{}", cx.run_id(), cx.step_id),
        str::to_owned,
    );
    if cx.attempt > 1 {
        n.push_str(&format!("-{}", cx.attempt));
    }
    n
}

/// The database and role to connect as on a branch: the step's, else the target's, else
/// `neondb` and that database's owner.
async fn database_and_role(
    client: &Client,
    place: &NeonPlace,
    branch_id: &str,
    database: Option<&str>,
    role: Option<&str>,
) -> Result<(String, String), StepError> {
    let db = database
        .map(str::to_owned)
        .or_else(|| place.database.clone())
        .unwrap_or_else(|| "neondb".into());
    let role = match role.map(str::to_owned).or_else(|| place.role.clone()) {
        Some(r) => r,
        None => client
            .database_owner(&place.project, branch_id, &db)
            .await?
            .ok_or_else(|| {
                StepError::failed(format!(
                    "branch {branch_id} has no database `{db}`; name one with `database:`"
                ))
            })?,
    };
    Ok((db, role))
}

fn insert_branch(out: &mut Outputs, b: &Branch) {
    out.insert("id".into(), b.id.clone().into());
    out.insert("name".into(), b.name.clone().into());
    for (k, v) in [
        ("parent_id", &b.parent_id),
        ("parent_lsn", &b.parent_lsn),
        ("parent_timestamp", &b.parent_timestamp),
        ("current_state", &b.current_state),
    ] {
        if let Some(v) = v {
            out.insert(k.into(), v.clone().into());
        }
    }
}

/// Waits until a branch found by re-reading (its creating call's operations unknown) is
/// ready.
async fn wait_ready(client: &Client, project: &str, id: &str) -> Result<Branch, StepError> {
    let mut pause = std::time::Duration::from_millis(200);
    let began = tokio::time::Instant::now();
    loop {
        let b = client.find_branch(project, Some(id)).await?;
        let settled = b.pending_state.as_deref().is_none_or(str::is_empty);
        if b.current_state.as_deref() == Some("ready") && settled {
            return Ok(b);
        }
        if began.elapsed() > std::time::Duration::from_secs(15 * 60) {
            return Err(StepError::unavailable(format!(
                "branch {id} is still {} after 15 minutes",
                b.current_state.as_deref().unwrap_or("not ready")
            )));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_secs(2));
    }
}

/// The branch to undo, filled in as soon as its id is known.
type Slot = Arc<Mutex<Option<String>>>;

fn slot_get(slot: &Slot) -> Option<String> {
    slot.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

fn slot_set(slot: &Slot, id: &str) {
    *slot
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(id.to_owned());
}

/// Deletes a branch drillbook created: by id when known, and every branch of its unique
/// name (the create may have been interrupted before its response came back, or a lost
/// response may have hidden a second one). When nothing is found yet, looks once more after
/// a moment: an interrupted create may still be reaching Neon.
pub async fn undo_branch(project: &str, name: &str, id: &Slot) -> Result<(), StepError> {
    let client = client()?;
    let mut ids: Vec<String> = slot_get(id).into_iter().collect();
    let named = |c: &Client| {
        let c = c.clone();
        async move {
            Ok::<_, StepError>(
                c.branches(project, Some(name))
                    .await?
                    .into_iter()
                    .filter(|b| b.name == name)
                    .map(|b| b.id)
                    .collect::<Vec<_>>(),
            )
        }
    };
    let mut found = named(&client).await?;
    if found.is_empty() && ids.is_empty() {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        found = named(&client).await?;
    }
    for f in found {
        if !ids.contains(&f) {
            ids.push(f);
        }
    }
    for id in ids {
        client.delete_branch(project, &id).await?;
    }
    Ok(())
}

pub async fn undo_snapshot(project: &str, name: &str, id: &Slot) -> Result<(), StepError> {
    let client = client()?;
    let mut ids: Vec<String> = slot_get(id).into_iter().collect();
    let named = || async {
        Ok::<_, StepError>(
            client
                .snapshots(project)
                .await?
                .into_iter()
                .filter(|s| s.name == name)
                .map(|s| s.id)
                .collect::<Vec<_>>(),
        )
    };
    let mut found = named().await?;
    if found.is_empty() && ids.is_empty() {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        found = named().await?;
    }
    for f in found {
        if !ids.contains(&f) {
            ids.push(f);
        }
    }
    for id in ids {
        delete_snapshot(&client, project, &id).await?;
    }
    Ok(())
}

async fn delete_snapshot(client: &Client, project: &str, id: &str) -> Result<(), StepError> {
    let path = Client::project_path(project, &["snapshots", id])?;
    match client
        .mutate(project, reqwest::Method::DELETE, &path, &[], None)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.status() == Some(404) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn ms_since(t: tokio::time::Instant) -> Value {
    u64::try_from(t.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .into()
}

impl Run for NeonCreateBranch {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let place = place(cx, &self.target)?;
        let client = client_for(cx)?;
        let project = place.project.clone();
        let point = match &self.at {
            Some(at) if !at.trim().is_empty() && at.trim() != "head" => {
                Some(checked_point(&client, &project, at).await?)
            }
            _ => None,
        };
        let parent = client
            .find_branch(&project, self.from.as_deref().or(place.branch.as_deref()))
            .await?;
        let name = created_name(cx, self.name.as_deref());
        if let Some(existing) = client.branch_named(&project, &name).await? {
            return Err(StepError::failed(format!(
                "a branch named `{name}` already exists ({}); give the step a new `name`",
                existing.id
            )));
        }
        let slot: Slot = Arc::default();
        if !self.keep {
            cx.created(Undo::NeonBranch {
                step: cx.step_id.into(),
                what: format!("delete Neon branch {name}"),
                project: project.clone(),
                name: name.clone(),
                id: slot.clone(),
            });
        }
        let mut branch = json!({ "parent_id": parent.id, "name": name });
        match &point {
            Some(Point::Time(t)) => branch["parent_timestamp"] = wire_time(*t).into(),
            Some(Point::Lsn(l)) => branch["parent_lsn"] = l.clone().into(),
            None => {}
        }
        let expires = self
            .expires_in
            .map(|d| d.chrono())
            .or_else(|| (!self.keep).then(|| chrono::Duration::days(1)));
        if let Some(d) = expires {
            branch["expires_at"] = rfc3339(Utc::now() + d).into();
        }
        let body = json!({ "branch": branch, "endpoints": [{ "type": "read_write" }] });
        let clock = tokio::time::Instant::now();
        let (created, uri) = match client.create_branch(&project, &body).await {
            Ok(r) => {
                slot_set(&slot, &r.branch.id);
                let uri = r.connection_uris.first().map(|c| c.connection_uri.clone());
                (r.branch, uri)
            }
            // the branch may exist although the answer says otherwise: look before failing
            Err(e)
                if matches!(e, NeonError::Uncertain { .. })
                    || e.status().is_some_and(|s| s >= 500) =>
            {
                match client.branch_named(&project, &name).await? {
                    Some(b) => {
                        slot_set(&slot, &b.id);
                        (wait_ready(&client, &project, &b.id).await?, None)
                    }
                    None => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        // the final parent LSN is known once the branch's operations finished
        let created = client
            .find_branch(&project, Some(&created.id))
            .await
            .unwrap_or(created);
        let endpoints = client.branch_endpoints(&project, &created.id).await?;
        let endpoint = endpoints.iter().find(|e| e.kind == "read_write");
        // the create response's URI names the parent's only database and role; a named
        // database or role needs its own
        let named = self.database.is_some()
            || self.role.is_some()
            || place.database.is_some()
            || place.role.is_some();
        let uri = match uri {
            Some(u) if !u.is_empty() && !named => u,
            _ => {
                let (db, role) = database_and_role(
                    &client,
                    &place,
                    &created.id,
                    self.database.as_deref(),
                    self.role.as_deref(),
                )
                .await?;
                client
                    .connection_uri(&project, &created.id, &db, &role, false)
                    .await?
            }
        };
        let mut out = Outputs::new();
        insert_branch(&mut out, &created);
        out.insert("project_id".into(), project.into());
        if let Some(e) = endpoint {
            out.insert("endpoint_id".into(), e.id.clone().into());
            out.insert("endpoint_host".into(), e.host.clone().into());
        }
        out.insert("connection_uri".into(), uri.into());
        out.insert(
            "recovery_point".into(),
            match &point {
                Some(p) => p.wire(),
                None => created.parent_lsn.clone().unwrap_or_else(|| "head".into()),
            }
            .into(),
        );
        if let Some(Point::Time(t)) = &point {
            out.insert("target_time".into(), wire_time(*t).into());
        }
        out.insert("created_in_ms".into(), ms_since(clock));
        Ok(out)
    }
}

impl Run for NeonRestoreBranch {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let place = place(cx, &self.target)?;
        let client = client_for(cx)?;
        let project = place.project.clone();
        let point = match &self.at {
            Some(at) => Some(checked_point(&client, &project, at).await?),
            None => None,
        };
        let target = client
            .find_branch(&project, self.branch.as_deref().or(place.branch.as_deref()))
            .await?;
        let source = match &self.from {
            Some(f) => client.find_branch(&project, Some(f)).await?,
            None => target.clone(),
        };
        let preserve = self.preserve_under_name.clone().unwrap_or_else(|| {
            format!(
                "{}_before_{}",
                target.name,
                Utc::now().format("%Y%m%dT%H%M%SZ")
            )
        });
        let mut body = json!({
            "source_branch_id": source.id,
            "preserve_under_name": preserve,
        });
        match &point {
            Some(Point::Time(t)) => body["source_timestamp"] = wire_time(*t).into(),
            Some(Point::Lsn(l)) => body["source_lsn"] = l.clone().into(),
            None => {}
        }
        let path = Client::project_path(&project, &["branches", &target.id, "restore"])?;
        let clock = tokio::time::Instant::now();
        // restored after all when the preserved branch exists: never restore twice
        let happened = || async { Ok(client.branch_named(&project, &preserve).await?.is_some()) };
        if client
            .mutate_checked(
                &project,
                reqwest::Method::POST,
                &path,
                &[],
                Some(&body),
                happened,
            )
            .await?
            .is_none()
        {
            wait_ready(&client, &project, &target.id).await?;
        }
        let restored = client.find_branch(&project, Some(&target.id)).await?;
        let mut out = Outputs::new();
        insert_branch(&mut out, &restored);
        if let Some(b) = client.branch_named(&project, &preserve).await? {
            out.insert("preserved_id".into(), b.id.into());
        }
        out.insert("preserved_name".into(), preserve.into());
        out.insert("source_id".into(), source.id.into());
        out.insert(
            "restored_to".into(),
            point.map_or_else(|| "head".into(), |p| p.wire()).into(),
        );
        if let Some(t) = restored.last_reset_at {
            out.insert("last_reset_at".into(), t.into());
        }
        out.insert("restored_in_ms".into(), ms_since(clock));
        Ok(out)
    }
}

impl Run for NeonDeleteBranch {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let place = place(cx, &self.target)?;
        let client = client_for(cx)?;
        let b = match client.find_branch(&place.project, Some(&self.branch)).await {
            Ok(b) => b,
            Err(e) if e.status() == Some(404) => {
                let mut out = Outputs::new();
                out.insert("deleted".into(), false.into());
                out.insert("note".into(), "already gone".into());
                return Ok(out);
            }
            Err(e) => return Err(e.into()),
        };
        if b.default
            || place
                .branch
                .as_deref()
                .is_some_and(|t| t == b.name || t == b.id)
        {
            return Err(StepError::failed(format!(
                "refusing to delete branch {} ({}): it is {}",
                b.name,
                b.id,
                if b.default {
                    "the project's default branch"
                } else {
                    "the target's own branch"
                }
            )));
        }
        client.delete_branch(&place.project, &b.id).await?;
        let mut out = Outputs::new();
        out.insert("deleted".into(), true.into());
        out.insert("id".into(), b.id.into());
        out.insert("name".into(), b.name.into());
        Ok(out)
    }
}

impl Run for NeonSetDefaultBranch {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let place = place(cx, &self.target)?;
        let client = client_for(cx)?;
        let b = client
            .find_branch(&place.project, Some(&self.branch))
            .await?;
        let previous = client.find_branch(&place.project, None).await?;
        let path = Client::project_path(&place.project, &["branches", &b.id, "set_as_default"])?;
        client
            .mutate(&place.project, reqwest::Method::POST, &path, &[], None)
            .await?;
        let mut out = Outputs::new();
        insert_branch(&mut out, &b);
        out.insert("previous_default_id".into(), previous.id.into());
        out.insert("previous_default_name".into(), previous.name.into());
        Ok(out)
    }
}

impl Run for NeonConnectionUri {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let (place, client, b) = open(cx, &self.target, self.branch.as_deref()).await?;
        let (db, role) = database_and_role(
            &client,
            &place,
            &b.id,
            self.database.as_deref(),
            self.role.as_deref(),
        )
        .await?;
        let uri = client
            .connection_uri(&place.project, &b.id, &db, &role, self.pooled)
            .await?;
        let mut out = Outputs::new();
        out.insert("connection_uri".into(), uri.into());
        out.insert("branch_id".into(), b.id.into());
        out.insert("database".into(), db.into());
        out.insert("role".into(), role.into());
        Ok(out)
    }
}

impl Run for NeonCreateSnapshot {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let place = place(cx, &self.target)?;
        let client = client_for(cx)?;
        let project = place.project.clone();
        let point = match &self.at {
            Some(at) => Some(checked_point(&client, &project, at).await?),
            None => None,
        };
        let b = client
            .find_branch(&project, self.branch.as_deref().or(place.branch.as_deref()))
            .await?;
        let name = created_name(cx, self.name.as_deref());
        let snapshots = client.snapshots(&project).await?;
        if let Some(existing) = snapshots.iter().find(|s| s.name == name) {
            return Err(StepError::failed(format!(
                "a snapshot named `{name}` already exists ({}); give the step a new `name`",
                existing.id
            )));
        }
        let slot: Slot = Arc::default();
        if !self.keep {
            cx.created(Undo::NeonSnapshot {
                step: cx.step_id.into(),
                what: format!("delete Neon snapshot {name}"),
                project: project.clone(),
                name: name.clone(),
                id: slot.clone(),
            });
        }
        let mut q = vec![("name", name.clone())];
        match &point {
            Some(Point::Time(t)) => q.push(("timestamp", wire_time(*t))),
            Some(Point::Lsn(l)) => q.push(("lsn", l.clone())),
            None => {}
        }
        // a safety net: Neon removes a snapshot drillbook could not delete
        let expires = self
            .expires_in
            .map(Duration::chrono)
            .or_else(|| (!self.keep).then(|| chrono::Duration::days(1)));
        if let Some(d) = expires {
            q.push(("expires_at", rfc3339(Utc::now() + d)));
        }
        let path = Client::project_path(&project, &["branches", &b.id, "snapshot"])?;
        let clock = tokio::time::Instant::now();
        let named = || async {
            Ok(client
                .snapshots(&project)
                .await?
                .into_iter()
                .find(|s| s.name == name))
        };
        let snap = match client
            .mutate_checked(&project, reqwest::Method::POST, &path, &q, None, || async {
                Ok(named().await?.is_some())
            })
            .await?
        {
            Some(v) => crate::neon::decode::<crate::neon::Snapshot>(&v, "snapshot", &path)?,
            None => named().await?.unwrap_or_default(),
        };
        if snap.id.is_empty() {
            return Err(StepError::unavailable(format!(
                "Neon API {path}: the response names no snapshot id"
            )));
        }
        slot_set(&slot, &snap.id);
        let mut out = Outputs::new();
        out.insert("id".into(), snap.id.into());
        out.insert("name".into(), snap.name.into());
        out.insert("branch_id".into(), b.id.into());
        if let Some(t) = snap.timestamp {
            out.insert("timestamp".into(), t.into());
        }
        if let Some(l) = snap.lsn {
            out.insert("lsn".into(), l.into());
        }
        out.insert("created_in_ms".into(), ms_since(clock));
        Ok(out)
    }
}

impl Run for NeonRestoreSnapshot {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let (place, client, into) = open(cx, &self.target, self.into.as_deref()).await?;
        let project = place.project.clone();
        let snapshots = client.snapshots(&project).await?;
        let snap = if self.snapshot == "latest" {
            snapshots
                .iter()
                .filter(|s| s.source_branch_id.as_deref().is_none_or(|b| b == into.id))
                .max_by(|a, b| a.created_at.cmp(&b.created_at))
        } else {
            snapshots
                .iter()
                .find(|s| s.id == self.snapshot || s.name == self.snapshot)
        }
        .cloned()
        .ok_or_else(|| {
            StepError::failed(format!(
                "no snapshot `{}` in project {project} ({} snapshots exist)",
                self.snapshot,
                snapshots.len()
            ))
        })?;
        let name = created_name(cx, self.name.as_deref());
        if let Some(existing) = client.branch_named(&project, &name).await? {
            return Err(StepError::failed(format!(
                "a branch named `{name}` already exists ({}); give the step a new `name`",
                existing.id
            )));
        }
        let slot: Slot = Arc::default();
        if !self.finalize && !self.keep {
            cx.created(Undo::NeonBranch {
                step: cx.step_id.into(),
                what: format!("delete Neon branch {name}"),
                project: project.clone(),
                name: name.clone(),
                id: slot.clone(),
            });
        }
        let body = json!({
            "name": name,
            "target_branch_id": into.id,
            "finalize_restore": self.finalize,
        });
        let path = Client::project_path(&project, &["snapshots", &snap.id, "restore"])?;
        let clock = tokio::time::Instant::now();
        // the new branch is named after the step (or the target's name once finalized)
        let expect_name = if self.finalize {
            into.name.clone()
        } else {
            name.clone()
        };
        let restored_branch = || async {
            Ok::<_, NeonError>(
                client
                    .branches(&project, None)
                    .await?
                    .into_iter()
                    .find(|b| {
                        b.restored_from.as_deref() == Some(snap.id.as_str())
                            && (b.name == name || b.name == expect_name)
                    }),
            )
        };
        let branch: Branch = match client
            .mutate_checked(
                &project,
                reqwest::Method::POST,
                &path,
                &[],
                Some(&body),
                || async { Ok(restored_branch().await?.is_some()) },
            )
            .await?
        {
            Some(v) => crate::neon::decode(&v, "branch", &path)?,
            None => restored_branch().await?.unwrap_or_default(),
        };
        if branch.id.is_empty() {
            return Err(StepError::unavailable(format!(
                "Neon API {path}: the response names no branch id"
            )));
        }
        slot_set(&slot, &branch.id);
        let branch = wait_ready(&client, &project, &branch.id).await?;
        if !self.finalize && !self.keep {
            // a safety net: Neon removes the branch if drillbook cannot
            let expires = json!({ "branch": { "expires_at": rfc3339(Utc::now() + chrono::Duration::days(1)) } });
            client
                .mutate(
                    &project,
                    reqwest::Method::PATCH,
                    &Client::project_path(&project, &["branches", &branch.id])?,
                    &[],
                    Some(&expires),
                )
                .await?;
        }
        let mut out = Outputs::new();
        insert_branch(&mut out, &branch);
        out.insert("snapshot_id".into(), snap.id.clone().into());
        if let Some(t) = snap.timestamp.or(snap.created_at) {
            out.insert("snapshot_time".into(), t.into());
        }
        if let Some(s) = &branch.restore_status {
            out.insert("restore_status".into(), s.clone().into());
        }
        let mut endpoints = client.branch_endpoints(&project, &branch.id).await?;
        if endpoints.is_empty() && !self.finalize {
            // a restored branch to inspect needs a compute to connect to
            let body = json!({ "endpoint": { "branch_id": branch.id, "type": "read_write" } });
            let has_one = || async {
                Ok(!client
                    .branch_endpoints(&project, &branch.id)
                    .await?
                    .is_empty())
            };
            client
                .mutate_checked(
                    &project,
                    reqwest::Method::POST,
                    &Client::project_path(&project, &["endpoints"])?,
                    &[],
                    Some(&body),
                    has_one,
                )
                .await?;
            endpoints = client.branch_endpoints(&project, &branch.id).await?;
            out.insert("endpoint_created".into(), true.into());
        }
        if !endpoints.is_empty() {
            let (db, role) = database_and_role(
                &client,
                &place,
                &branch.id,
                self.database.as_deref(),
                self.role.as_deref(),
            )
            .await?;
            let uri = client
                .connection_uri(&project, &branch.id, &db, &role, false)
                .await?;
            out.insert("connection_uri".into(), uri.into());
        }
        out.insert("restored_in_ms".into(), ms_since(clock));
        Ok(out)
    }
}

impl Run for NeonFinalizeRestore {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let place = place(cx, &self.target)?;
        let client = client_for(cx)?;
        let project = place.project.clone();
        let b = client.find_branch(&project, Some(&self.branch)).await?;
        if b.restore_status.as_deref() != Some("restored") {
            return Err(StepError::failed(format!(
                "branch {} ({}) is not a snapshot restore waiting to be finalized (restore_status: {})",
                b.name,
                b.id,
                b.restore_status.as_deref().unwrap_or("none")
            )));
        }
        // once finalized the branch serves production: this run must no longer delete it, and
        // its safety-net expiry must go
        cx.undo.release(|u| match u {
            Undo::NeonBranch { name, id, .. } => {
                *name != b.name && slot_get(id).as_deref() != Some(b.id.as_str())
            }
            _ => true,
        });
        if b.expires_at.is_some() {
            let clear = json!({ "branch": { "expires_at": null } });
            client
                .mutate(
                    &project,
                    reqwest::Method::PATCH,
                    &Client::project_path(&project, &["branches", &b.id])?,
                    &[],
                    Some(&clear),
                )
                .await?;
        }
        let body = self
            .name
            .as_ref()
            .map_or_else(crate::neon::empty, |n| json!({ "name": n }));
        let path = Client::project_path(&project, &["branches", &b.id, "finalize_restore"])?;
        let happened = || async {
            let now = client.find_branch(&project, Some(&b.id)).await?;
            Ok(now.restore_status.as_deref() != Some("restored"))
        };
        client
            .mutate_checked(
                &project,
                reqwest::Method::POST,
                &path,
                &[],
                Some(&body),
                happened,
            )
            .await?;
        let done = wait_ready(&client, &project, &b.id).await?;
        let mut out = Outputs::new();
        insert_branch(&mut out, &done);
        if let Some(s) = &done.restore_status {
            out.insert("restore_status".into(), s.clone().into());
        }
        if let Some(old) = &done.restored_as {
            out.insert("replaced_id".into(), old.clone().into());
        }
        Ok(out)
    }
}

impl Run for NeonDeleteSnapshot {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let place = place(cx, &self.target)?;
        let client = client_for(cx)?;
        let found = client
            .snapshots(&place.project)
            .await?
            .into_iter()
            .find(|s| s.id == self.snapshot || s.name == self.snapshot);
        let mut out = Outputs::new();
        match found {
            Some(s) => {
                delete_snapshot(&client, &place.project, &s.id).await?;
                out.insert("deleted".into(), true.into());
                out.insert("id".into(), s.id.into());
            }
            None => {
                out.insert("deleted".into(), false.into());
                out.insert("note".into(), "already gone".into());
            }
        }
        Ok(out)
    }
}

impl Run for NeonSchemaDiff {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let (place, client, branch) = open(cx, &self.target, self.branch.as_deref()).await?;
        let project = place.project.clone();
        let base = client
            .find_branch(&project, self.base.as_deref().or(place.branch.as_deref()))
            .await?;
        let db = self
            .database
            .clone()
            .or_else(|| place.database.clone())
            .unwrap_or_else(|| "neondb".into());
        let mut q = vec![("base_branch_id", base.id.clone()), ("db_name", db)];
        if let Some(at) = &self.at {
            match checked_point(&client, &project, at).await? {
                Point::Time(t) => q.push(("timestamp", wire_time(t))),
                Point::Lsn(l) => q.push(("lsn", l)),
            }
        }
        let path = Client::project_path(&project, &["branches", &branch.id, "compare_schema"])?;
        let v = client.get(&path, &q).await?;
        let diff = v
            .get("diff")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let changed: Vec<&str> = diff
            .lines()
            .filter(|l| {
                (l.starts_with('+') || l.starts_with('-'))
                    && !l.starts_with("+++")
                    && !l.starts_with("---")
            })
            .collect();
        let mut out = Outputs::new();
        out.insert("changed_lines".into(), changed.len().into());
        out.insert("identical".into(), changed.is_empty().into());
        out.insert("diff".into(), diff.clone().into());
        if !changed.is_empty() && !self.allow_changes {
            let shown: Vec<&str> = changed.iter().take(10).copied().collect();
            return Err(StepError::failed(format!(
                "the schema of {} differs from {} in {} lines:\n{}",
                branch.name,
                base.name,
                changed.len(),
                shown.join("\n")
            ))
            .with_outputs(out));
        }
        Ok(out)
    }
}

impl Run for NeonRetention {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let place = place(cx, &self.target)?;
        let p = client_for(cx)?.project(&place.project).await?;
        let secs = p
            .history_retention_seconds
            .unwrap_or(0)
            .max(0)
            .unsigned_abs();
        let window = std::time::Duration::from_secs(secs);
        let mut out = Outputs::new();
        out.insert("restore_window_seconds".into(), secs.into());
        out.insert("restore_window".into(), Duration(window).to_string().into());
        out.insert(
            "oldest_restorable".into(),
            rfc3339(oldest_restorable(
                Utc::now(),
                i64::try_from(secs).unwrap_or(i64::MAX),
            ))
            .into(),
        );
        if window < self.min.0 {
            return Err(StepError::failed(format!(
                "the restore window of project {} is {} (history_retention_seconds = {secs}), less than the required {}: raise it in the Neon Console (Settings → Instant restore) or with PATCH /projects/{{id}}",
                p.id,
                Duration(window),
                self.min
            ))
            .with_outputs(out));
        }
        Ok(out)
    }
}

/// The hour of a daily cron schedule like `0 0 * * *`.
fn cron_hour(schedule: &str) -> Option<u32> {
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    (fields.len() == 5)
        .then(|| fields[1].parse().ok())
        .flatten()
}

impl NeonBackupSchedule {
    /// The schedule entries the policy asks for: (frequency, retention seconds).
    fn expected(&self, cx: &StepCx<'_>) -> (Vec<(&'static str, i64)>, Option<u32>) {
        let policy = cx.runbook.backup_policy.as_ref();
        let r = policy.map(|p| p.retention.clone()).unwrap_or_default();
        let mut want = Vec::new();
        if let Some(d) = self.daily.or(r.daily).filter(|d| *d > 0) {
            want.push(("daily", i64::from(d) * 86_400));
        }
        if let Some(w) = self.weekly.or(r.weekly).filter(|w| *w > 0) {
            want.push(("weekly", i64::from(w) * 7 * 86_400));
        }
        if let Some(m) = self.monthly.or(r.monthly).filter(|m| *m > 0) {
            want.push(("monthly", i64::from(m) * 30 * 86_400));
        }
        let hour = self
            .hour
            .or_else(|| policy.and_then(|p| cron_hour(&p.schedule)));
        (want, hour)
    }
}

/// What is wrong with `have` against the wanted entries (empty when it matches).
fn schedule_problems(
    have: &[ScheduleItem],
    want: &[(&str, i64)],
    hour: Option<u32>,
) -> Vec<String> {
    let human = |s: i64| Duration::from_secs(s.max(0).unsigned_abs()).to_string();
    let mut problems = Vec::new();
    for (freq, keep) in want {
        match have.iter().find(|i| i.frequency == *freq) {
            None => problems.push(format!(
                "no {freq} snapshot in the schedule (the policy keeps {freq} copies for {})",
                human(*keep)
            )),
            Some(i) => {
                match i.retention_seconds {
                    None => {}
                    Some(r) if r >= *keep => {}
                    Some(r) => problems.push(format!(
                        "{freq} snapshots are kept {}, the policy says {}",
                        human(r),
                        human(*keep)
                    )),
                }
                if *freq == "daily" {
                    if let (Some(want_h), Some(h)) = (hour, i.hour) {
                        if i64::from(want_h) != h {
                            problems.push(format!("the daily snapshot is taken at {h:02}:00 UTC, the policy says {want_h:02}:00 UTC"));
                        }
                    }
                }
            }
        }
    }
    problems
}

impl Run for NeonBackupSchedule {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let (place, client, b) = open(cx, &self.target, self.branch.as_deref()).await?;
        let have = client.backup_schedule(&place.project, &b.id).await?;
        let (want, hour) = self.expected(cx);
        if want.is_empty() {
            return Err(StepError::failed(
                "no retention to check: set backup_policy.retention or the step's daily/weekly/monthly",
            ));
        }
        let mut out = Outputs::new();
        out.insert("branch_id".into(), b.id.clone().into());
        out.insert(
            "schedule".into(),
            serde_json::to_value(&have).unwrap_or(Value::Null),
        );
        let problems = schedule_problems(&have, &want, hour);
        if !problems.is_empty() {
            return Err(StepError::failed(format!(
                "branch {}'s snapshot schedule does not match the backup policy: {}",
                b.name,
                problems.join("; ")
            ))
            .with_outputs(out));
        }
        Ok(out)
    }
}

impl Run for NeonSnapshotAge {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let (place, client, b) = open(cx, &self.target, self.branch.as_deref()).await?;
        let newest = client
            .snapshots(&place.project)
            .await?
            .into_iter()
            .filter(|s| s.source_branch_id.as_deref().is_none_or(|id| id == b.id))
            .filter_map(|s| {
                let at = s.created_at.as_deref()?.parse::<DateTime<Utc>>().ok()?;
                Some((at, s))
            })
            .max_by_key(|(at, _)| *at);
        let mut out = Outputs::new();
        let Some((at, snap)) = newest else {
            return Err(StepError::failed(format!(
                "branch {} has no snapshots: no backup schedule is running (set one in the Neon Console: Backup & restore)",
                b.name
            )));
        };
        let age = (Utc::now() - at).to_std().unwrap_or_default();
        out.insert("snapshot_id".into(), snap.id.into());
        out.insert("snapshot_at".into(), rfc3339(at).into());
        out.insert("age_seconds".into(), age.as_secs().into());
        out.insert("manual".into(), snap.manual.unwrap_or(false).into());
        if age > self.max.0 {
            return Err(StepError::failed(format!(
                "the newest snapshot of {} was taken {} ago ({}), more than {}",
                b.name,
                crate::duration::human(age),
                rfc3339(at),
                self.max
            ))
            .with_outputs(out));
        }
        Ok(out)
    }
}

impl Run for NeonProject {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let place = place(cx, &self.target)?;
        let client = client_for(cx)?;
        let p = client.project(&place.project).await?;
        let branches = client.branches(&place.project, None).await?;
        let running = client
            .operations(&place.project)
            .await?
            .iter()
            .filter(|o| !o.status.is_done() && !o.status.is_failure())
            .count();
        let mut out = Outputs::new();
        out.insert("id".into(), p.id.into());
        out.insert("name".into(), p.name.into());
        out.insert("region_id".into(), p.region_id.into());
        out.insert("platform_id".into(), p.platform_id.into());
        if let Some(v) = p.pg_version {
            out.insert("pg_version".into(), v.into());
        }
        if let Some(r) = p.history_retention_seconds {
            out.insert("restore_window_seconds".into(), r.into());
        }
        if let Some(l) = p.owner.as_ref().and_then(|o| o.branches_limit) {
            out.insert("branches_limit".into(), l.into());
        }
        out.insert("branches".into(), branches.len().into());
        if let Some(d) = branches.iter().find(|b| b.default) {
            out.insert("default_branch".into(), d.name.clone().into());
        }
        out.insert("running_operations".into(), running.into());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(retention: i64) -> Project {
        Project {
            id: "p".into(),
            history_retention_seconds: Some(retention),
            ..Project::default()
        }
    }

    #[test]
    fn points_parse_as_times_or_lsns() {
        let now = Utc::now();
        assert_eq!(
            Point::parse("0/1de2850", now),
            Ok(Point::Lsn("0/1DE2850".into()))
        );
        // relative times resolve to whole seconds
        assert_eq!(
            Point::parse("now-1h", now),
            Ok(Point::Time(chrono::SubsecRound::trunc_subsecs(
                now - chrono::Duration::hours(1),
                0
            )))
        );
        assert!(Point::parse("yesterday", now).is_err());
    }

    #[test]
    fn the_restore_window_bounds_times() {
        let now = Utc::now();
        let p = project(86_400);
        let inside = Point::Time(now - chrono::Duration::hours(23));
        assert!(within_window(&p, &inside, now)
            .expect("inside")
            .contains("inside the 24h restore window (1h00m to spare)"));
        let old = Point::Time(now - chrono::Duration::hours(25));
        assert!(within_window(&p, &old, now)
            .expect_err("old")
            .contains("outside project p's restore window of 24h"));
        assert!(within_window(&p, &Point::Time(now + chrono::Duration::minutes(1)), now).is_err());
        assert!(within_window(&project(0), &inside, now)
            .expect_err("off")
            .contains("disabled"));
        // a window longer than the calendar (whatever Neon answers) holds every past time
        for huge in [i64::MAX, i64::MAX / 1000, 400_000 * 365 * 86_400] {
            assert!(
                within_window(&project(huge), &inside, now).is_ok(),
                "{huge}"
            );
            assert_eq!(oldest_restorable(now, huge), DateTime::<Utc>::MIN_UTC);
        }
    }

    #[test]
    fn schedules_are_compared_with_the_policy() {
        let item = |f: &str, hour, days: i64| ScheduleItem {
            frequency: f.into(),
            hour,
            retention_seconds: Some(days * 86_400),
            ..ScheduleItem::default()
        };
        let want = [("daily", 7 * 86_400), ("weekly", 28 * 86_400)];
        let good = [item("daily", Some(0), 7), item("weekly", Some(0), 28)];
        assert!(schedule_problems(&good, &want, Some(0)).is_empty());
        let bad = [item("daily", Some(3), 3)];
        assert_eq!(
            schedule_problems(&bad, &want, Some(0)),
            [
                "daily snapshots are kept 3d, the policy says 7d",
                "the daily snapshot is taken at 03:00 UTC, the policy says 00:00 UTC",
                "no weekly snapshot in the schedule (the policy keeps weekly copies for 28d)"
            ]
        );
        assert_eq!(cron_hour("0 0 * * *"), Some(0));
        assert_eq!(cron_hour("*/5 * * * *"), None);
    }
}
