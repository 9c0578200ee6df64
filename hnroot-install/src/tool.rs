//! Running the system's tools (wipefs, sgdisk, mkfs, ssh-keygen, ...): the output on success; on
//! failure an error naming the command line and carrying what the tool wrote to stderr.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// Run `cmd` to completion; its standard output.
pub fn run(cmd: &mut Command) -> Result<String> {
    run_with_hint(cmd, "is it installed?")
}

/// As [`run`], with `hint` (such as "is openssh-client installed?") added when the program
/// cannot be started.
pub fn run_with_hint(cmd: &mut Command, hint: &str) -> Result<String> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {shown} ({hint})"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_on_success_and_stderr_with_the_command_on_failure() {
        assert_eq!(
            run(Command::new("sh").args(["-c", "echo hello"])).unwrap(),
            "hello\n"
        );
        let e = run(Command::new("sh").args(["-c", "echo broken >&2; exit 3"])).unwrap_err();
        let text = format!("{e:#}");
        assert!(
            text.contains("sh -c echo broken >&2; exit 3 failed"),
            "{text}"
        );
        assert!(
            text.contains("exit status: 3") && text.ends_with("broken"),
            "{text}"
        );
        let e = run_with_hint(
            &mut Command::new("/nonexistent/hnroot-no-such-tool"),
            "is hnroot-tools installed?",
        )
        .unwrap_err();
        let text = format!("{e:#}");
        assert!(
            text.contains(
                "cannot start /nonexistent/hnroot-no-such-tool (is hnroot-tools installed?)"
            ),
            "{text}"
        );
    }
}
