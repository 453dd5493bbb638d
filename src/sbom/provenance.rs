//! Provenance: an in-toto statement (<https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md>)
//! whose predicate is SLSA provenance v1 (<https://slsa.dev/spec/v1.0/provenance>): the image's
//! platform manifest as subject; the recipe and target as external parameters; the recipe file,
//! the lock file and every locked input (Debian package, wheel, conda package, base image) as
//! resolved dependencies with their SHA256; oci-build as the builder. No start or end time:
//! the same build gives the same bytes.

use serde_json::json;

use super::ImageSubject;
use crate::digest::Digest;
use crate::source::locked::Input;

/// What the build knows of how the image was made.
#[derive(Clone, Debug)]
pub struct BuildFacts {
    pub target: String,
    /// The recipe file, as the project names it (`recipes/mlrun.toml`), and its SHA256.
    pub recipe: (String, Digest),
    /// The lock file (`recipes/recipes.lock`) and its SHA256, when there is one.
    pub lock: Option<(String, Digest)>,
    pub source_date_epoch: u64,
    /// The locked inputs of the image's layers and its base.
    pub inputs: Vec<Input>,
}

/// A URI for an input: its package URL, or for a base image the OCI reference.
fn input_uri(input: &Input) -> String {
    let escape = super::purl_escape;
    match input.kind.to_string().as_str() {
        "deb" => format!(
            "pkg:deb/debian/{}@{}",
            escape(&input.name),
            escape(&input.version)
        ),
        "pip" | "pip-built" => format!(
            "pkg:pypi/{}@{}",
            escape(&super::python_name(&input.name)),
            escape(&input.version)
        ),
        "conda" => format!(
            "pkg:conda/{}@{}",
            escape(&input.name),
            escape(&input.version)
        ),
        _ => format!("oci:{}", input.name),
    }
}

pub fn statement(subject: &ImageSubject, facts: &BuildFacts) -> Vec<u8> {
    let file = |(path, digest): &(String, Digest)| json!({"uri": format!("file:{path}"), "digest": {"sha256": digest.hex()}});
    let mut dependencies = vec![file(&facts.recipe)];
    dependencies.extend(facts.lock.iter().map(file));
    let mut inputs = facts.inputs.clone();
    inputs.sort();
    inputs.dedup();
    for input in &inputs {
        let mut entry = json!({
            "uri": input_uri(input),
            "digest": {"sha256": input.sha256.hex()},
        });
        if !input.filename.is_empty() {
            entry["name"] = input.filename.clone().into();
        }
        if let Some(sdist) = &input.built_from {
            entry["annotations"] = json!({"builtFromSha256": sdist.hex()});
        }
        dependencies.push(entry);
    }
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{
            "name": subject.name,
            "digest": {"sha256": subject.manifest.hex()},
        }],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": "urn:oci-build:recipe:v1",
                "externalParameters": {
                    "recipe": facts.recipe.0,
                    "target": facts.target,
                    "platform": subject.platform.to_string(),
                },
                "internalParameters": {
                    "sourceDateEpoch": facts.source_date_epoch,
                },
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {
                    "id": "urn:oci-build:builder",
                    "version": {"oci-build": super::tool_version()},
                },
                "metadata": {
                    "invocationId": format!("{}@{}", facts.target, subject.manifest),
                },
            },
        },
    });
    serde_json::to_vec_pretty(&statement).expect("provenance statements serialise")
}
