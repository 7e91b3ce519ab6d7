//! The languages `fl fn new`, `fn build` and `fn create` know, each with its project template
//! (compiled into `fl` with `include_str!`, so `fn new` needs no network) and its build step.
//! Adding a language is one more entry in [`LANGUAGES`] and its files under `cli/templates/`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// One file of a template: its path in the new folder, and its text, where `{{name}}` is the
/// function's name and `{{crate}}` a package name made from it.
pub(crate) struct TemplateFile {
    path: &'static str,
    text: &'static str,
}

/// How a source folder becomes the file to upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BuildStep {
    /// `cargo build --release --target wasm32-wasip1`: a WebAssembly module.
    Cargo,
    /// Nothing to compile: the source file itself (`main` of package.json, else the default
    /// entry), run by the workers' engine for the language.
    Source {
        /// The entry file when the folder does not name one.
        entry: &'static str,
        /// The uploaded file's extension.
        extension: &'static str,
    },
    /// componentize-py: `app.py`'s `main(args)`, CPython and the requirements packed into
    /// one WebAssembly component ([`crate::python`]).
    Python,
}

/// A language functions can be written in.
pub(crate) struct Language {
    /// Its name on the command line (`-l rust`).
    pub(crate) name: &'static str,
    /// A file whose presence marks a source folder of this language.
    pub(crate) marker: &'static str,
    /// Its build step.
    pub(crate) build: BuildStep,
    files: &'static [TemplateFile],
}

impl std::fmt::Debug for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Every language, in the order `fn build` tries their markers.
pub(crate) static LANGUAGES: &[Language] = &[
    Language {
        name: "rust",
        marker: "Cargo.toml",
        build: BuildStep::Cargo,
        files: &[
            TemplateFile {
                path: "Cargo.toml",
                text: include_str!("../templates/rust/Cargo.toml"),
            },
            TemplateFile {
                path: "src/lib.rs",
                text: include_str!("../templates/rust/src/lib.rs"),
            },
            TemplateFile {
                path: ".gitignore",
                text: include_str!("../templates/rust/gitignore"),
            },
        ],
    },
    Language {
        name: "js",
        marker: "package.json",
        build: BuildStep::Source {
            entry: "index.js",
            extension: "js",
        },
        files: &[
            TemplateFile {
                path: "index.js",
                text: include_str!("../templates/js/index.js"),
            },
            TemplateFile {
                path: "package.json",
                text: include_str!("../templates/js/package.json"),
            },
        ],
    },
    Language {
        name: "python",
        marker: crate::python::ENTRY,
        build: BuildStep::Python,
        files: &[
            TemplateFile {
                path: "app.py",
                text: include_str!("../templates/python/app.py"),
            },
            TemplateFile {
                path: "requirements.txt",
                text: include_str!("../templates/python/requirements.txt"),
            },
            TemplateFile {
                path: ".gitignore",
                text: include_str!("../templates/python/gitignore"),
            },
        ],
    },
];

/// `-l LANG`: a language of [`LANGUAGES`] (`javascript` is `js`, `py` is `python`).
pub(crate) fn parse_language(s: &str) -> Result<&'static Language, String> {
    let wanted = match s.trim().to_ascii_lowercase().as_str() {
        "javascript" => "js".to_string(),
        "py" => "python".to_string(),
        other => other.to_string(),
    };
    LANGUAGES.iter().find(|l| l.name == wanted).ok_or_else(|| {
        let names: Vec<&str> = LANGUAGES.iter().map(|l| l.name).collect();
        format!("unknown language {s:?}: use one of {}", names.join(", "))
    })
}

/// The language of a source folder, from its marker files.
pub(crate) fn detect(source: &Path) -> Result<&'static Language> {
    LANGUAGES
        .iter()
        .find(|l| source.join(l.marker).is_file())
        .with_context(|| {
            let markers: Vec<String> = LANGUAGES
                .iter()
                .map(|l| format!("{} ({})", l.marker, l.name))
                .collect();
            format!(
                "cannot tell the language of {}: it has none of {}; give --language",
                source.display(),
                markers.join(", ")
            )
        })
}

/// A package name for the function `name` (names are letters, digits and `_`; a package
/// name must not start with a digit).
fn crate_name(name: &str) -> String {
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("fn_{name}")
    } else {
        name.to_string()
    }
}

/// Creates `out_dir/name` from FunLess's `template_dir/template/<lang>` folder when there is
/// one (what FunLess's `fl fn new` uses), else from the template inside `fl`. Returns the
/// folder.
pub(crate) fn create(
    language: &Language,
    name: &str,
    template_dir: &Path,
    out_dir: &Path,
) -> Result<PathBuf> {
    let dest = out_dir.join(name);
    if dest.exists() {
        bail!("{} already exists", dest.display());
    }
    let funless_template = template_dir.join("template").join(language.name);
    if funless_template.is_dir() {
        copy_dir(&funless_template, &dest)?;
        return Ok(dest);
    }
    for file in language.files {
        let path = dest.join(file.path);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = file
            .text
            .replace("{{name}}", name)
            .replace("{{crate}}", &crate_name(name));
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(dest)
}

/// Copies a folder and everything in it.
pub(crate) fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)
                .with_context(|| format!("copying to {}", target.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_has_its_marker_in_its_template() {
        for language in LANGUAGES {
            assert!(
                language.files.iter().any(|f| f.path == language.marker),
                "{}",
                language.name
            );
            assert_eq!(
                parse_language(language.name).map(|l| l.name),
                Ok(language.name)
            );
        }
        assert_eq!(parse_language("JavaScript").map(|l| l.name), Ok("js"));
        assert_eq!(parse_language("py").map(|l| l.name), Ok("python"));
        assert!(parse_language("cobol").is_err());
    }

    #[test]
    fn new_folders_are_made_from_the_template_and_never_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rust = parse_language("rust").expect("rust");
        let made = create(rust, "9lives", dir.path(), dir.path()).expect("creates");
        let manifest = fs::read_to_string(made.join("Cargo.toml")).expect("manifest");
        assert!(manifest.contains("name = \"fn_9lives\""), "{manifest}");
        assert!(made.join("src/lib.rs").is_file());
        assert_eq!(detect(&made).map(|l| l.name).ok(), Some("rust"));
        assert!(create(rust, "9lives", dir.path(), dir.path()).is_err());

        // FunLess's template folder, when there is one, wins.
        let own = dir.path().join("template/js");
        fs::create_dir_all(&own).expect("mkdir");
        fs::write(own.join("main.js"), "function fl_main(a) { return a; }").expect("write");
        let js = parse_language("js").expect("js");
        let made = create(js, "echo", dir.path(), &dir.path().join("out")).expect("creates");
        assert!(made.join("main.js").is_file());
        assert!(!made.join("index.js").exists());

        // Python: the user's main, the requirements, nothing of the platform's plumbing.
        let python = parse_language("python").expect("python");
        let made = create(python, "greet", dir.path(), dir.path()).expect("creates");
        let app = fs::read_to_string(made.join("app.py")).expect("app.py");
        assert!(app.contains("def main(args: dict) -> dict:"), "{app}");
        assert!(app.contains("`greet`") && !app.contains("{{"), "{app}");
        assert!(made.join("requirements.txt").is_file());
        assert_eq!(detect(&made).map(|l| l.name).ok(), Some("python"));
        assert_eq!(fs::read_dir(&made).expect("lists").count(), 3);
    }
}
