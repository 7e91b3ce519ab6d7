//! `fl fn build`: a function's source folder (or one Python file) to the file that is
//! uploaded, by its language's build step ([`crate::templates::BuildStep`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::python;
use crate::templates::{self, BuildStep, Language};

/// The WebAssembly target functions are built for.
pub(crate) const WASM_TARGET: &str = "wasm32-wasip1";

/// What a build produced.
#[derive(Debug)]
pub(crate) struct Built {
    /// The file to upload: in the source's build output, the source file itself, or in a
    /// scratch folder that lives as long as this value.
    pub(crate) path: PathBuf,
    /// The source's language.
    pub(crate) language: &'static Language,
    _scratch: Option<python::Scratch>,
}

/// Builds `source` (a function's folder, or one `.py` file) into the file to upload.
pub(crate) fn build(source: &Path, language: Option<&'static Language>) -> Result<Built> {
    if source.is_file() && python::is_python_file(source) {
        return build_python_file(source);
    }
    if !source.is_dir() {
        bail!("{} is not a folder (nor a .py file)", source.display());
    }
    let language = match language {
        Some(language) => language,
        None => templates::detect(source)?,
    };
    if !source.join(language.marker).is_file() {
        bail!(
            "{} has no {}: it is not a {} function's folder",
            source.display(),
            language.marker,
            language.name
        );
    }
    let built = match language.build {
        BuildStep::Cargo => cargo_build(source)?,
        BuildStep::Source { entry, .. } => {
            source.join(source_entry(source)?.unwrap_or(entry.into()))
        }
        BuildStep::Python => python::build_folder(source)?,
    };
    if !built.is_file() {
        bail!("{} was not found after the build", built.display());
    }
    Ok(Built {
        path: built,
        language,
        _scratch: None,
    })
}

/// Builds one `.py` file defining `main(args)` (`fl fn upload NAME hello.py`).
pub(crate) fn build_python_file(file: &Path) -> Result<Built> {
    let scratch = python::Scratch::new()?;
    let path = python::build_file(file, &scratch)?;
    Ok(Built {
        path,
        language: templates::parse_language("python").map_err(anyhow::Error::msg)?,
        _scratch: Some(scratch),
    })
}

/// The extension of what a language's build produces.
pub(crate) fn extension(language: &Language) -> &'static str {
    match language.build {
        BuildStep::Cargo | BuildStep::Python => "wasm",
        BuildStep::Source { extension, .. } => extension,
    }
}

/// `main` of the folder's package.json, if it names one.
fn source_entry(source: &Path) -> Result<Option<String>> {
    let path = source.join("package.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(json["main"].as_str().map(str::to_string))
}

/// Runs cargo in `source` and returns the cdylib's `.wasm`, found in cargo's own report of
/// what it built (so a custom target folder or package name needs no guessing).
fn cargo_build(source: &Path) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .args(["build", "--release", "--target", WASM_TARGET])
        .arg("--message-format=json-render-diagnostics")
        .current_dir(source)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {} (is Rust installed?)", cargo.to_string_lossy()))?;
    if !output.status.success() {
        bail!(
            "cargo build failed in {} (the {WASM_TARGET} target is needed: rustup target add {WASM_TARGET})",
            source.display()
        );
    }
    wasm_artifact(&String::from_utf8_lossy(&output.stdout)).with_context(|| {
        format!(
            "cargo built no WebAssembly library in {}: a function's Cargo.toml needs crate-type = [\"cdylib\"]",
            source.display()
        )
    })
}

/// The `.wasm` of the last cdylib in cargo's JSON messages.
fn wasm_artifact(messages: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"))
        })
        .filter_map(|m| {
            m["filenames"].as_array().and_then(|files| {
                files
                    .iter()
                    .filter_map(|f| f.as_str())
                    .find(|f| f.ends_with(".wasm"))
                    .map(PathBuf::from)
            })
        })
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wasm_comes_from_cargo_s_report() {
        let messages = concat!(
            "{\"reason\":\"compiler-artifact\",\"target\":{\"kind\":[\"lib\"]},\"filenames\":[\"/t/libserde.rlib\"]}\n",
            "not json\n",
            "{\"reason\":\"compiler-artifact\",\"target\":{\"kind\":[\"cdylib\"]},\"filenames\":[\"/t/wasm32-wasip1/release/hello.wasm\"]}\n",
            "{\"reason\":\"build-finished\",\"success\":true}\n",
        );
        assert_eq!(
            wasm_artifact(messages),
            Some(PathBuf::from("/t/wasm32-wasip1/release/hello.wasm"))
        );
        assert_eq!(wasm_artifact("{\"reason\":\"build-finished\"}"), None);
    }

    #[test]
    fn a_script_folder_builds_to_its_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let js = templates::parse_language("js").expect("js");
        let made = templates::create(js, "hi", dir.path(), dir.path()).expect("creates");
        let built = build(&made, None).expect("builds");
        assert_eq!(
            (built.path, built.language.name),
            (made.join("index.js"), "js")
        );
        assert!(build(dir.path(), None).is_err(), "no marker file");
    }
}
