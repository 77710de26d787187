//! The `xrun` command line: a thin layer over the library's stages.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
