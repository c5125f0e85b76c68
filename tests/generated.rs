//! completions/ and man/ are generated from the clap definition and committed; this test fails when
//! they drift from the CLI. Regenerate with `TCPHB_REGENERATE=1 cargo test --test generated`.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;
use tcphb::cli::Cli;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every generated file: (path relative to the crate root, contents).
fn generated() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for shell in [
        Shell::Bash,
        Shell::Zsh,
        Shell::Fish,
        Shell::Elvish,
        Shell::PowerShell,
    ] {
        let mut cmd = Cli::command();
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, "tcphb", &mut buf);
        let name = match shell {
            Shell::Bash => "tcphb.bash".to_string(),
            Shell::Zsh => "_tcphb".to_string(),
            Shell::Fish => "tcphb.fish".to_string(),
            Shell::Elvish => "tcphb.elv".to_string(),
            Shell::PowerShell => "_tcphb.ps1".to_string(),
            _ => unreachable!(),
        };
        files.push((Path::new("completions").join(name), buf));
    }
    let mut cmd = Cli::command();
    cmd.build();
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf).unwrap();
    files.push((PathBuf::from("man/tcphb.1"), buf));
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("tcphb-{}", sub.get_name());
        let sub = sub.clone().name(name.clone());
        let mut buf = Vec::new();
        clap_mangen::Man::new(sub).render(&mut buf).unwrap();
        files.push((Path::new("man").join(format!("{name}.1")), buf));
    }
    files
}

#[test]
fn completions_and_man_pages_match_the_cli() {
    let regenerate = std::env::var_os("TCPHB_REGENERATE").is_some();
    let mut stale = Vec::new();
    for (rel, want) in generated() {
        let path = root().join(&rel);
        if regenerate {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &want).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(&want[..]) {
            stale.push(rel.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "generated files drifted from the CLI: {stale:?}; run TCPHB_REGENERATE=1 cargo test --test generated"
    );
}

#[test]
fn help_documents_exit_codes_and_examples() {
    let help = Cli::command().render_long_help().to_string();
    for needle in [
        "Exit codes:",
        "3    a dead connection was detected",
        "4    this environment",
        "130  interrupted",
        "tcphb connect",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}");
    }
}
