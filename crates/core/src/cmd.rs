//! Commands as values. Builders are pure functions returning a [`Cmd`]; executors run them.
//!
//! Invariant: this module never spawns a process, and [`quote`] is the only shell quoting in the
//! product. Every remote command line is produced by [`Cmd::render`], which quotes every argument.
//! Fixed shell logic lives in `'static` scripts (see [`Cmd::script`]) that receive user data only as
//! quoted positional parameters, so no value is ever glued into shell text.

use std::fmt;

use crate::secret::{Secret, REDACTED};

/// Quote one word for a POSIX shell: returned unchanged when it is made only of characters no shell
/// treats specially, otherwise wrapped in single quotes with each `'` written as `'\''`.
/// Works for every string without NUL (which no command line can carry).
pub fn quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'_' | b'-' | b'.' | b'/' | b':' | b'@' | b'%' | b'+' | b'=' | b',')
        })
        && !s.starts_with('=');
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// One argument: plain, or secret (redacted in every display of the command).
#[derive(Clone, PartialEq, Eq)]
pub enum Arg {
    Plain(String),
    Secret(Secret),
}

impl Arg {
    fn real(&self) -> &str {
        match self {
            Arg::Plain(s) => s,
            Arg::Secret(s) => s.expose(),
        }
    }
}

impl fmt::Debug for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Plain(s) => write!(f, "{s:?}"),
            Arg::Secret(_) => f.write_str(REDACTED),
        }
    }
}

impl From<&str> for Arg {
    fn from(s: &str) -> Self {
        Arg::Plain(s.to_string())
    }
}
impl From<String> for Arg {
    fn from(s: String) -> Self {
        Arg::Plain(s)
    }
}
impl From<&String> for Arg {
    fn from(s: &String) -> Self {
        Arg::Plain(s.clone())
    }
}
impl From<Secret> for Arg {
    fn from(s: Secret) -> Self {
        Arg::Secret(s)
    }
}

#[derive(Clone, PartialEq, Eq, Debug)]
enum Node {
    /// `K=V … program args…`
    Exec { env: Vec<(String, Arg)>, argv: Vec<Arg> },
    /// `sh -c SCRIPT gangplank ARGS…`: fixed logic, data as positional parameters.
    Script { script: &'static str, args: Vec<Arg> },
    /// `cd DIR && CMD`
    InDir { dir: String, cmd: Box<Cmd> },
}

/// A command to run on a host, built as data.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Cmd {
    node: Node,
    privileged: bool,
    /// How long the command may take before the executor gives up on it (and on the host); `None`
    /// is the executor's default. Not part of the command line.
    timeout: Option<std::time::Duration>,
    /// A secret the command reads on its standard input (`docker login --password-stdin`): it travels
    /// only on the channel's stdin, never on the command line, in a file or in any display.
    stdin: Option<Secret>,
}

impl Cmd {
    /// `program` with no arguments yet.
    pub fn new(program: impl Into<String>) -> Cmd {
        Cmd {
            node: Node::Exec { env: Vec::new(), argv: vec![Arg::Plain(program.into())] },
            privileged: false,
            timeout: None,
            stdin: None,
        }
    }

    /// A fixed POSIX `sh` script; data reaches it only as `$1`, `$2`… added with [`Cmd::arg`].
    pub fn script(script: &'static str) -> Cmd {
        Cmd { node: Node::Script { script, args: Vec::new() }, privileged: false, timeout: None, stdin: None }
    }

    pub fn arg(mut self, a: impl Into<Arg>) -> Cmd {
        match &mut self.node {
            Node::Exec { argv, .. } => argv.push(a.into()),
            Node::Script { args, .. } => args.push(a.into()),
            _ => panic!("arg() on a joined command: add arguments before joining"),
        }
        self
    }

    pub fn args<I, A>(mut self, items: I) -> Cmd
    where
        I: IntoIterator<Item = A>,
        A: Into<Arg>,
    {
        for a in items {
            self = self.arg(a);
        }
        self
    }

    /// An argument that is redacted in every display of the command.
    pub fn secret_arg(self, s: &Secret) -> Cmd {
        self.arg(Arg::Secret(s.clone()))
    }

    /// Set an environment variable for this command only (`K=V cmd`).
    pub fn env(mut self, key: &str, value: impl Into<Arg>) -> Cmd {
        assert!(
            !key.is_empty()
                && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !key.as_bytes()[0].is_ascii_digit(),
            "environment variable name {key:?} is not valid"
        );
        match &mut self.node {
            Node::Exec { env, .. } => env.push((key.to_string(), value.into())),
            _ => panic!("env() is only for simple commands"),
        }
        self
    }

    /// Run in `dir` (`cd DIR && CMD`).
    pub fn in_dir(self, dir: impl Into<String>) -> Cmd {
        let privileged = self.privileged;
        let timeout = self.timeout;
        let stdin = self.stdin.clone();
        Cmd { node: Node::InDir { dir: dir.into(), cmd: Box::new(self) }, privileged, timeout, stdin }
    }

    /// Mark as needing root: rendered with `sudo -n` when the step runs with `sudo: true`.
    pub fn privileged(mut self) -> Cmd {
        self.privileged = true;
        self
    }

    /// Give the command its own deadline (a pull may take minutes; a state read must not).
    pub fn timeout(mut self, d: std::time::Duration) -> Cmd {
        self.timeout = Some(d);
        self
    }

