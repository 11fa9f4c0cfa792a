//! The demo's progress display: a bar redrawn in place on a terminal, plain lines every few seconds otherwise
//! (a log file or a CI console gets no carriage returns).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

const WIDTH: usize = 30;

pub struct ProgressBar {
    terminal: bool,
    started: Instant,
    /// When the display last changed; redraws and lines are spaced by `every`.
    shown: Option<Instant>,
    every: Duration,
    /// Rows/s of the read, once the whole file is read: what remains is the commit, and the rate would only
    /// decay while it runs.
    read_rate: Option<f64>,
}

impl ProgressBar {
    pub fn new() -> ProgressBar {
        let terminal = std::io::stdout().is_terminal();
        ProgressBar {
            terminal,
            started: Instant::now(),
            shown: None,
            every: if terminal {
                Duration::from_millis(100)
            } else {
                Duration::from_secs(2)
            },
            read_rate: None,
        }
    }

    /// Shows `fraction` (0–1) of the file read and `rows` parsed so far.
    pub fn update(&mut self, fraction: f64, rows: u64) {
        let fraction = fraction.clamp(0.0, 1.0);
        let committing = self.read_rate.is_some();
        if self.shown.is_some_and(|t| t.elapsed() < self.every) || (committing && !self.terminal) {
            return;
        }
        self.shown = Some(Instant::now());
        let rate = match self.read_rate {
            Some(r) => r,
            None => rows as f64 / self.started.elapsed().as_secs_f64().max(1e-3),
        };
        if fraction >= 1.0 {
            self.read_rate = Some(rate);
        }
        let phase = if fraction >= 1.0 { ", committing" } else { "" };
        let mut out = std::io::stdout().lock();
        let _ = if self.terminal {
            let filled = (fraction * WIDTH as f64).round() as usize;
            write!(
                out,
                "\r  [{}{}] {:>3.0}%  {rows} rows  {rate:.0} rows/s{phase} ",
                "#".repeat(filled),
                " ".repeat(WIDTH - filled),
                fraction * 100.0,
            )
        } else {
            writeln!(
                out,
                "  … {:.0}% read, {rows} rows, {rate:.0} rows/s{phase}",
                fraction * 100.0
            )
        };
        let _ = out.flush();
    }

    /// Clears the bar so that the next line starts on a clean line.
    pub fn finish(&mut self) {
        if self.terminal && self.shown.is_some() {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[2K");
            let _ = out.flush();
        }
        self.shown = None;
        self.read_rate = None;
    }
}
