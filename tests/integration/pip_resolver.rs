//! Hermetic resolver cases on a PEP 691 index (`fixtures::pypi`) served on 127.0.0.1: a
//! resolution that must revise an early decision rather than walk into old releases (the
//! s3fs/aiobotocore/botocore/urllib3 shape of the Python 3.9 family), and a wheel's METADATA
//! read through HTTP range requests when the index serves no PEP 658 file.

use crate::common::assert_success;
use crate::fixtures::pypi::{Index, dist, locked, project, wheel};

/// What the Python 3.9 images met: a direct requirement's newest version (urllib3 2) is decided
/// first; every botocore for the image needs urllib3<1.27, and the newer s3fs releases reach
/// botocore through aiobotocore. Decided in the order found, the solver rejects each
/// aiobotocore for its botocore and walks s3fs down to a release that needs neither. After a
/// few rejections by the same decided package it must decide that package late instead.
#[test]
fn an_early_decision_that_rejects_a_later_package_is_revised_not_walked_around() {
    let mut index = Index::new();
    for version in ["1.26.0", "2.0.0", "2.1.0", "2.2.0"] {
        index.publish(&dist("urllib3", version));
    }
    const MINORS: [&str; 12] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"];
    for minor in MINORS {
        for patch in ["0", "1"] {
            let version: &'static str = format!("1.{minor}.{patch}").leak();
            let mut botocore = dist("botocore", version);
            botocore.requires = vec!["urllib3<1.27"];
            index.publish(&botocore);
        }
        let version: &'static str = format!("2.{minor}.0").leak();
        let requirement: &'static str = format!("botocore>=1.{minor}.0,<1.{minor}.2").leak();
        let mut aiobotocore = dist("aiobotocore", version);
        aiobotocore.requires = vec![requirement];
        index.publish(&aiobotocore);
    }
    // The old s3fs needs no aiobotocore: where a walk around urllib3 ends.
    index.publish(&dist("s3fs", "0.1.0"));
    for version in ["2024.1.0", "2024.2.0", "2024.3.0"] {
        let mut s3fs = dist("s3fs", version);
        s3fs.requires = vec!["aiobotocore>=2.0"];
        index.publish(&s3fs);
    }

    let project = project(
        &index,
        "[\"linux/amd64\"]",
        &["packages = [\"urllib3>=1.20\", \"s3fs\"]"],
    );
    let out = project.run(&["lock", "app"]);
    assert_success(&out, "oci-build lock app");
    let pins = locked(&project, 1);
    let version = |name: &str| pins[name].0.as_str();
    assert_eq!(
        (
            version("s3fs"),
            version("aiobotocore"),
            version("botocore"),
            version("urllib3")
        ),
        ("2024.3.0", "2.11.0", "1.11.1", "1.26.0"),
        "{pins:?}"
    );
}

/// A wheel of 8 MiB whose index lists no `.metadata` file: locking reads its zip directory and
/// METADATA through range requests, a small part of it; a server without ranges gets the
/// whole wheel asked for, once.
#[test]
fn metadata_without_a_metadata_file_is_read_through_range_requests() {
    let mut heavy = dist("heavy", "1.0");
    heavy.requires = vec!["light"];
    // Incompressible, so that the wheel is as large as its payload.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let payload: Vec<u8> = (0..8 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    heavy.files = vec![("heavy/model.bin".to_owned(), payload)];
    let (filename, bytes) = wheel(&heavy);
    assert!(bytes.len() > 8 << 20);

    for ranges in [true, false] {
        let mut index = if ranges {
            Index::with_ranges()
        } else {
            Index::new()
        };
        index.publish(&dist("light", "2.0"));
        index.publish_raw("heavy", &filename, &bytes);
        let project = project(&index, "[\"linux/amd64\"]", &["packages = [\"heavy\"]"]);
        let out = project.run(&["lock", "app"]);
        assert_success(&out, "oci-build lock app");
        let pins = locked(&project, 1);
        assert_eq!(pins["heavy"].0, "1.0");
        assert_eq!(
            pins["light"].0, "2.0",
            "heavy's METADATA was read: {pins:?}"
        );
        let served = index.server.bytes_served();
        if ranges {
            assert!(
                served < 256 << 10,
                "{served} bytes served for a {} byte wheel",
                bytes.len()
            );
        } else {
            assert!(served > bytes.len() as u64, "{served}");
        }
    }
}
