//! `saga-pg`: an operator's view of a `saga-postgres` store.
//!
//! ```text
//! saga-pg [--url URL] list [--state STATE]
//! saga-pg [--url URL] show ID
//! saga-pg [--url URL] abandon ID --reason TEXT
//! saga-pg [--url URL] reopen ID
//! saga-pg [--url URL] release-quarantine ID
//! ```
//!
//! The URL is a PostgreSQL connection URL (`postgres://user@host/db`, or
//! `postgres://user@/db?host=/run/postgresql` for a Unix socket), from
//! `--url` or else `DATABASE_URL`. The tool never creates the store's
//! tables. It exits with 0 when the command did what it says, 1 when it
//! failed (no database, no such saga, a change refused), and 2 when the
//! command line is wrong.

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a std binary: std paths read as what they are"
)]

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use saga_core::journal::{Event, Outcome, Record, SagaId, SagaState};
use saga_postgres::{PgStore, SagaSummary, StoreError, StoreErrorKind};
use sqlx::postgres::PgPoolOptions;

const USAGE: &str = "\
usage: saga-pg [--url URL] COMMAND

commands:
  list [--state STATE]          the sagas, one a line (STATE: forward, unwinding,
                                committed, compensated, stuck or abandoned)
  show ID                       one saga's summary and its records
  abandon ID --reason TEXT      give a saga up (nothing is compensated)
  reopen ID                     have a stuck saga compensated again
  release-quarantine ID         let a quarantined saga be claimed again

options:
  --url URL    the PostgreSQL URL (default: $DATABASE_URL)
  -h, --help   this help

exit status: 0 done, 1 failed, 2 wrong usage";

const SHORT_USAGE: &str = "usage: saga-pg [--url URL] COMMAND (saga-pg --help lists the commands)";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    List(Option<SagaState>),
    Show(SagaId),
    Abandon(SagaId, String),
    Reopen(SagaId),
    ReleaseQuarantine(SagaId),
}

/// A parsed command line.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Help,
    Run {
        url: Option<String>,
        command: Command,
    },
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (url, command) = match parse(&args) {
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Run { url, command }) => (url, command),
        Err(message) => {
            eprintln!("saga-pg: {message}\n{SHORT_USAGE}");
            return ExitCode::from(2);
        }
    };
    let Some(url) = url.or_else(|| std::env::var("DATABASE_URL").ok()) else {
        eprintln!("saga-pg: no database: pass --url URL or set DATABASE_URL\n{SHORT_USAGE}");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("saga-pg: cannot start a runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&url, command)) {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("saga-pg: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Parses the arguments (without the program's name).
fn parse(args: &[String]) -> Result<Parsed, String> {
    let mut url = None;
    let mut state = None;
    let mut reason = None;
    let mut words = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next().cloned())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--url" => url = Some(value("--url")?),
            "--state" => state = Some(parse_state(&value("--state")?)?),
            "--reason" => reason = Some(value("--reason")?),
            "--" => {
                words.extend(args.by_ref().cloned());
            }
            option if option.starts_with('-') && option.len() > 1 => {
                return Err(format!("unknown option {option}"));
            }
            _ => words.push(arg.clone()),
        }
    }
    let Some((name, rest)) = words.split_first() else {
        return Err(String::from("no command"));
    };
    let id = |command: &str| match rest {
        [id] => parse_id(id),
        [] => Err(format!("{command} needs a saga id")),
        [_, extra, ..] => Err(format!("{command}: unexpected argument {extra:?}")),
    };
    let refuse = |option: &str, given: bool| match given {
        true => Err(format!("{option} is not an option of {name}")),
        false => Ok(()),
    };
    if name != "list" {
        refuse("--state", state.is_some())?;
    }
    if name != "abandon" {
        refuse("--reason", reason.is_some())?;
    }
    let command = match name.as_str() {
        "list" => match rest {
            [] => Command::List(state),
            [extra, ..] => return Err(format!("list: unexpected argument {extra:?}")),
        },
        "show" => Command::Show(id("show")?),
        "abandon" => {
            let id = id("abandon")?;
            match reason {
                Some(reason) if !reason.trim().is_empty() => Command::Abandon(id, reason),
                _ => return Err(String::from("abandon needs --reason TEXT")),
            }
        }
        "reopen" => Command::Reopen(id("reopen")?),
        "release-quarantine" => Command::ReleaseQuarantine(id("release-quarantine")?),
        "help" => return Ok(Parsed::Help),
        other => return Err(format!("unknown command {other:?}")),
    };
    Ok(Parsed::Run { url, command })
}

