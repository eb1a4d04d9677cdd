//! `cargo xtask public-api [--check]`: the public API of every library
//! crate, one item per line, in `crates/<name>/public-api.txt`, so that a
//! change of the API shows in review. Rendered by the `public-api` crate
//! (the library of `cargo public-api`) from rustdoc JSON, which only the
//! nightly toolchain writes; blanket, auto-trait and derived impls are
//! left out.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The crates whose API is recorded, with the features documented (the
/// facade's every feature, so that every scheme and layer is listed).
const CRATES: [(&str, &[&str]); 10] = [
    ("storage", &["--all-features"]),
    ("storage-core", &[]),
    ("storage-disk", &[]),
    ("storage-s3", &[]),
    ("storage-azure", &["--all-features"]),
    ("storage-gcs", &[]),
    ("storage-retry", &[]),
    ("storage-crypto", &[]),
    ("storage-conformance", &["--all-features"]),
    ("storage-object-store", &[]),
];

/// Writes (or with `check`, compares) every crate's listing.
///
/// # Errors
/// A failed nightly rustdoc run or an unreadable JSON file; with `check`,
/// a listing that differs from the committed one is reported and the exit
/// code is a failure.
pub fn main(check: bool) -> anyhow::Result<ExitCode> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow::anyhow!("xtask has no parent directory"))?
        .to_path_buf();
    // Nightly artifacts are kept apart from the stable build's.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("nightly-rustdoc");
    let mut stale = Vec::new();
    for (name, features) in CRATES {
        let status = Command::new("cargo")
            .args(["+nightly", "rustdoc", "--quiet", "--lib", "-p", name])
            .args(features)
            .arg("--target-dir")
            .arg(&target)
            .args(["--", "-Z", "unstable-options", "--output-format", "json"])
            .current_dir(&workspace)
            .status()?;
        anyhow::ensure!(status.success(), "nightly rustdoc of {name} failed");
        let json = target
            .join("doc")
            .join(format!("{}.json", name.replace('-', "_")));
        let api = public_api::Builder::from_rustdoc_json(&json)
            .omit_blanket_impls(true)
            .omit_auto_trait_impls(true)
            .omit_auto_derived_impls(true)
            .build()?;
        let listing: String = api.items().map(|item| format!("{item}\n")).collect();
        let file = workspace.join("crates").join(name).join("public-api.txt");
        let committed = std::fs::read_to_string(&file).unwrap_or_default();
        if committed == listing {
            continue;
        }
        if check {
            stale.push(name);
        } else {
            std::fs::write(&file, listing)?;
            eprintln!("wrote {}", file.display());
        }
    }
    if stale.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "the public API of {} changed: run `cargo xtask public-api` and commit the listings",
        stale.join(", ")
    );
    Ok(ExitCode::FAILURE)
}
