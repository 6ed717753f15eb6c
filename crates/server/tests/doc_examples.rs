//! Every configuration example in the documentation loads through the real configuration
//! loader: each ```toml block and each `VOXTRAIL_…=…` example of README.md, docs/api.md and
//! docs/operations.md. A broken example fails here, not in a new user's shell.

use std::path::PathBuf;

use voxtrail_server::config::Config;

/// The documents whose examples are checked, relative to the workspace root.
const DOCS: [&str; 3] = ["README.md", "docs/api.md", "docs/operations.md"];

/// `VOXTRAIL_*` variables the documentation names that are not configuration settings.
const NOT_SETTINGS: [&str; 1] = ["VOXTRAIL_LOG"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(doc: &str) -> String {
    std::fs::read_to_string(root().join(doc)).unwrap_or_else(|e| panic!("reading {doc}: {e}"))
}

/// The bodies of the ```toml blocks of a Markdown text.
fn toml_blocks(md: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in md.lines() {
        let fence = line.trim_start();
        match &mut current {
            None if fence.starts_with("```toml") => current = Some(String::new()),
            Some(body) if fence.starts_with("```") => {
                blocks.push(std::mem::take(body));
                current = None;
            }
            Some(body) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    assert!(current.is_none(), "an unclosed ```toml block");
    blocks
}

/// Every `VOXTRAIL_NAME=value` of a text, the value unquoted as a POSIX shell would
/// (`'"404"'` is `"404"`). A value ends at a blank or a backtick (examples sit in inline code).
fn env_examples(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("VOXTRAIL_") {
        let tail = &rest[at..];
        let name_len = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let (name, after) = tail.split_at(name_len);
        rest = after;
        let Some(mut chars) = after.strip_prefix('=').map(str::chars) else {
            continue;
        };
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\'' => value.extend(chars.by_ref().take_while(|&c| c != '\'')),
                '"' => {
                    while let Some(c) = chars.next() {
                        match c {
                            '"' => break,
                            '\\' => value.extend(chars.next()),
                            c => value.push(c),
                        }
                    }
                }
                c if c.is_whitespace() || c == '`' => break,
                c => value.push(c),
            }
        }
        rest = chars.as_str();
        found.push((name.to_owned(), value));
    }
    found
}

#[test]
fn every_toml_example_loads() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for doc in DOCS {
        for (i, block) in toml_blocks(&read(doc)).into_iter().enumerate() {
            let path = dir.path().join(format!("example-{checked}.toml"));
            std::fs::write(&path, &block).unwrap();
            Config::load_with_env(Some(&path), Vec::new())
                .unwrap_or_else(|e| panic!("{doc}, ```toml block {}: {e:#}\n{block}", i + 1));
            checked += 1;
        }
    }
    assert!(checked >= 2, "only {checked} toml examples found");
}

#[test]
fn every_environment_example_loads_and_takes_effect() {
    let mut checked = 0;
    for doc in DOCS {
        for (name, value) in env_examples(&read(doc)) {
            let config = Config::load_with_env(None, vec![(name.clone(), value.clone())])
                .unwrap_or_else(|e| panic!("{doc}: {name}={value:?}: {e:#}"));
            if NOT_SETTINGS.contains(&name.as_str()) {
                assert_eq!(config, Config::default(), "{doc}: {name} is no setting");
                continue;
            }
            // A misspelt variable would be ignored silently; every example sets a value
            // other than the default, so it must show.
            assert_ne!(
                config,
                Config::default(),
                "{doc}: {name}={value:?} changed nothing"
            );
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} environment examples found");
}

#[test]
fn the_documented_empty_window_forms_both_work() {
    use voxtrail_server::config::EmptyWindow;
    for value in ["\"404\"", "404"] {
        let c = Config::load_with_env(
            None,
            vec![("VOXTRAIL_COMPAT__EMPTY_WINDOW".into(), value.into())],
        )
        .unwrap();
        assert_eq!(c.compat.empty_window, EmptyWindow::NotFound, "{value}");
    }
}

#[test]
fn the_extractors_read_what_a_shell_would() {
    let md = "a `VOXTRAIL_A=1`, `VOXTRAIL_B='\"404\"'` and\nexport VOXTRAIL_C='x y'z\nVOXTRAIL_D \
              VOXTRAIL_E=\"q\\\"r\"\n```toml\nk = 1\n```\n```sh\nnot = toml\n```\n";
    assert_eq!(
        env_examples(md),
        [
            ("VOXTRAIL_A", "1"),
            ("VOXTRAIL_B", "\"404\""),
            ("VOXTRAIL_C", "x yz"),
            ("VOXTRAIL_E", "q\"r")
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
    assert_eq!(toml_blocks(md), ["k = 1\n"]);
}

#[test]
fn a_bad_environment_value_is_refused_with_a_clear_message() {
    let e = Config::load_with_env(
        None,
        vec![("VOXTRAIL_COMPAT__EMPTY_WINDOW".into(), "\"500\"".into())],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("VOXTRAIL_COMPAT__EMPTY_WINDOW"), "{e}");
    assert!(e.contains("expected"), "{e}");
    assert!(e.contains("`200`") && e.contains("`404`"), "{e}");
    let e = Config::load_with_env(
        None,
        vec![("VOXTRAIL_LIMITS__MAX_BYTES".into(), "256MB".into())],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("VOXTRAIL_LIMITS__MAX_BYTES=\"256MB\"")
            && e.contains("a whole number, e.g. VOXTRAIL_LIMITS__MAX_BYTES=268435456"),
        "{e}"
    );
}
