//! The table `sizing` prints: memory, then CPU, per class and role with data; the
//! classes without, and why; then the pods over a limit, worst first.

use std::io::Write;

use ci_pod_webhook_core::quantity::Quantity;

use super::TABLE_OVER;
use crate::sizing::stats::div_ceil;
use crate::sizing::{Entry, Figures, Report};

/// Memory for people: bytes in the largest binary unit, one decimal, rounded up (so a
/// peak over a limit never reads as equal to it). Exact values are in `-o json`.
pub(super) fn memory(q: Option<Quantity>) -> String {
    let Some(q) = q else {
        return "-".to_string();
    };
    let bytes = q.value_ceil();
    const UNITS: [&str; 5] = ["", "Ki", "Mi", "Gi", "Ti"];
    let mut unit = 0;
    let mut scale: i64 = 1;
    while unit + 1 < UNITS.len() && bytes >= scale * 1024 {
        scale *= 1024;
        unit += 1;
    }
    if unit == 0 {
        return bytes.to_string();
    }
    let tenths = div_ceil(i128::from(bytes) * 10, i128::from(scale));
    format!("{}.{}{}", tenths / 10, tenths % 10, UNITS[unit])
}

/// CPU for people: cores with two decimals, rounded up.
pub(super) fn cpu(q: Option<Quantity>) -> String {
    let Some(q) = q else {
        return "-".to_string();
    };
    let hundredths = div_ceil(i128::from(q.milli_value_ceil()), 10);
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

fn limit(q: Option<Quantity>) -> String {
    q.map_or("none".to_string(), |q| q.to_string())
}

fn suggested(figures: &Figures) -> String {
    match (figures.suggested, figures.capped) {
        (Some(q), true) => format!("{q} (max)"),
        (Some(q), false) => q.to_string(),
        (None, _) => "-".to_string(),
    }
}

pub(super) fn percent(
    peak: Option<Quantity>,
    limit: Option<Quantity>,
    show: fn(Option<Quantity>) -> String,
) -> String {
    match (peak, limit) {
        (Some(p), Some(l)) if l.is_positive() => {
            let ratio = div_ceil(p.nanos() * 100, l.nanos());
            format!("{} ({ratio}%)", show(Some(p)))
        }
        (p, _) => show(p),
    }
}

/// The table: memory, then CPU, per class and role with data; the classes and roles
/// without, and why; then the pods over a limit, worst first.
pub(super) fn write_table(report: &Report, out: &mut impl Write) -> std::io::Result<()> {
    let source = &report.source;
    writeln!(
        out,
        "Prometheus {}, {} up to {}, headroom {}",
        source.prometheus, source.since, source.until, source.headroom
    )?;
    let shown: Vec<&Entry> = report.classes.iter().filter(|e| e.jobs > 0).collect();
    let name = |e: &Entry| {
        if e.in_policy {
            e.class.clone()
        } else {
            format!("{} (not in the policy)", e.class)
        }
    };
    if !shown.is_empty() {
        writeln!(out, "\nMEMORY: peak working set per job pod")?;
        let rows: Vec<[String; 11]> = shown
            .iter()
            .map(|e| {
                let m = &e.memory;
                [
                    name(e),
                    e.container.to_string(),
                    e.jobs.to_string(),
                    limit(m.limit),
                    memory(m.p50),
                    memory(m.p95),
                    memory(m.p99),
                    memory(m.max),
                    m.over_limit.to_string(),
                    m.oom_killed.unwrap_or(0).to_string(),
                    suggested(m),
                ]
            })
            .collect();
        super::super::write_table(
            out,
            &[
                "CLASS",
                "CONTAINER",
                "JOBS",
                "LIMIT",
                "P50",
                "P95",
                "P99",
                "MAX",
                "OVER",
                "OOM",
                "SUGGESTED",
            ],
            &rows,
        )?;
        writeln!(out, "\nCPU: peak rate per job pod, in CPUs")?;
        let rows: Vec<[String; 10]> = shown
            .iter()
            .map(|e| {
                let c = &e.cpu;
                [
                    name(e),
                    e.container.to_string(),
                    e.jobs.to_string(),
                    limit(c.limit),
                    cpu(c.p50),
                    cpu(c.p95),
                    cpu(c.p99),
                    cpu(c.max),
                    c.over_limit.to_string(),
                    suggested(c),
                ]
            })
            .collect();
        super::super::write_table(
            out,
            &[
                "CLASS",
                "CONTAINER",
                "JOBS",
                "LIMIT",
                "P50",
                "P95",
                "P99",
                "MAX",
                "OVER",
                "SUGGESTED",
            ],
            &rows,
        )?;
    }

    // A class with no data at all is one line; a role missing from a class that has
    // data (no services containers) is left to the JSON.
    let mut missing: Vec<(String, &str)> = Vec::new();
    for e in &report.classes {
        let class_has_data = report
            .classes
            .iter()
            .any(|o| o.class == e.class && o.jobs > 0);
        if !class_has_data
            && e.container == "build"
            && let Some(why) = &e.no_data
        {
            missing.push((name(e), why));
        }
    }
    if !missing.is_empty() {
        writeln!(out, "\nNO DATA")?;
        for (class, why) in missing {
            writeln!(out, "{class}: {why}")?;
        }
    }

    let over: Vec<&Entry> = shown
        .iter()
        .copied()
        .filter(|e| !e.over.is_empty())
        .collect();
    if !over.is_empty() {
        writeln!(
            out,
            "\nOVER THE LIMIT: worst first, {TABLE_OVER} per class and container (-o json lists all)"
        )?;
        let mut rows: Vec<[String; 7]> = Vec::new();
        for e in over {
            for pod in e.over.iter().take(TABLE_OVER) {
                rows.push([
                    name(e),
                    e.container.to_string(),
                    pod.namespace.clone(),
                    pod.pod.clone(),
                    pod.project.clone().unwrap_or_else(|| "-".to_string()),
                    percent(pod.memory_peak, e.memory.limit, memory),
                    percent(pod.cpu_peak, e.cpu.limit, cpu),
                ]);
            }
            if e.over.len() > TABLE_OVER {
                rows.push([
                    String::new(),
                    String::new(),
                    String::new(),
                    format!("… and {} more", e.over.len() - TABLE_OVER),
                    String::new(),
                    String::new(),
                    String::new(),
                ]);
            }
        }
        super::super::write_table(
            out,
            &[
                "CLASS",
                "CONTAINER",
                "NAMESPACE",
                "POD",
                "PROJECT",
                "MEMORY PEAK",
                "CPU PEAK",
            ],
            &rows,
        )?;
    }
    Ok(())
}
