//! How a test shows what a command it ran said.

use std::process::Output;

/// A command's exit status, stdout and stderr, for an assertion message.
pub fn describe(output: &Output) -> String {
    format!(
        "({})\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
