//! The Dockerfile, parsed (by the `parse-dockerfile` crate: directives, line continuations,
//! heredocs, the `escape` directive) into xrun's own typed instructions, each with the line
//! it starts on. Values stay raw here: variables are expanded per step ([`super::expand`]).

use parse_dockerfile as pd;

use super::BuildError;

/// A command in shell form (run through the stage's `SHELL`) or exec form (a JSON array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandForm {
    /// `RUN echo hi`: the script.
    Shell(String),
    /// `RUN ["echo", "hi"]`: the argv.
    Exec(Vec<String>),
}

/// A `--name=value` flag of an instruction (`value` absent for a bare `--link`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// The name, without the dashes.
    pub name: String,
    /// The value.
    pub value: Option<String>,
}

/// A source of `COPY`/`ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A path (or glob) in the context or in the `--from` stage; a URL for `ADD`.
    Path(String),
    /// An inline file (a heredoc): its content, and whether variables expand in it.
    Inline {
        /// The content.
        body: String,
        /// Variables expand in it (the delimiter was not quoted).
        expand: bool,
    },
}

/// One instruction, values raw (unexpanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// `FROM [--platform=P] IMAGE [AS NAME]`.
    From {
        /// The image (`scratch`, a reference, or an earlier stage).
        image: String,
        /// `AS NAME`.
        name: Option<String>,
        /// `--platform=`.
        platform: Option<String>,
    },
    /// `RUN`: its flags, and the command (heredocs folded into a shell script).
    Run {
        /// Flags (`--network=none` is accepted; others are refused).
        flags: Vec<Flag>,
        /// The command.
        command: CommandForm,
    },
    /// `COPY` (`add` false) or `ADD` (`add` true).
    Copy {
        /// ADD rather than COPY.
        add: bool,
        /// `--from`, `--chown`, `--chmod`, …
        flags: Vec<Flag>,
        /// The sources.
        sources: Vec<Source>,
        /// The destination.
        dest: String,
    },
    /// `ARG NAME[=VALUE] …` (raw).
    Arg(String),
    /// `ENV K=V …` or `ENV K V` (raw).
    Env(String),
    /// `LABEL K=V …` (raw).
    Label(String),
    /// `EXPOSE PORT[/PROTO] …` (raw words).
    Expose(Vec<String>),
    /// `USER` (raw).
    User(String),
    /// `WORKDIR` (raw).
    Workdir(String),
    /// `STOPSIGNAL` (raw).
    Stopsignal(String),
    /// `VOLUME` (raw words).
    Volume(Vec<String>),
    /// `CMD`.
    Cmd(CommandForm),
    /// `ENTRYPOINT`.
    Entrypoint(CommandForm),
    /// `SHELL ["exe", "flag"]`.
    Shell(Vec<String>),
    /// `HEALTHCHECK [opts] CMD …` (`None` command: `HEALTHCHECK NONE`).
    Healthcheck {
        /// `--interval=` and the like.
        flags: Vec<Flag>,
        /// The check.
        command: Option<CommandForm>,
    },
    /// `ONBUILD INSTRUCTION` (recorded in the config, the text after ONBUILD).
    Onbuild(String),
    /// `MAINTAINER` (deprecated; recorded as the `author`).
    Maintainer(String),
}

/// An instruction with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The line it starts on (1-based).
    pub line: usize,
    /// Its text as written, continuation lines joined (for progress lines and history).
    pub text: String,
    /// What it is.
    pub instruction: Instruction,
}

/// A parsed Dockerfile: `ARG`s before the first `FROM`, then the stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The `ARG` steps before the first `FROM`.
    pub global_args: Vec<Step>,
    /// The stages, each starting with its `FROM` step.
    pub stages: Vec<Vec<Step>>,
    /// The escape character (`\` unless the `escape` directive says otherwise).
    pub escape: char,
}

