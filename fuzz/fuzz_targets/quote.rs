//! Shell quoting (`gangplank_core::quote`, `Cmd::render`): every shell argument of the product goes
//! through it. Input: NUL-separated strings (NUL itself cannot be in an argument). Properties:
//! - `quote(s)` is one shell word whose value is `s` (checked against a model of POSIX token recognition
//!   and quote removal, `gangplank_fuzz::sh_words`), with nothing a shell would expand or interpret;
//! - a whole rendered command (`cd DIR && K=V prog args…`, and its `sudo -n sh -c '…'` form) splits into
//!   exactly the words it was built from, the inner line of the `sudo` form too;
//! - one input in 16 also runs the rendered line through the real `/bin/sh` and compares the arguments
//!   `printf` received with the ones given.
#![no_main]

use gangplank_core::{quote, Cmd};
use gangplank_fuzz::sh_words;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(text) = gangplank_fuzz::text(data) else { return };
    let args: Vec<&str> = text.split('\0').collect();
    for a in &args {
        let q = quote(a);
        assert_eq!(sh_words(&q), Ok(vec![a.to_string()]), "quote({a:?}) = {q}");
    }
    let (dir, value, rest) = (args[0], args.get(1).copied().unwrap_or(""), args.get(2..).unwrap_or(&[]));
    let cmd = Cmd::new("printf").arg("%s\\000").args(rest.iter().copied()).env("K", value);
    let want: Vec<String> = ["K=".to_string() + value, "printf".into(), "%s\\000".into()]
        .into_iter()
        .chain(rest.iter().map(|s| s.to_string()))
        .collect();
    assert_eq!(sh_words(&cmd.render(true)).as_ref(), Ok(&want), "unprivileged command is not run by sudo");
    let in_dir = cmd.clone().in_dir(dir).privileged();
    let mut want_dir = vec!["cd".to_string(), dir.to_string(), "&&".into()];
    want_dir.extend(want.iter().cloned());
    assert_eq!(sh_words(&in_dir.render(false)), Ok(want_dir.clone()));
    let sudo = sh_words(&in_dir.render(true)).expect("sudo line splits");
    assert_eq!(sudo[..4], ["sudo", "-n", "sh", "-c"], "{sudo:?}");
    assert_eq!(sudo.len(), 5, "{sudo:?}");
    assert_eq!(sh_words(&sudo[4]), Ok(want_dir), "inner line of the sudo form");
    if gangplank_fuzz::one_in(data, 16) {
        let line = Cmd::new("printf").arg("%s\\000").args(args.iter().copied()).render(false);
        let out = std::process::Command::new("/bin/sh").arg("-c").arg(&line).output().expect("run /bin/sh");
        assert!(out.status.success(), "sh failed on {line:?}: {}", String::from_utf8_lossy(&out.stderr));
        let mut got: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
        assert_eq!(got.pop(), Some(&b""[..]), "output does not end in NUL");
        let want: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        assert_eq!(got, want, "the shell passed other arguments for {line:?}");
    }
});