fn parse_state(name: &str) -> Result<SagaState, String> {
    Ok(match name {
        "forward" => SagaState::Forward,
        "unwinding" => SagaState::Unwinding,
        "committed" => SagaState::Finished(Outcome::Committed),
        "compensated" => SagaState::Finished(Outcome::Compensated),
        "stuck" => SagaState::Finished(Outcome::Stuck),
        "abandoned" => SagaState::Finished(Outcome::Abandoned),
        other => {
            return Err(format!(
                "unknown state {other:?} (forward, unwinding, committed, compensated, \
                 stuck or abandoned)"
            ));
        }
    })
}

/// A saga id: 32 hex digits, hyphens allowed (as PostgreSQL shows a
/// `uuid`).
fn parse_id(text: &str) -> Result<SagaId, String> {
    let digits: String = text.chars().filter(|c| *c != '-').collect();
    match digits.len() == 32 && digits.chars().all(|c| c.is_ascii_hexdigit()) {
        true => u128::from_str_radix(&digits, 16)
            .map(SagaId)
            .map_err(|error| format!("{text:?} is not a saga id: {error}")),
        false => Err(format!(
            "{text:?} is not a saga id (32 hex digits, as `list` shows them)"
        )),
    }
}

/// Runs `command` on the store at `url`: what to print.
async fn run(url: &str, command: Command) -> Result<String, String> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&with_host(url))
        .await
        .map_err(|error| format!("cannot connect to {}: {error}", redact(url)))?;
    let store = PgStore::new(pool).map_err(|error| error.to_string())?;
    let output = match command {
        Command::List(state) => table(&store.list(state).await.map_err(explain)?),
        Command::Show(id) => {
            let Some(summary) = store.summary(id).await.map_err(explain)? else {
                return Err(format!("saga {id} is not in the store"));
            };
            let mut output = details(&summary);
            match store.records(id).await {
                Ok(records) if records.is_empty() => output.push_str("journal:    no record\n"),
                Ok(records) => {
                    output.push_str("journal:\n");
                    for record in &records {
                        let _ = writeln!(output, "  {}", record_line(record));
                    }
                }
                Err(error) => {
                    print!("{output}");
                    return Err(explain(error));
                }
            }
            output
        }
        Command::Abandon(id, reason) => {
            store.abandon(id, &reason).await.map_err(explain)?;
            format!("saga {id} abandoned\n")
        }
        Command::Reopen(id) => {
            store.reopen(id).await.map_err(explain)?;
            format!("saga {id} reopened: the next worker to claim it compensates it\n")
        }
        Command::ReleaseQuarantine(id) => {
            store.release_quarantine(id).await.map_err(explain)?;
            format!("saga {id} released from quarantine\n")
        }
    };
    Ok(output)
}

/// A store error as the operator reads it: a database without the
/// store's tables says so.
fn explain(error: StoreError) -> String {
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        if let Some(sqlx::Error::Database(database)) = cause.downcast_ref::<sqlx::Error>() {
            if database.code().as_deref() == Some("42P01") {
                return format!(
                    "{error}\n(this database has no saga store: its tables, in the schema \
                     `saga`, are made by PgStore::migrate)"
                );
            }
        }
        source = cause.source();
    }
    match error.kind() {
        StoreErrorKind::Finished(_) | StoreErrorKind::UnknownSaga | StoreErrorKind::Replay => {
            error.message().to_owned()
        }
        _ => error.to_string(),
    }
}

/// `url` with `localhost` for an empty host (`postgres:///app?host=/run/postgresql`,
/// as libpq takes it: `sqlx` wants a host, and a `host` parameter naming a
/// socket's directory wins over it).
fn with_host(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (credentials, host) = match authority.rsplit_once('@') {
        Some((credentials, host)) => (Some(credentials), host),
        None => (None, authority),
    };
    match (host.is_empty(), credentials) {
        (false, _) => url.to_owned(),
        (true, Some(credentials)) => format!("{scheme}://{credentials}@localhost{tail}"),
        (true, None) => format!("{scheme}://localhost{tail}"),
    }
}

/// `url` without its password.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

const HEADER: [&str; 10] = [
    "ID",
    "DEFINITION",
    "STATE",
    "OWNER",
    "EPOCH",
    "LEASE",
    "RECOVERIES",
    "AGE",
    "LAST ERROR",
    "QUARANTINE",
];

