//! CycloneDX 1.6 JSON (<https://cyclonedx.org/docs/1.6/json/>): the image as the metadata's
//! `container` component, its layers and packages as components, `dependencies` from the
//! packages' metadata (and the image on every component).

use serde_json::{Value, json};

use super::license::{self, License};
use super::{Ecosystem, ImageSubject, Package, dependencies};
use crate::digest::Digest;

/// A serial number that is the same for the same image: a UUID (version 5 layout) from the
/// SHA256 of the manifest digest.
fn serial_number(subject: &ImageSubject) -> String {
    let hash = Digest::of_bytes(format!("cyclonedx {}", subject.manifest).as_bytes());
    let hex = hash.hex();
    let variant = ["8", "9", "a", "b"][usize::from(hex.as_bytes()[16] % 4)];
    format!(
        "urn:uuid:{}-{}-5{}-{variant}{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

pub(super) fn document(subject: &ImageSubject, packages: &[Package], created: &str) -> Vec<u8> {
    let image_ref = format!("image:{}", subject.manifest);
    let mut components = Vec::new();
    let mut image_depends = Vec::new();
    for (n, layer) in subject.layers.iter().enumerate() {
        let reference = format!("layer:{}:{}", n + 1, layer.digest);
        let mut component = json!({
            "type": "file",
            "bom-ref": reference,
            "name": format!("layer {} {}", n + 1, layer.digest),
            "hashes": [{"alg": "SHA-256", "content": layer.digest.hex()}],
        });
        if let Some(description) = &layer.description {
            component["description"] = Value::from(description.as_str());
        }
        components.push(component);
        image_depends.push(reference);
    }
    let refs: Vec<String> = packages.iter().map(Package::purl).collect();
    // A purl is a component's natural reference; two packages with one purl (the same name and
    // version in two Python environments) get their position added.
    let refs: Vec<String> = refs
        .iter()
        .enumerate()
        .map(|(n, r)| {
            if refs.iter().filter(|o| *o == r).count() > 1 {
                format!("{r}#{}", n + 1)
            } else {
                r.clone()
            }
        })
        .collect();
    for (package, reference) in packages.iter().zip(&refs) {
        let mut component = json!({
            "type": "library",
            "bom-ref": reference,
            "name": package.name,
            "version": package.version,
            "purl": package.purl(),
        });
        if let Some(sha256) = &package.sha256 {
            component["hashes"] = json!([{"alg": "SHA-256", "content": sha256}]);
        }
        match package.license.as_deref().map(license::normalize) {
            Some(License::Spdx(expression)) => {
                component["licenses"] = json!([{"expression": expression}]);
            }
            Some(License::Other(raw)) => {
                component["licenses"] = json!([{"license": {"name": raw}}]);
            }
            None => {}
        }
        let mut properties = Vec::new();
        if let (Ecosystem::Debian, Some((source, version))) = (&package.ecosystem, &package.source)
        {
            properties.push(json!({"name": "oci-build:deb:source", "value": source}));
            properties.push(json!({"name": "oci-build:deb:source-version", "value": version}));
        }
        if let Some(file) = &package.file_name {
            properties.push(json!({"name": "oci-build:file-name", "value": file}));
        }
        if !properties.is_empty() {
            component["properties"] = Value::from(properties);
        }
        components.push(component);
        image_depends.push(reference.clone());
    }
    let mut dependency_list = vec![json!({"ref": image_ref, "dependsOn": image_depends})];
    for (from, targets) in dependencies(packages).iter().enumerate() {
        let depends: Vec<&String> = targets.iter().map(|&to| &refs[to]).collect();
        dependency_list.push(json!({"ref": refs[from], "dependsOn": depends}));
    }
    let document = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": serial_number(subject),
        "version": 1,
        "metadata": {
            "timestamp": created,
            "tools": {"components": [{
                "type": "application",
                "name": "oci-build",
                "version": super::tool_version(),
            }]},
            "component": {
                "type": "container",
                "bom-ref": image_ref,
                "name": subject.name,
                "version": subject.manifest.to_string(),
                "hashes": [{"alg": "SHA-256", "content": subject.manifest.hex()}],
                "properties": [{"name": "oci-build:platform", "value": subject.platform.to_string()}],
            },
        },
        "components": components,
        "dependencies": dependency_list,
    });
    serde_json::to_vec_pretty(&document).expect("SBOM documents serialise")
}
