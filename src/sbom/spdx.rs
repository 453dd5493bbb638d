//! SPDX 2.3 JSON (<https://spdx.github.io/spdx-spec/v2.3/>): the image as a package (purpose
//! CONTAINER) that DESCRIBES the document, its layers (purpose ARCHIVE) and every package it
//! CONTAINS, and DEPENDS_ON between packages as their metadata says. Licenses that are no SPDX
//! expression become `LicenseRef-…` with their text in `hasExtractedLicensingInfos`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::license::{self, License};
use super::{Ecosystem, ImageSubject, Package, dependencies};

const NOASSERTION: &str = "NOASSERTION";

/// `SPDXRef-` ids are letters, digits, `.` and `-`.
fn spdx_id(kind: &str, name: &str, n: usize) -> String {
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-{kind}-{name}-{n}")
}

pub(super) fn document(subject: &ImageSubject, packages: &[Package], created: &str) -> Vec<u8> {
    let image_id = "SPDXRef-Image";
    let mut spdx_packages = vec![json!({
        "SPDXID": image_id,
        "name": subject.name,
        "versionInfo": subject.manifest.to_string(),
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": false,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{"algorithm": "SHA256", "checksumValue": subject.manifest.hex()}],
        "comment": format!("platform {}", subject.platform),
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": image_id,
    })];
    let contains = |relationships: &mut Vec<Value>, id: &str| {
        relationships.push(json!({
            "spdxElementId": image_id,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    };
    for (n, layer) in subject.layers.iter().enumerate() {
        let id = format!("SPDXRef-Layer-{}", n + 1);
        let mut entry = json!({
            "SPDXID": id,
            "name": format!("layer {} {}", n + 1, layer.digest),
            "downloadLocation": NOASSERTION,
            "filesAnalyzed": false,
            "licenseConcluded": NOASSERTION,
            "licenseDeclared": NOASSERTION,
            "copyrightText": NOASSERTION,
            "primaryPackagePurpose": "ARCHIVE",
            "checksums": [{"algorithm": "SHA256", "checksumValue": layer.digest.hex()}],
        });
        if let Some(description) = &layer.description {
            entry["comment"] = Value::from(description.as_str());
        }
        spdx_packages.push(entry);
        contains(&mut relationships, &id);
    }

    let mut extracted: BTreeMap<String, String> = BTreeMap::new();
    let ids: Vec<String> = packages
        .iter()
        .enumerate()
        .map(|(n, p)| {
            let kind = match p.ecosystem {
                Ecosystem::Debian => "deb",
                Ecosystem::Python => "pypi",
                Ecosystem::Conda => "conda",
            };
            spdx_id(kind, &p.name, n + 1)
        })
        .collect();
    for (package, id) in packages.iter().zip(&ids) {
        let declared = match package.license.as_deref().map(license::normalize) {
            None => NOASSERTION.to_owned(),
            Some(License::Spdx(expression)) => expression,
            Some(License::Other(raw)) => {
                let reference = license::license_ref(&raw);
                extracted.entry(reference.clone()).or_insert(raw);
                reference
            }
        };
        let mut entry = json!({
            "SPDXID": id,
            "name": package.name,
            "versionInfo": package.version,
            "downloadLocation": NOASSERTION,
            "filesAnalyzed": false,
            "licenseConcluded": NOASSERTION,
            "licenseDeclared": declared,
            "copyrightText": NOASSERTION,
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": package.purl(),
            }],
        });
        if let Some(sha256) = &package.sha256 {
            entry["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": sha256}]);
        }
        if let Some(file) = &package.file_name {
            entry["packageFileName"] = Value::from(file.as_str());
        }
        match (&package.ecosystem, &package.source) {
            (Ecosystem::Debian, Some((source, version))) => {
                entry["sourceInfo"] =
                    Value::from(format!("built package from: {source} {version}"));
            }
            (Ecosystem::Conda, Some((build, _))) => {
                entry["comment"] = Value::from(format!("build {build}"));
            }
            _ => {}
        }
        spdx_packages.push(entry);
        contains(&mut relationships, id);
    }
    for (from, targets) in dependencies(packages).iter().enumerate() {
        for &to in targets {
            relationships.push(json!({
                "spdxElementId": ids[from],
                "relationshipType": "DEPENDS_ON",
                "relatedSpdxElement": ids[to],
            }));
        }
    }

    let mut document = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{} {}", subject.name, subject.platform),
        // Unique per image and platform, and the same for the same image.
        "documentNamespace": format!("urn:oci-build:spdx:{}", subject.manifest),
        "creationInfo": {
            "created": created,
            "creators": [format!("Tool: oci-build-{}", super::tool_version())],
        },
        "packages": spdx_packages,
        "relationships": relationships,
    });
    if !extracted.is_empty() {
        document["hasExtractedLicensingInfos"] = extracted
            .into_iter()
            .map(|(id, raw)| {
                json!({
                    "licenseId": id,
                    "name": raw,
                    "extractedText": format!("The package states its license as: {raw}"),
                })
            })
            .collect();
    }
    serde_json::to_vec_pretty(&document).expect("SBOM documents serialise")
}