/// The sagas as a table, a header and one line each, columns aligned.
fn table(sagas: &[SagaSummary]) -> String {
    let rows: Vec<[String; 10]> = sagas
        .iter()
        .map(|saga| {
            [
                saga.id.to_string(),
                definition(saga),
                state_name(saga.state).to_owned(),
                or_dash(saga.owner.as_deref()),
                saga.epoch.to_string(),
                saga.lease_left.map_or_else(|| "-".into(), duration),
                saga.recoveries.to_string(),
                duration(saga.age),
                short(saga.last_error.as_deref()),
                short(saga.quarantine.as_deref()),
            ]
        })
        .collect();
    let mut widths = HEADER.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut output = String::new();
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
            match index + 1 == cells.len() {
                true => text.push_str(cell),
                false => {
                    let _ = write!(text, "{cell:<width$}  ");
                }
            }
        }
        output.push_str(text.trim_end());
        output.push('\n');
    };
    line(&HEADER);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    if rows.is_empty() {
        output.push_str("(no saga)\n");
    }
    output
}

/// One saga's summary, a field a line.
fn details(saga: &SagaSummary) -> String {
    let fields = [
        ("id", saga.id.to_string()),
        ("definition", definition(saga)),
        ("state", state_name(saga.state).to_owned()),
        ("owner", or_dash(saga.owner.as_deref())),
        ("epoch", saga.epoch.to_string()),
        (
            "lease left",
            saga.lease_left.map_or_else(|| "-".into(), duration),
        ),
        ("recoveries", saga.recoveries.to_string()),
        ("records", saga.records.to_string()),
        ("created", timestamp(saga.created)),
        ("updated", timestamp(saga.updated)),
        ("age", duration(saga.age)),
        ("last error", or_dash(saga.last_error.as_deref())),
        ("quarantine", or_dash(saga.quarantine.as_deref())),
    ];
    let mut output = String::new();
    for (name, value) in fields {
        let _ = writeln!(output, "{:<12}{}", format!("{name}:"), one_line(&value));
    }
    output
}

fn definition(saga: &SagaSummary) -> String {
    match saga.definition.is_empty() {
        true => "-".into(),
        false => format!("{}@{}", saga.definition, saga.version),
    }
}

fn state_name(state: SagaState) -> &'static str {
    match state {
        SagaState::Forward => "forward",
        SagaState::Unwinding => "unwinding",
        SagaState::Finished(Outcome::Committed) => "committed",
        SagaState::Finished(Outcome::Compensated) => "compensated",
        SagaState::Finished(Outcome::Stuck) => "stuck",
        SagaState::Finished(Outcome::Abandoned) => "abandoned",
        _ => "unknown",
    }
}

fn or_dash(text: Option<&str>) -> String {
    text.map_or_else(|| "-".into(), one_line)
}

/// `text` on one line, cut to 40 characters for a table's cell.
fn short(text: Option<&str>) -> String {
    const MAX: usize = 40;
    let text = or_dash(text);
    match text.chars().count() > MAX {
        true => text.chars().take(MAX - 1).chain(['…']).collect(),
        false => text,
    }
}

/// `text` with its control characters (newlines, tabs) escaped, so that
/// it stays on one line.
fn one_line(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = match c.is_control() {
                true => c.escape_default().collect(),
                false => vec![c],
            };
            escaped
        })
        .collect()
}

/// A short duration: `4.2s`, `3m05s`, `2h07m`, `3d04h`.
fn duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..60 => format!("{:.1}s", duration.as_secs_f64()),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86400, secs % 86400 / 3600),
    }
}

