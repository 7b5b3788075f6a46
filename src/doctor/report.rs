//! The doctor's findings and how they are shown: one line per check, grouped, in the
//! spirit of `linkerd check`, or JSON for scripts.

use std::fmt::Write as _;

use serde::Serialize;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warning,
    Failure,
}

impl Status {
    fn symbol(self) -> &'static str {
        match self {
            Status::Ok => "✔",
            Status::Warning => "‼",
            Status::Failure => "✘",
        }
    }
}

/// One check: what was found, and for anything short of ✔ why it matters and the fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub group: String,
    pub status: Status,
    pub message: String,
    /// Why it matters, in one line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The command (or policy change) that fixes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn ok(group: &str, message: impl Into<String>) -> Self {
        Check {
            group: group.to_string(),
            status: Status::Ok,
            message: message.into(),
            hint: None,
            fix: None,
        }
    }

    pub fn warning(group: &str, message: impl Into<String>) -> Self {
        Check {
            status: Status::Warning,
            ..Check::ok(group, message)
        }
    }

    pub fn failure(group: &str, message: impl Into<String>) -> Self {
        Check {
            status: Status::Failure,
            ..Check::ok(group, message)
        }
    }

    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    #[must_use]
    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

/// Every check of one run, in order.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub ok: usize,
    pub warnings: usize,
    pub failures: usize,
}

impl Report {
    pub fn counts(&self) -> Counts {
        let count = |s| self.checks.iter().filter(|c| c.status == s).count();
        Counts {
            ok: count(Status::Ok),
            warnings: count(Status::Warning),
            failures: count(Status::Failure),
        }
    }

    /// True when any check failed: the command then exits non-zero.
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == Status::Failure)
    }

    /// The text form: groups in the order they first appear, one line per check.
    pub fn text(&self) -> String {
        let mut groups: Vec<&str> = Vec::new();
        for check in &self.checks {
            if !groups.contains(&check.group.as_str()) {
                groups.push(&check.group);
            }
        }
        let mut out = String::new();
        for group in groups {
            let _ = writeln!(out, "{group}\n{}", "-".repeat(group.chars().count()));
            for check in self.checks.iter().filter(|c| c.group == group) {
                let _ = writeln!(out, "{} {}", check.status.symbol(), check.message);
                if let Some(hint) = &check.hint {
                    let _ = writeln!(out, "    {hint}");
                }
                if let Some(fix) = &check.fix {
                    let _ = writeln!(out, "    fix: {fix}");
                }
            }
            out.push('\n');
        }
        let counts = self.counts();
        let verdict = if counts.failures > 0 {
            Status::Failure
        } else if counts.warnings > 0 {
            Status::Warning
        } else {
            Status::Ok
        };
        let _ = writeln!(
            out,
            "Status check results are {} ({} ok, {} warnings, {} failures)",
            verdict.symbol(),
            counts.ok,
            counts.warnings,
            counts.failures
        );
        out
    }

    /// The JSON form: `{"checks": [...], "summary": {...}}`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"checks": self.checks, "summary": self.counts()})
    }
}

#[cfg(test)]
mod tests;
