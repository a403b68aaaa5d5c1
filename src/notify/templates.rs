//! Message templates (minijinja): good built-in defaults for the subject, the plain-text body,
//! the HTML body and the Markdown report, each replaceable per sink by a file. Templates are
//! compiled when the sink is built, so a broken template is a start-up error, not a lost
//! notification.

use minijinja::{AutoEscape, Environment, UndefinedBehavior};

use super::SinkError;
use super::context::Context;
use crate::config::sinks::TemplateFiles;

/// A part of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// One line: an email subject, a Slack header, an ntfy title.
    Subject,
    /// A plain-text body.
    Text,
    /// An HTML body (HTML-escaped variables; `output_html` is already safe).
    Html,
    /// A Markdown report.
    Markdown,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Subject => "subject.txt",
            Part::Text => "text.txt",
            Part::Html => "html.html",
            Part::Markdown => "markdown.md",
        }
    }

    fn default_source(self) -> &'static str {
        match self {
            Part::Subject => include_str!("templates/subject.txt"),
            Part::Text => include_str!("templates/text.txt"),
            Part::Html => include_str!("templates/html.html"),
            Part::Markdown => include_str!("templates/markdown.md"),
        }
    }
}

/// The compiled templates of one sink.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// The built-in templates, with any of `files` replacing them.
    pub fn load(files: &TemplateFiles) -> Result<Self, SinkError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        for (part, file) in [
            (Part::Subject, &files.subject),
            (Part::Text, &files.text),
            (Part::Html, &files.html),
            (Part::Markdown, &files.markdown),
        ] {
            let source = match file {
                Some(path) => std::fs::read_to_string(path).map_err(|e| {
                    SinkError::Config(format!("cannot read template {}: {e}", path.display()))
                })?,
                None => part.default_source().to_string(),
            };
            env.add_template_owned(part.name(), source).map_err(|e| {
                let which = file
                    .as_ref()
                    .map_or_else(|| "built-in".to_string(), |p| p.display().to_string());
                SinkError::Config(format!("template {which}: {e}"))
            })?;
        }
        Ok(Self { env })
    }

    /// The built-in templates only.
    pub fn defaults() -> Self {
        // The built-ins are tested to compile; an error here is a bug caught by the tests.
        Self::load(&TemplateFiles::default()).unwrap_or_else(|_| Self {
            env: Environment::new(),
        })
    }

    /// Renders one part. A subject is folded to one line.
    pub fn render(&self, part: Part, ctx: &Context) -> Result<String, SinkError> {
        let out = self
            .env
            .get_template(part.name())
            .and_then(|t| t.render(minijinja::value::Serde(ctx)))
            .map_err(|e| SinkError::Config(format!("rendering {}: {e}", part.name())))?;
        Ok(match part {
            Part::Subject => out.split_whitespace().collect::<Vec<_>>().join(" "),
            _ => out,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_templates_compile() {
        assert!(Templates::load(&TemplateFiles::default()).is_ok());
    }

    #[test]
    fn defaults_render_a_readable_message() {
        let (job, response, events) = crate::notify::sample::sample_job(1_764_000_000_000);
        let mut config = crate::config::Config {
            public_url: Some("https://respool.example.com".into()),
            ..Default::default()
        };
        config.notify.pricing.insert(
            "o4-mini".into(),
            crate::pricing::ModelPrice::standard(2.0, 8.0, None),
        );
        let ctx = Context::build("job.completed", &job, Some(&response), &events, &config);
        let t = Templates::defaults();
        let subject = t.render(Part::Subject, &ctx).unwrap();
        assert_eq!(subject, "✅ respool-test completed after 1m 4s");
        let text = t.render(Part::Text, &ctx).unwrap();
        assert!(text.contains("Model: o4-mini-deep-research"), "{text}");
        assert!(
            text.contains("Tokens: 1200 in, 800 out (300 reasoning)"),
            "{text}"
        );
        // 1200 in at $2 and 800 out at $8 a million, one web search at $10 a thousand.
        assert!(
            text.contains("Cost: $0.02 (tokens $0.01 + tools $0.01 for 1 web search)"),
            "{text}"
        );
        assert!(
            text.contains("Job: https://respool.example.com/jobs/job_"),
            "{text}"
        );
        assert!(
            text.contains("## Sources\n\n1. [Example source](https://example.com/source)"),
            "{text}"
        );
        let html = t.render(Part::Html, &ctx).unwrap();
        assert!(html.contains("<h1>Sample report</h1>"), "{html}");
        assert!(
            html.contains("<strong>test notification</strong>"),
            "{html}"
        );
        assert!(html.contains("Planned the search"), "{html}");
        let md = t.render(Part::Markdown, &ctx).unwrap();
        assert!(md.starts_with("# respool-test\n"), "{md}");
        assert!(md.contains("## Reasoning summary"), "{md}");
    }

    #[test]
    fn html_escapes_variables_but_keeps_rendered_output() {
        let (mut job, response, events) = crate::notify::sample::sample_job(0);
        job.name = "<script>x</script>".into();
        let ctx = Context::build(
            "job.completed",
            &job,
            Some(&response),
            &events,
            &crate::config::Config::default(),
        );
        let html = Templates::defaults().render(Part::Html, &ctx).unwrap();
        assert!(!html.contains("<script>x"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }

    #[test]
    fn a_broken_custom_template_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.txt");
        std::fs::write(&path, "{% if %}").unwrap();
        let files = TemplateFiles {
            subject: Some(path),
            ..TemplateFiles::default()
        };
        assert!(matches!(Templates::load(&files), Err(SinkError::Config(_))));
    }
}
