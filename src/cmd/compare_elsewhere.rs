//! `compare` where there is no lab (not Linux): one clear refusal, exit 4.

/// Refuse: `compare` builds its lab from Linux network namespaces.
pub fn run(_: &crate::cli::CompareArgs, _: crate::report::Format) -> anyhow::Result<u8> {
    Err(crate::exit::CliError::Environment(
        "compare builds its lab from Linux network namespaces: run it on Linux (a VM or container will do)".into(),
    )
    .into())
}
