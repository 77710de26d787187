//! [`Engine::exec_command`]: exec as a child process whose standard streams the caller
//! holds, for front ends that relay them (the API service), so the caller itself never
//! joins a container.

use std::process::Command;

use super::{Engine, EngineError, ExecSpec};

impl Engine {
    /// The command that runs `spec` in container `key`: this xrun binary's `exec` on the same
    /// root. The caller sets its standard streams (pipes, or the slave of a terminal it holds
    /// the master of) and reads its exit status: the command's exit code, or 125/126/127 as
    /// `xrun exec` gives them. The child seals itself before it joins the container.
    pub fn exec_command(&self, key: &str, spec: &ExecSpec) -> Result<Command, EngineError> {
        if spec.command.is_empty() {
            return Err(EngineError::Invalid("exec needs a command".into()));
        }
        let exe = crate::runtime::seal::original_exe()?;
        let mut cmd = Command::new(exe);
        cmd.arg("--root").arg(self.root()).arg("exec");
        if spec.interactive {
            cmd.arg("-i");
        }
        if spec.tty {
            cmd.arg("-t");
        }
        for e in &spec.env {
            cmd.arg("-e").arg(e);
        }
        if let Some(w) = &spec.workdir {
            cmd.arg("-w").arg(w);
        }
        if let Some(u) = &spec.user {
            cmd.arg("-u").arg(u);
        }
        cmd.arg(key).args(&spec.command);
        Ok(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_is_xrun_exec_on_the_same_root() {
        let e = Engine::open("/tmp/some-root");
        let spec = ExecSpec {
            command: vec!["sh".into(), "-c".into(), "echo hi".into()],
            env: vec!["A=1".into()],
            interactive: true,
            tty: true,
            workdir: Some("/tmp".into()),
            user: Some("1000:1000".into()),
        };
        let cmd = e.exec_command("c1", &spec).unwrap();
        let args: Vec<_> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--root",
                "/tmp/some-root",
                "exec",
                "-i",
                "-t",
                "-e",
                "A=1",
                "-w",
                "/tmp",
                "-u",
                "1000:1000",
                "c1",
                "sh",
                "-c",
                "echo hi"
            ]
        );
        assert!(e.exec_command("c1", &ExecSpec::default()).is_err());
    }
}