/// Parses `text`; `file` names it in errors (`Dockerfile:3: …`).
pub fn parse(text: &str, file: &str) -> Result<Dockerfile, BuildError> {
    let parsed = pd::parse(text).map_err(|e| BuildError::Syntax {
        file: file.to_string(),
        line: e.line(),
        message: first_line(&e.to_string()),
    })?;
    let escape = parsed
        .parser_directives
        .escape
        .as_ref()
        .map(|d| d.value.value)
        .unwrap_or('\\');
    let mut out = Dockerfile {
        global_args: Vec::new(),
        stages: Vec::new(),
        escape,
    };
    for ins in &parsed.instructions {
        let span = span_of(ins);
        let line = line_of(text, span.start);
        let step = Step {
            line,
            text: display_text(&text[span.clone()], escape),
            instruction: convert(ins, text, escape).map_err(|message| BuildError::Syntax {
                file: file.to_string(),
                line,
                message,
            })?,
        };
        match (&step.instruction, out.stages.last_mut()) {
            (Instruction::From { .. }, _) => out.stages.push(vec![step]),
            (Instruction::Arg(_), None) => out.global_args.push(step),
            (_, Some(stage)) => stage.push(step),
            (_, None) => {
                return Err(BuildError::Syntax {
                    file: file.to_string(),
                    line,
                    message: "no FROM before this instruction: a Dockerfile starts with FROM (only ARG may come first)".into(),
                });
            }
        }
    }
    if out.stages.is_empty() {
        return Err(BuildError::Syntax {
            file: file.to_string(),
            line: 1,
            message: "no FROM instruction: the Dockerfile has no stage to build".into(),
        });
    }
    Ok(out)
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim().to_string()
}

/// 1-based line of byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The instruction's text on one line: escaped newlines removed, runs of blanks kept.
fn display_text(raw: &str, escape: char) -> String {
    let joined = join_continuations(raw, escape);
    let mut lines = joined.lines();
    let first = lines.next().unwrap_or("").trim().to_string();
    // Heredoc bodies are not part of the one-line form.
    first
}

/// Removes escape+newline pairs (line continuations) and comment lines inside them.
pub fn join_continuations(raw: &str, escape: char) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == escape {
            // escape, optional trailing blanks, newline
            let mut blanks = String::new();
            while let Some(&b) = chars.peek() {
                if b == ' ' || b == '\t' || b == '\r' {
                    blanks.push(b);
                    chars.next();
                } else {
                    break;
                }
            }
            if chars.peek() == Some(&'\n') {
                chars.next();
                continue;
            }
            out.push(c);
            out.push_str(&blanks);
            continue;
        }
        out.push(c);
    }
    out
}

fn span_of(ins: &pd::Instruction<'_>) -> std::ops::Range<usize> {
    use pd::Instruction as I;
    let start = match ins {
        I::Add(i) => i.add.span.start,
        I::Arg(i) => i.arg.span.start,
        I::Cmd(i) => i.cmd.span.start,
        I::Copy(i) => i.copy.span.start,
        I::Entrypoint(i) => i.entrypoint.span.start,
        I::Env(i) => i.env.span.start,
        I::Expose(i) => i.expose.span.start,
        I::From(i) => i.from.span.start,
        I::Healthcheck(i) => i.healthcheck.span.start,
        I::Label(i) => i.label.span.start,
        I::Maintainer(i) => i.maintainer.span.start,
        I::Onbuild(i) => i.onbuild.span.start,
        I::Run(i) => i.run.span.start,
        I::Shell(i) => i.shell.span.start,
        I::Stopsignal(i) => i.stopsignal.span.start,
        I::User(i) => i.user.span.start,
        I::Volume(i) => i.volume.span.start,
        I::Workdir(i) => i.workdir.span.start,
        _ => 0,
    };
    let end = end_of(ins);
    start..end.max(start)
}

fn end_of(ins: &pd::Instruction<'_>) -> usize {
    use pd::Instruction as I;
    let cmd_end = |c: &pd::Command<'_>| match c {
        pd::Command::Exec(s) => s.span.end,
        pd::Command::Shell(s) => s.span.end,
        _ => 0,
    };
    match ins {
        I::Add(i) => i.dest.span.end,
        I::Copy(i) => i.dest.span.end,
        I::Arg(i) => i.arguments.span.end,
        I::Cmd(i) => cmd_end(&i.arguments),
        I::Entrypoint(i) => cmd_end(&i.arguments),
        I::Env(i) => i.arguments.span.end,
        I::Expose(i) => i
            .arguments
            .last()
            .map(|a| a.span.end)
            .unwrap_or(i.expose.span.end),
        I::From(i) => i
            .as_
            .as_ref()
            .map(|(_, n)| n.span.end)
            .unwrap_or(i.image.span.end),
        I::Healthcheck(i) => match &i.arguments {
            pd::HealthcheckArguments::Cmd { arguments, .. } => cmd_end(arguments),
            pd::HealthcheckArguments::None { none, .. } => none.span.end,
            _ => i.healthcheck.span.end,
        },
        I::Label(i) => i.arguments.span.end,
        I::Maintainer(i) => i.name.span.end,
        I::Onbuild(i) => end_of(&i.instruction),
        I::Run(i) => cmd_end(&i.arguments),
        I::Shell(i) => i
            .arguments
            .last()
            .map(|a| a.span.end)
            .unwrap_or(i.shell.span.end),
        I::Stopsignal(i) => i.arguments.span.end,
        I::User(i) => i.arguments.span.end,
        I::Volume(i) => match &i.arguments {
            pd::JsonOrStringArray::Json(s) => s.span.end,
            pd::JsonOrStringArray::String(v) => {
                v.last().map(|a| a.span.end).unwrap_or(i.volume.span.end)
            }
        },
        I::Workdir(i) => i.arguments.span.end,
        _ => 0,
    }
}

