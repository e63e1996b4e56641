//! The Prometheus text exposition format (0.0.4), written in one place for
//! `check --format prometheus` and the daemon's `/metrics`: a `# HELP` and `# TYPE` line per
//! family, then one sample per label set, label values escaped as the format requires.

use std::fmt::Write as _;

/// A text exposition being written, family by family.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

/// The labels of one sample, in order: `[("runbook", "shop"), ("check", "wal")]`.
pub type Labels<'a> = Vec<(&'static str, &'a str)>;

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// A gauge family with one sample per row; a family without rows is left out.
    pub fn gauge<'a>(
        &mut self,
        name: &str,
        help: &str,
        rows: impl IntoIterator<Item = (Labels<'a>, f64)>,
    ) {
        let mut rows = rows.into_iter().peekable();
        if rows.peek().is_none() {
            return;
        }
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} gauge");
        for (labels, value) in rows {
            self.text.push_str(name);
            if !labels.is_empty() {
                let pairs: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                let _ = write!(self.text, "{{{}}}", pairs.join(","));
            }
            let _ = writeln!(self.text, " {value}");
        }
    }

    pub fn finish(self) -> String {
        self.text
    }
}

/// A label value in the exposition format: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_with_escaped_labels() {
        let mut e = Exposition::new();
        e.gauge("up", "Whether it runs.", [(vec![], 1.0)]);
        e.gauge(
            "age_seconds",
            "Age.",
            [(vec![("job", "a\"b\\c\nd"), ("kind", "x")], 2.5)],
        );
        e.gauge("empty", "Left out.", Vec::new());
        assert_eq!(
            e.finish(),
            "# HELP up Whether it runs.\n# TYPE up gauge\nup 1\n\
             # HELP age_seconds Age.\n# TYPE age_seconds gauge\n\
             age_seconds{job=\"a\\\"b\\\\c\\nd\",kind=\"x\"} 2.5\n"
        );
    }
}
