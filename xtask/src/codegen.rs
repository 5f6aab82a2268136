//! `cargo xtask codegen [--check]`: the inputs and outputs tables of each `actions/<name>/README.md`, generated
//! from its `action.yml` (issue 6). The tables live between `<!-- gangplank:inputs -->` and
//! `<!-- /gangplank:inputs -->` (and the same for `outputs`); everything else in the README is written by hand.
//! `--check` changes nothing and fails when a committed table differs from what action.yml says.

use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

use crate::project_root;

pub const ACTIONS: [&str; 6] = ["sync-secrets", "verify-image", "push-registry", "deploy-remote", "rollback", "status"];

pub fn run(args: &[String]) -> Result<()> {
    let check = match args {
        [] => false,
        [flag] if flag == "--check" => true,
        _ => bail!("usage: cargo xtask codegen [--check]"),
    };
    let root = project_root();
    let mut stale = Vec::new();
    for name in ACTIONS {
        let dir = root.join("actions").join(name);
        let readme_path = dir.join("README.md");
        let yml = read(&dir.join("action.yml"))?;
        let readme = read(&readme_path)?;
        let fresh = render(&readme, &yml).with_context(|| format!("actions/{name}"))?;
        if fresh == readme {
            continue;
        }
        if check {
            stale.push(format!("actions/{name}/README.md"));
        } else {
            std::fs::write(&readme_path, fresh).with_context(|| format!("writing {}", readme_path.display()))?;
            println!("updated actions/{name}/README.md");
        }
    }
    if !stale.is_empty() {
        bail!(
            "the inputs/outputs tables of {} differ from action.yml\nhint: run `cargo xtask codegen` and commit the result",
            stale.join(", ")
        );
    }
    Ok(())
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The README with its two generated blocks replaced by the tables of `action_yml`.
pub fn render(readme: &str, action_yml: &str) -> Result<String> {
    let action: Action = serde_saphyr::from_str(action_yml).context("parsing action.yml")?;
    let readme = replace_block(readme, "inputs", &inputs_table(&action))?;
    replace_block(&readme, "outputs", &outputs_table(&action))
}

#[derive(serde::Deserialize)]
struct Action {
    #[serde(default)]
    inputs: Ordered<Input>,
    #[serde(default)]
    outputs: Ordered<Output>,
}

#[derive(serde::Deserialize)]
struct Input {
    description: String,
    #[serde(default)]
    required: bool,
    default: Option<String>,
}

#[derive(serde::Deserialize)]
struct Output {
    description: String,
}

fn inputs_table(action: &Action) -> String {
    let mut out = String::from("| input | required | default | description |\n|---|---|---|---|\n");
    for (name, input) in &action.inputs.0 {
        let default = match &input.default {
            Some(d) if !d.is_empty() => format!("`{}`", cell(d)),
            _ => String::new(),
        };
        let required = if input.required { "yes" } else { "no" };
        out.push_str(&format!("| `{name}` | {required} | {default} | {} |\n", cell(&input.description)));
    }
    out
}

fn outputs_table(action: &Action) -> String {
    let mut out = String::from("| output | description |\n|---|---|\n");
    for (name, output) in &action.outputs.0 {
        out.push_str(&format!("| `{name}` | {} |\n", cell(&output.description)));
    }
    out
}

/// A table cell: one line, `|` escaped.
fn cell(s: &str) -> String {
    s.trim().replace('\n', " ").replace('|', "\\|")
}

fn replace_block(doc: &str, block: &str, body: &str) -> Result<String> {
    let open = format!("<!-- gangplank:{block} -->");
    let close = format!("<!-- /gangplank:{block} -->");
    let (Some(start), Some(end)) = (doc.find(&open), doc.find(&close)) else {
        bail!("README.md lacks the `{open}` … `{close}` markers\nhint: add both lines where the {block} table goes");
    };
    if end < start {
        bail!("README.md has `{close}` before `{open}`");
    }
    let head = &doc[..start + open.len()];
    Ok(format!("{head}\n{body}{}", &doc[end..]))
}

/// A YAML mapping kept in file order (action.yml's order is the order a reader expects in the table).
struct Ordered<T>(Vec<(String, T)>);

impl<T> Default for Ordered<T> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, T>()? {
                    entries.push(entry);
                }
                Ok(Ordered(entries))
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YML: &str = "name: x\ndescription: y\ninputs:\n  b-input:\n    description: 'pipe | here'\n    required: true\n  a-input:\n    description: second\n    default: '30s'\noutputs:\n  out:\n    description: it\n    value: ${{ steps.run.outputs.out }}\nruns:\n  using: composite\n  steps: []\n";

    #[test]
    fn tables_keep_file_order_and_escape_pipes() {
        let readme = "# x\n<!-- gangplank:inputs -->\nold\n<!-- /gangplank:inputs -->\n\n<!-- gangplank:outputs -->\n<!-- /gangplank:outputs -->\nend\n";
        let got = render(readme, YML).unwrap();
        let want = "# x\n<!-- gangplank:inputs -->\n| input | required | default | description |\n|---|---|---|---|\n| `b-input` | yes |  | pipe \\| here |\n| `a-input` | no | `30s` | second |\n<!-- /gangplank:inputs -->\n\n<!-- gangplank:outputs -->\n| output | description |\n|---|---|\n| `out` | it |\n<!-- /gangplank:outputs -->\nend\n";
        assert_eq!(got, want);
        assert_eq!(render(&got, YML).unwrap(), got, "rendering is idempotent");
    }

    #[test]
    fn missing_markers_are_an_error() {
        assert!(render("# no markers\n", YML).is_err());
    }
}