    /// Feed `s` to the command's standard input ([`crate::exec::Executor::run`] sends it): the way a
    /// secret reaches a remote program without a command line or a file.
    pub fn secret_stdin(mut self, s: &Secret) -> Cmd {
        self.stdin = Some(s.clone());
        self
    }

    /// The secret this command reads on stdin, for the executor only.
    pub fn stdin_secret(&self) -> Option<&Secret> {
        self.stdin.as_ref()
    }

    pub fn get_timeout(&self) -> Option<std::time::Duration> {
        self.timeout
    }

    fn write(&self, out: &mut String, show: &dyn Fn(&Arg) -> String) {
        match &self.node {
            Node::Exec { env, argv } => {
                let mut words: Vec<String> = env.iter().map(|(k, v)| format!("{k}={}", show(v))).collect();
                words.extend(argv.iter().map(show));
                out.push_str(&words.join(" "));
            }
            Node::Script { script, args } => {
                out.push_str("sh -c ");
                out.push_str(&quote(script));
                out.push_str(" gangplank");
                for a in args {
                    out.push(' ');
                    out.push_str(&show(a));
                }
            }
            Node::InDir { dir, cmd } => {
                out.push_str("cd ");
                out.push_str(&quote(dir));
                out.push_str(" && ");
                cmd.write(out, show);
            }
        }
    }

    fn render_with(&self, sudo: bool, show: &dyn Fn(&Arg) -> String) -> String {
        let mut inner = String::new();
        self.write(&mut inner, show);
        if !(sudo && self.privileged) {
            return inner;
        }
        match &self.node {
            Node::Exec { env, .. } if env.is_empty() => format!("sudo -n {inner}"),
            // sudo resets the environment and cannot run `cd`: hand the whole line to a root shell.
            _ => format!("sudo -n sh -c {}", quote(&inner)),
        }
    }

    /// The real command line, secrets included: only for handing to a shell, never for printing.
    pub fn render(&self, sudo: bool) -> String {
        self.render_with(sudo, &|a| quote(a.real()))
    }

    /// The command line for logs and plans: secret arguments show as `[REDACTED]`.
    pub fn display(&self, sudo: bool) -> String {
        self.render_with(sudo, &|a| match a {
            Arg::Plain(s) => quote(s),
            Arg::Secret(_) => REDACTED.to_string(),
        })
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_leaves_plain_words_alone() {
        assert_eq!(quote("docker"), "docker");
        assert_eq!(quote("/opt/my-app/compose.yaml"), "/opt/my-app/compose.yaml");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn quote_wraps_everything_else() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("$HOME;rm -rf /|x&`id`\"\n"), "'$HOME;rm -rf /|x&`id`\"\n'");
        assert_eq!(quote("~root"), "'~root'");
        assert_eq!(quote("*"), "'*'");
    }

    #[test]
    fn simple_command_with_env_and_quoting() {
        let c = Cmd::new("docker").args(["compose", "-p", "my app"]).env("IMAGE_TAG", "v1;id").arg("it's \"$x\"\n");
        assert_eq!(c.render(false), "IMAGE_TAG='v1;id' docker compose -p 'my app' 'it'\\''s \"$x\"\n'");
    }

    #[test]
    fn secrets_are_redacted_in_display_only() {
        let s = Secret::new("pa$$word-canary");
        let c = Cmd::new("login").secret_arg(&s);
        assert_eq!(c.display(false), "login [REDACTED]");
        assert_eq!(c.render(false), "login 'pa$$word-canary'");
        assert!(!format!("{c:?}").contains("canary"));
        let c = Cmd::new("docker").args(["login", "--password-stdin"]).secret_stdin(&s);
        assert_eq!(c.render(false), "docker login --password-stdin");
        assert!(!format!("{c:?}").contains("canary") && !c.display(true).contains("canary"));
        assert_eq!(c.stdin_secret().map(|s| s.expose()), Some("pa$$word-canary"));
    }

    #[test]
    fn scripts_take_data_as_positional_parameters() {
        let c = Cmd::script(r#"mkdir -p "$1""#).arg("/opt/a b");
        assert_eq!(c.render(false), r#"sh -c 'mkdir -p "$1"' gangplank '/opt/a b'"#);
    }

    #[test]
    fn directories() {
        let c = Cmd::new("docker").arg("ps").env("IMAGE_TAG", "v1").in_dir("/opt/x y;$z");
        assert_eq!(c.render(false), "cd '/opt/x y;$z' && IMAGE_TAG=v1 docker ps");
        assert_eq!(c.privileged().render(true), "sudo -n sh -c 'cd '\\''/opt/x y;$z'\\'' && IMAGE_TAG=v1 docker ps'");
    }

    #[test]
    fn sudo_applies_only_to_privileged_commands() {
        let c = Cmd::new("docker").arg("ps");
        assert_eq!(c.render(true), "docker ps");
        let p = c.clone().privileged();
        assert_eq!(p.render(true), "sudo -n docker ps");
        assert_eq!(p.render(false), "docker ps");
        let e = Cmd::new("docker").env("IMAGE_TAG", "v1").privileged();
        assert_eq!(e.render(true), "sudo -n sh -c 'IMAGE_TAG=v1 docker'");
    }
}
