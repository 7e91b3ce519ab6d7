//! `fail` (WASI command ABI): always fails, writing `intentional failure` to stderr and exiting
//! with status 3 (stdin is not read).

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("intentional failure");
    ExitCode::from(3)
}