fn flags(list: &[pd::Flag<'_>]) -> Vec<Flag> {
    list.iter()
        .map(|f| Flag {
            name: f.name.value.to_string(),
            value: f.value.as_ref().map(|v| v.value.to_string()),
        })
        .collect()
}

fn command(c: &pd::Command<'_>, escape: char) -> CommandForm {
    match c {
        pd::Command::Exec(s) => {
            CommandForm::Exec(s.value.iter().map(|w| w.value.to_string()).collect())
        }
        pd::Command::Shell(s) => {
            CommandForm::Shell(join_continuations(s.value, escape).trim().to_string())
        }
        _ => CommandForm::Exec(Vec::new()),
    }
}

fn convert(ins: &pd::Instruction<'_>, text: &str, escape: char) -> Result<Instruction, String> {
    use pd::Instruction as I;
    Ok(match ins {
        I::From(i) => {
            let fl = flags(&i.options);
            let mut platform = None;
            for f in fl {
                match f.name.as_str() {
                    "platform" => platform = f.value,
                    other => return Err(format!("FROM: unknown flag --{other} (only --platform)")),
                }
            }
            Instruction::From {
                image: i.image.value.to_string(),
                name: i.as_.as_ref().map(|(_, n)| n.value.to_string()),
                platform,
            }
        }
        I::Run(i) => {
            let command = if i.here_docs.is_empty() {
                command(&i.arguments, escape)
            } else {
                // A shell script with its heredocs: hand the shell the text as written.
                let start = i
                    .options
                    .iter()
                    .map(|f| f.span().end)
                    .max()
                    .unwrap_or(0)
                    .max(i.run.span.end);
                let end = i
                    .here_docs
                    .iter()
                    .map(|h| h.span.end)
                    .max()
                    .unwrap_or(start);
                let script = text[start..end.min(text.len())].trim_start();
                let script = match script.strip_prefix("<<") {
                    // `RUN <<EOF` alone: the heredoc is the script.
                    Some(rest)
                        if !rest.lines().next().unwrap_or("").contains(' ')
                            && i.here_docs.len() == 1 =>
                    {
                        let body = &i.here_docs[0].value;
                        body.strip_prefix('\n').unwrap_or(body).to_string()
                    }
                    _ => script.to_string(),
                };
                CommandForm::Shell(script)
            };
            Instruction::Run {
                flags: flags(&i.options),
                command,
            }
        }
        I::Copy(i) => Instruction::Copy {
            add: false,
            flags: flags(&i.options),
            sources: sources(&i.src),
            dest: i.dest.value.to_string(),
        },
        I::Add(i) => Instruction::Copy {
            add: true,
            flags: flags(&i.options),
            sources: sources(&i.src),
            dest: i.dest.value.to_string(),
        },
        I::Arg(i) => Instruction::Arg(i.arguments.value.to_string()),
        I::Env(i) => Instruction::Env(i.arguments.value.to_string()),
        I::Label(i) => Instruction::Label(i.arguments.value.to_string()),
        I::Expose(i) => {
            Instruction::Expose(i.arguments.iter().map(|a| a.value.to_string()).collect())
        }
        I::User(i) => Instruction::User(i.arguments.value.to_string()),
        I::Workdir(i) => Instruction::Workdir(i.arguments.value.to_string()),
        I::Stopsignal(i) => Instruction::Stopsignal(i.arguments.value.to_string()),
        I::Volume(i) => Instruction::Volume(match &i.arguments {
            pd::JsonOrStringArray::Json(s) => s.value.iter().map(|a| a.value.to_string()).collect(),
            pd::JsonOrStringArray::String(v) => v.iter().map(|a| a.value.to_string()).collect(),
        }),
        I::Cmd(i) => Instruction::Cmd(command(&i.arguments, escape)),
        I::Entrypoint(i) => Instruction::Entrypoint(command(&i.arguments, escape)),
        I::Shell(i) => {
            Instruction::Shell(i.arguments.iter().map(|a| a.value.to_string()).collect())
        }
        I::Healthcheck(i) => Instruction::Healthcheck {
            flags: flags(&i.options),
            command: match &i.arguments {
                pd::HealthcheckArguments::Cmd { arguments, .. } => Some(command(arguments, escape)),
                _ => None,
            },
        },
        I::Onbuild(i) => {
            match &*i.instruction {
                I::Onbuild(_) => return Err("ONBUILD ONBUILD is not allowed".into()),
                I::From(_) => return Err("ONBUILD FROM is not allowed".into()),
                I::Maintainer(_) => return Err("ONBUILD MAINTAINER is not allowed".into()),
                _ => {}
            }
            let inner = span_of(&i.instruction);
            Instruction::Onbuild(join_continuations(&text[inner], escape).trim().to_string())
        }
        I::Maintainer(i) => Instruction::Maintainer(i.name.value.to_string()),
        _ => return Err("unsupported instruction".into()),
    })
}

fn sources(src: &[pd::Source<'_>]) -> Vec<Source> {
    src.iter()
        .map(|s| match s {
            pd::Source::Path(p) => Source::Path(p.value.to_string()),
            pd::Source::HereDoc(h) => Source::Inline {
                body: h.value.strip_prefix('\n').unwrap_or(&h.value).to_string(),
                expand: h.expand,
            },
            _ => Source::Path(String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_args_and_lines() {
        let df = parse(
            "ARG V=1\nFROM busybox AS base\nRUN echo a \\\n  b\nCOPY --chmod=644 a b /d/\n\nFROM base\nCMD [\"sh\"]\n",
            "Dockerfile",
        )
        .unwrap();
        assert_eq!(df.global_args.len(), 1);
        assert_eq!(df.stages.len(), 2);
        let s0 = &df.stages[0];
        assert_eq!(
            s0[0].instruction,
            Instruction::From {
                image: "busybox".into(),
                name: Some("base".into()),
                platform: None
            }
        );
        assert_eq!(s0[1].line, 3);
        assert_eq!(
            s0[1].instruction,
            Instruction::Run {
                flags: vec![],
                command: CommandForm::Shell("echo a   b".into())
            }
        );
        assert_eq!(s0[1].text, "RUN echo a   b");
        match &s0[2].instruction {
            Instruction::Copy {
                add: false,
                flags,
                sources,
                dest,
            } => {
                assert_eq!(flags[0].name, "chmod");
                assert_eq!(sources.len(), 2);
                assert_eq!(dest, "/d/");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            df.stages[1][1].instruction,
            Instruction::Cmd(CommandForm::Exec(vec!["sh".into()]))
        );
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("FROM busybox\nRUN true\nFROB x\n", "Dockerfile").unwrap_err();
        assert!(e.to_string().starts_with("Dockerfile:3:"), "{e}");
        let e = parse("RUN true\n", "Dockerfile").unwrap_err();
        assert!(e.to_string().starts_with("Dockerfile:1:"), "{e}");
    }

    #[test]
    fn heredoc_run_and_escape_directive() {
        let df = parse(
            "FROM busybox\nRUN <<EOF\necho one\necho two\nEOF\n",
            "Dockerfile",
        )
        .unwrap();
        assert_eq!(
            df.stages[0][1].instruction,
            Instruction::Run {
                flags: vec![],
                command: CommandForm::Shell("echo one\necho two\n".into())
            }
        );
        let df = parse(
            "# escape=`\nFROM busybox\nRUN echo a `\n  b\n",
            "Dockerfile",
        )
        .unwrap();
        assert_eq!(df.escape, '`');
        assert_eq!(
            df.stages[0][1].instruction,
            Instruction::Run {
                flags: vec![],
                command: CommandForm::Shell("echo a   b".into())
            }
        );
    }
}
