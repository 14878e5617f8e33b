//! The results table: one row per (scenario, metric), one column per
//! server, the ratio of presenced to the best peer, and whether presenced
//! meets the target. Printed to the terminal and appended to BENCHMARKS.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::servers::ServerId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
    /// Context, not compared.
    Info,
}

/// A target presenced is held to.
#[derive(Clone, Copy, Debug)]
pub enum Goal {
    AtMost(f64),
    Below(f64),
}

impl Goal {
    fn label(self) -> String {
        match self {
            Goal::AtMost(v) => format!("≤ {}", fmt(v)),
            Goal::Below(v) => format!("< {}", fmt(v)),
        }
    }

    fn met(self, v: f64) -> bool {
        match self {
            Goal::AtMost(g) => v <= g,
            Goal::Below(g) => v < g,
        }
    }
}

/// What one row measures.
#[derive(Clone, Debug)]
pub struct Metric {
    pub scenario: &'static str,
    pub name: String,
    pub better: Better,
    pub goal: Option<Goal>,
    /// presenced should beat the best peer by this factor.
    pub vs_peer: Option<f64>,
}

impl Metric {
    pub fn new(scenario: &'static str, name: impl Into<String>, better: Better) -> Metric {
        Metric {
            scenario,
            name: name.into(),
            better,
            goal: None,
            vs_peer: None,
        }
    }

    pub fn goal(mut self, g: Goal) -> Metric {
        self.goal = Some(g);
        self
    }

    pub fn vs_peer(mut self, factor: f64) -> Metric {
        self.vs_peer = Some(factor);
        self
    }
}

#[derive(Clone, Debug)]
pub enum Cell {
    Val(f64),
    Text(String),
}

#[derive(Debug)]
struct Row {
    metric: Metric,
    cells: BTreeMap<ServerId, Cell>,
}

#[derive(Debug, Default)]
pub struct Report {
    rows: Vec<Row>,
    pub servers: Vec<ServerId>,
    pub notes: Vec<String>,
}

pub fn fmt(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        let s = format!("{v:.0}");
        // Thousands separators for readability.
        let (sign, digits) = s.split_at(usize::from(s.starts_with('-')));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

impl Report {
    pub fn new(servers: Vec<ServerId>) -> Report {
        Report {
            rows: Vec::new(),
            servers,
            notes: Vec::new(),
        }
    }

    pub fn put(&mut self, server: ServerId, metric: Metric, cell: Cell) {
        let row = match self
            .rows
            .iter_mut()
            .position(|r| r.metric.scenario == metric.scenario && r.metric.name == metric.name)
        {
            Some(i) => &mut self.rows[i],
            None => {
                self.rows.push(Row {
                    metric,
                    cells: BTreeMap::new(),
                });
                self.rows.last_mut().expect("just pushed")
            }
        };
        row.cells.insert(server, cell);
    }

    /// Cells of `server` that say a scenario failed (an error, a killed
    /// server, a view that never converged), as `scenario: metric: text`.
    pub fn failures(&self, server: ServerId) -> Vec<String> {
        self.rows
            .iter()
            .filter_map(|r| match r.cells.get(&server) {
                Some(Cell::Text(t))
                    if ["error", "aborted", "killed", "not "]
                        .iter()
                        .any(|p| t.starts_with(p)) =>
                {
                    Some(format!("{}: {}: {t}", r.metric.scenario, r.metric.name))
                }
                _ => None,
            })
            .collect()
    }

    pub fn note(&mut self, s: impl Into<String>) {
        self.notes.push(s.into());
    }

    /// The table as Markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = write!(out, "| scenario | metric | target |");
        for s in &self.servers {
            let _ = write!(out, " {} |", s.name());
        }
        let _ = writeln!(out, " presenced vs best peer | presenced meets target |");
        let _ = write!(out, "|---|---|---|");
        for _ in &self.servers {
            let _ = write!(out, "---:|");
        }
        let _ = writeln!(out, "---:|---|");
        for row in &self.rows {
            let m = &row.metric;
            let mut target = m.goal.map(Goal::label).unwrap_or_default();
            if let Some(f) = m.vs_peer {
                if !target.is_empty() {
                    target.push_str("; ");
                }
                let _ = write!(target, "≥ {f}× best peer");
            }
            let _ = write!(out, "| {} | {} | {} |", m.scenario, m.name, target);
            for s in &self.servers {
                let cell = match row.cells.get(s) {
                    Some(Cell::Val(v)) => fmt(*v),
                    Some(Cell::Text(t)) => t.clone(),
                    None => "—".into(),
                };
                let _ = write!(out, " {cell} |");
            }
            let ours = match row.cells.get(&ServerId::Presenced) {
                Some(Cell::Val(v)) => Some(*v),
                _ => None,
            };
            let best_peer = row
                .cells
                .iter()
                .filter(|(s, _)| !matches!(**s, ServerId::Presenced | ServerId::Baseline))
                .filter_map(|(_, c)| match c {
                    Cell::Val(v) => Some(*v),
                    _ => None,
                })
                .fold(None::<f64>, |acc, v| {
                    Some(match (acc, m.better) {
                        (None, _) => v,
                        (Some(a), Better::Lower) => a.min(v),
                        (Some(a), _) => a.max(v),
                    })
                });
            let ratio = match (ours, best_peer, m.better) {
                (Some(o), Some(p), Better::Lower) if o > 0.0 => Some(p / o),
                (Some(o), Some(p), Better::Higher) if p > 0.0 => Some(o / p),
                _ => None,
            };
            let ratio_s = match (ratio, m.better) {
                (_, Better::Info) => String::new(),
                (Some(r), _) => format!("{r:.2}× {}", if r >= 1.0 { "better" } else { "worse" }),
                (None, _) => String::new(),
            };
            let mut verdicts = Vec::new();
            if let (Some(g), Some(o)) = (m.goal, ours) {
                verdicts.push(if g.met(o) { "pass" } else { "FAIL" }.to_owned());
            } else if m.goal.is_some() {
                verdicts.push("FAIL (no value)".to_owned());
            }
            if let Some(f) = m.vs_peer {
                match ratio {
                    Some(r) if r >= f => verdicts.push(format!("pass (≥ {f}× peer)")),
                    Some(_) => verdicts.push(format!("FAIL (< {f}× peer)")),
                    None => verdicts.push("n/a (no peer value)".to_owned()),
                }
            }
            let _ = writeln!(out, " {ratio_s} | {} |", verdicts.join(", "));
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out);
            for n in &self.notes {
                let _ = writeln!(out, "- {n}");
            }
        }
        out
    }
}
