//! `tern functions list|get|delete`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde::Deserialize;

use super::http::{encode, Client, Request};
use super::ConnectArgs;

/// Safety net against a server that keeps returning markers.
const MAX_PAGES: usize = 10_000;

#[derive(clap::Subcommand, Debug)]
pub enum FunctionsCommand {
    /// List all functions as a table.
    List {
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Print a function's configuration as JSON.
    Get {
        /// Function name or ARN.
        name: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Delete a function.
    Delete {
        /// Function name or ARN.
        name: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

/// The columns of the list table.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct Summary {
    function_name: String,
    runtime: String,
    handler: String,
    memory_size: u64,
    timeout: u64,
    last_modified: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListPage {
    functions: Vec<Summary>,
    next_marker: Option<String>,
}

pub fn run(cmd: &FunctionsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        FunctionsCommand::List { connect } => list(&Client::connect(connect)?),
        FunctionsCommand::Get { name, connect } => get(&Client::connect(connect)?, name),
        FunctionsCommand::Delete { name, connect } => delete(&Client::connect(connect)?, name),
    }
}

fn list(client: &Client) -> anyhow::Result<ExitCode> {
    let mut all = Vec::new();
    let mut marker: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut req = Request::new("GET", "/2015-03-31/functions/");
        if let Some(m) = &marker {
            req = req.query("Marker", m);
        }
        let page: ListPage = client.call(req).context("cannot list functions")?.json()?;
        all.extend(page.functions);
        match page.next_marker {
            Some(next) if Some(&next) == marker.as_ref() => {
                bail!("the server returned the same page marker twice ({next})")
            }
            Some(next) => marker = Some(next),
            None => {
                write_table(&mut std::io::stdout().lock(), &all)?;
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    bail!("the function list did not end after {MAX_PAGES} pages")
}

fn write_table(out: &mut impl Write, functions: &[Summary]) -> std::io::Result<()> {
    if functions.is_empty() {
        return writeln!(out, "no functions");
    }
    let header = [
        "NAME",
        "RUNTIME",
        "HANDLER",
        "MEMORY",
        "TIMEOUT",
        "LAST MODIFIED",
    ];
    let rows: Vec<[String; 6]> = functions
        .iter()
        .map(|f| {
            [
                f.function_name.clone(),
                f.runtime.clone(),
                f.handler.clone(),
                format!("{} MB", f.memory_size),
                format!("{} s", f.timeout),
                f.last_modified.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s
    };
    writeln!(out, "{}", line(&header))?;
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        writeln!(out, "{}", line(&cells))?;
    }
    Ok(())
}

fn get(client: &Client, name: &str) -> anyhow::Result<ExitCode> {
    let config: serde_json::Value = client
        .call(Request::new(
            "GET",
            format!("/2015-03-31/functions/{}/configuration", encode(name)),
        ))
        .with_context(|| format!("cannot get function {name}"))?
        .json()?;
    writeln!(
        std::io::stdout().lock(),
        "{}",
        serde_json::to_string_pretty(&config)?
    )?;
    Ok(ExitCode::SUCCESS)
}

fn delete(client: &Client, name: &str) -> anyhow::Result<ExitCode> {
    client
        .call(Request::new(
            "DELETE",
            format!("/2015-03-31/functions/{}", encode(name)),
        ))
        .with_context(|| format!("cannot delete function {name}"))?;
    writeln!(std::io::stdout().lock(), "deleted {name}")?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_columns_to_the_widest_cell() {
        let functions = vec![
            Summary {
                function_name: "a".into(),
                runtime: "python3.12".into(),
                handler: "app.handler".into(),
                memory_size: 128,
                timeout: 3,
                last_modified: "2024-01-02T03:04:05.678+0000".into(),
            },
            Summary {
                function_name: "longer-name".into(),
                runtime: "provided".into(),
                handler: "x".into(),
                memory_size: 1024,
                timeout: 30,
                last_modified: "2024-01-02T03:04:05.678+0000".into(),
            },
        ];
        let mut out = Vec::new();
        write_table(&mut out, &functions).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].starts_with("NAME         RUNTIME     HANDLER"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("a            python3.12  app.handler  128 MB"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("longer-name  provided    x            1024 MB"),
            "{text}"
        );
    }

    #[test]
    fn an_empty_list_says_so() {
        let mut out = Vec::new();
        write_table(&mut out, &[]).expect("write");
        assert_eq!(out, b"no functions\n");
    }
}