/// A time as `YYYY-MM-DD HH:MM:SS.mmm UTC`.
fn timestamp(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = (secs / 86400) as i64;
    let rest = secs % 86400;
    // Days since 1970-01-01 to a civil date (the proleptic Gregorian
    // calendar), after Howard Hinnant's `civil_from_days`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// One record on one line: its number and what it says.
fn record_line(record: &Record) -> String {
    let text = match &record.event {
        Event::Created {
            definition,
            version,
            fingerprint,
            parameters,
        } => format!(
            "created {definition}@{version}, fingerprint {fingerprint:016x}, parameters {} bytes",
            parameters.len()
        ),
        Event::ActionStarted { step, attempt } => {
            format!("step {step}: action started, attempt {attempt}")
        }
        Event::ActionSucceeded { step, output } => match output {
            Some(output) => format!(
                "step {step}: action succeeded, output {} bytes",
                output.len()
            ),
            None => format!("step {step}: action succeeded"),
        },
        Event::ActionFailed {
            step,
            attempt,
            message,
        } => format!("step {step}: action failed, attempt {attempt}: {message}"),
        Event::Retrying {
            step,
            compensation,
            attempt,
        } => {
            let what = if *compensation {
                "compensation"
            } else {
                "action"
            };
            format!("step {step}: {what} retried, attempt {attempt}")
        }
        Event::Unwinding { step, reason } => {
            let reason = format!("{reason:?}").to_lowercase();
            format!("unwinding from step {step} ({reason})")
        }
        Event::CompensationStarted { step, attempt } => {
            format!("step {step}: compensation started, attempt {attempt}")
        }
        Event::CompensationSucceeded { step } => format!("step {step}: compensation succeeded"),
        Event::CompensationFailed {
            step,
            attempt,
            message,
        } => format!("step {step}: compensation failed, attempt {attempt}: {message}"),
        Event::Reopened => String::from("reopened by an operator"),
        Event::Finished { outcome, message } if message.is_empty() => {
            format!("finished {outcome}")
        }
        Event::Finished { outcome, message } => format!("finished {outcome}: {message}"),
        other => format!("{other:?}"),
    };
    format!("{:>4}  {}", record.seq, one_line(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn command_lines_parse() {
        let id = "0123456789abcdef0011223344556677";
        let saga = SagaId(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        let run = |command| Ok(Parsed::Run { url: None, command });
        assert_eq!(parse(&args("list")), run(Command::List(None)));
        assert_eq!(
            parse(&args("list --state stuck")),
            run(Command::List(Some(SagaState::Finished(Outcome::Stuck))))
        );
        assert_eq!(
            parse(&args("--url postgres://x/y list --state=forward")),
            Ok(Parsed::Run {
                url: Some("postgres://x/y".into()),
                command: Command::List(Some(SagaState::Forward)),
            })
        );
        assert_eq!(
            parse(&args(&format!("show {id}"))),
            run(Command::Show(saga))
        );
        assert_eq!(
            parse(&args("show 01234567-89ab-cdef-0011-223344556677")),
            run(Command::Show(saga))
        );
        let mut abandon = args(&format!("abandon {id} --reason"));
        abandon.push("the bank is gone".into());
        assert_eq!(
            parse(&abandon),
            run(Command::Abandon(saga, "the bank is gone".into()))
        );
        assert_eq!(
            parse(&args(&format!("reopen {id}"))),
            run(Command::Reopen(saga))
        );
        assert_eq!(
            parse(&args(&format!("release-quarantine {id}"))),
            run(Command::ReleaseQuarantine(saga))
        );
        assert_eq!(parse(&args("--help")), Ok(Parsed::Help));
        assert_eq!(parse(&args("list -h")), Ok(Parsed::Help));
        for (bad, says) in [
            ("", "no command"),
            ("frobnicate", "unknown command"),
            ("list --state running", "unknown state"),
            ("list extra", "unexpected argument"),
            ("show", "needs a saga id"),
            ("show 42", "not a saga id"),
            (&format!("show {id} {id}"), "unexpected argument"),
            (&format!("abandon {id}"), "needs --reason"),
            (
                &format!("reopen {id} --reason x"),
                "not an option of reopen",
            ),
            (&format!("show {id} --state stuck"), "not an option of show"),
            ("list --url", "--url needs a value"),
            ("list --verbose", "unknown option --verbose"),
        ] {
            let error = parse(&args(bad)).unwrap_err();
            assert!(error.contains(says), "{bad:?}: {error}");
        }
    }

    #[test]
    fn values_are_shown_short() {
        assert_eq!(duration(Duration::from_millis(4200)), "4.2s");
        assert_eq!(duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(duration(Duration::from_secs(2 * 3600 + 7 * 60)), "2h07m");
        assert_eq!(duration(Duration::from_secs(3 * 86400 + 4 * 3600)), "3d04h");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01 00:00:00.000 UTC");
        // 2024-02-29 12:34:56.789 UTC
        let leap = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789);
        assert_eq!(timestamp(leap), "2024-02-29 12:34:56.789 UTC");
        assert_eq!(one_line("a\nb\tc"), "a\\nb\\tc");
        assert_eq!(short(Some(&"x".repeat(50))).chars().count(), 40);
        assert_eq!(
            redact("postgres://me:secret@db:5432/app?sslmode=require"),
            "postgres://me:***@db:5432/app?sslmode=require"
        );
        assert_eq!(redact("postgres://me@db/app"), "postgres://me@db/app");
        assert_eq!(
            redact("postgres:///app?host=/tmp"),
            "postgres:///app?host=/tmp"
        );
    }
}
