//! `accounts` layers: users and groups as recipe data, written into /etc/passwd, /etc/group,
//! /etc/shadow and /etc/gshadow on top of the base's, with home directories owned by the
//! user — what `useradd` would do, without running it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::layer::{Entry, EntryKind, ImagePath, LayerTree};

/// `accounts = [{ user = "jovyan", uid = 1000, gid = 100, group = "users" }]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSpec {
    pub user: String,
    pub uid: u32,
    /// The primary group's name; default: the user's name.
    pub group: Option<String>,
    /// The primary group's id; default: the uid.
    pub gid: Option<u32>,
    /// Default: /home/<user>. Created owned by the user unless `create_home = false`.
    pub home: Option<String>,
    #[serde(default = "default_shell")]
    pub shell: String,
    /// Supplementary groups, which must exist below or be created by another account here.
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default = "yes")]
    pub create_home: bool,
}

fn default_shell() -> String {
    "/bin/bash".to_owned()
}

fn yes() -> bool {
    true
}

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("account `{user}`: uid {uid} already belongs to `{owner}` in the base's /etc/passwd")]
    UidTaken {
        user: String,
        uid: u32,
        owner: String,
    },
    #[error("account `{user}`: user name `{user}` already exists below with uid {uid}")]
    NameTaken { user: String, uid: u32 },
    #[error("account `{user}`: group `{group}` has gid {found} below, not {wanted}")]
    GroupMismatch {
        user: String,
        group: String,
        found: u32,
        wanted: u32,
    },
    #[error("account `{user}`: supplementary group `{group}` does not exist")]
    NoGroup { user: String, group: String },
    #[error("account `{user}`: `{value}` cannot be used in /etc/passwd ({reason})")]
    BadValue {
        user: String,
        value: String,
        reason: &'static str,
    },
}

/// The account files of the layers below (empty strings where a file is missing).
#[derive(Clone, Debug, Default)]
pub(crate) struct AccountFiles {
    pub passwd: String,
    pub group: String,
    pub shadow: String,
    pub gshadow: String,
}

fn fields(line: &str) -> Vec<&str> {
    line.split(':').collect()
}

pub(crate) fn layer_tree(
    specs: &[AccountSpec],
    base: &AccountFiles,
) -> Result<LayerTree, AccountsError> {
    let mut accounts = Accounts::from_base(base);
    for spec in specs {
        accounts.add(spec)?;
    }
    accounts.into_tree()
}

/// The account files as lines, the base's first, and the home directories to create.
struct Accounts {
    passwd: Vec<String>,
    group: Vec<String>,
    shadow: Vec<String>,
    gshadow: Vec<String>,
    /// (path, uid, gid).
    homes: Vec<(String, u32, u32)>,
}

impl Accounts {
    fn from_base(base: &AccountFiles) -> Accounts {
        let lines = |text: &str| text.lines().map(str::to_owned).collect();
        Accounts {
            passwd: lines(&base.passwd),
            group: lines(&base.group),
            shadow: lines(&base.shadow),
            gshadow: lines(&base.gshadow),
            homes: Vec::new(),
        }
    }

    fn add(&mut self, spec: &AccountSpec) -> Result<(), AccountsError> {
        for (value, reason) in [(&spec.user, "a name"), (&spec.shell, "a shell")] {
            if value.is_empty() || value.contains([':', '\n']) {
                return Err(AccountsError::BadValue {
                    user: spec.user.clone(),
                    value: value.clone(),
                    reason,
                });
            }
        }
        let group_name = spec.group.clone().unwrap_or_else(|| spec.user.clone());
        let gid = spec.gid.unwrap_or(spec.uid);
        let home = spec
            .home
            .clone()
            .unwrap_or_else(|| format!("/home/{}", spec.user));
        if self.user_exists(spec)? {
            return Ok(()); // already there, as asked
        }
        if let Some(line) = self
            .passwd
            .iter()
            .find(|l| fields(l).get(2) == Some(&spec.uid.to_string().as_str()))
        {
            return Err(AccountsError::UidTaken {
                user: spec.user.clone(),
                uid: spec.uid,
                owner: fields(line)[0].to_owned(),
            });
        }
        self.add_primary_group(spec, group_name, gid)?;
        self.join_supplementary_groups(spec)?;
        self.passwd.push(format!(
            "{}:x:{}:{gid}::{home}:{}",
            spec.user, spec.uid, spec.shell
        ));
        // A locked password, as useradd leaves it: no login by password.
        self.shadow.push(format!("{}:!:0:0:99999:7:::", spec.user));
        if spec.create_home {
            self.homes.push((home, spec.uid, gid));
        }
        Ok(())
    }

    /// Whether the user is already there with the uid asked for; with another, an error.
    fn user_exists(&self, spec: &AccountSpec) -> Result<bool, AccountsError> {
        let Some(line) = self
            .passwd
            .iter()
            .find(|l| fields(l).first() == Some(&spec.user.as_str()))
        else {
            return Ok(false);
        };
        let uid: u32 = fields(line)
            .get(2)
            .and_then(|u| u.parse().ok())
            .unwrap_or(0);
        if uid != spec.uid {
            return Err(AccountsError::NameTaken {
                user: spec.user.clone(),
                uid,
            });
        }
        Ok(true)
    }

    /// The primary group, created unless it is there with the gid asked for.
    fn add_primary_group(
        &mut self,
        spec: &AccountSpec,
        group_name: String,
        gid: u32,
    ) -> Result<(), AccountsError> {
        match self
            .group
            .iter()
            .find(|l| fields(l).first() == Some(&group_name.as_str()))
        {
            Some(line) => {
                let found: u32 = fields(line)
                    .get(2)
                    .and_then(|g| g.parse().ok())
                    .unwrap_or(0);
                if found != gid {
                    return Err(AccountsError::GroupMismatch {
                        user: spec.user.clone(),
                        group: group_name,
                        found,
                        wanted: gid,
                    });
                }
            }
            None => {
                self.group.push(format!("{group_name}:x:{gid}:"));
                self.gshadow.push(format!("{group_name}:!::"));
            }
        }
        Ok(())
    }

    fn join_supplementary_groups(&mut self, spec: &AccountSpec) -> Result<(), AccountsError> {
        for extra in &spec.groups {
            let Some(line) = self
                .group
                .iter_mut()
                .find(|l| l.split(':').next() == Some(extra.as_str()))
            else {
                return Err(AccountsError::NoGroup {
                    user: spec.user.clone(),
                    group: extra.clone(),
                });
            };
            if !line.ends_with(':') {
                line.push(',');
            }
            line.push_str(&spec.user);
        }
        Ok(())
    }

    /// The four files and the home directories, owned by their users.
    fn into_tree(self) -> Result<LayerTree, AccountsError> {
        let mut tree = LayerTree::default();
        let mut file = |path: &str, lines: &[String], mode: u32, gid: u32| {
            let mut text = lines.join("\n");
            text.push('\n');
            tree.insert(
                ImagePath::new(path).expect("account file paths are valid"),
                Entry {
                    gid,
                    ..super::tree_util::inline_file(text, mode)
                },
            );
        };
        let shadow_gid = self
            .group
            .iter()
            .find(|l| l.starts_with("shadow:"))
            .and_then(|l| fields(l).get(2).and_then(|g| g.parse().ok()))
            .unwrap_or(0);
        file("/etc/passwd", &self.passwd, 0o644, 0);
        file("/etc/group", &self.group, 0o644, 0);
        file("/etc/shadow", &self.shadow, 0o640, shadow_gid);
        file("/etc/gshadow", &self.gshadow, 0o640, shadow_gid);
        for (home, uid, gid) in self.homes {
            let path = ImagePath::new(&home).map_err(|_| AccountsError::BadValue {
                user: String::new(),
                value: home.clone(),
                reason: "an absolute home directory",
            })?;
            tree.insert(
                path,
                Entry {
                    kind: EntryKind::Directory,
                    mode: 0o755,
                    uid,
                    gid,
                },
            );
        }
        Ok(tree)
    }
}

/// The account files a layer set leaves, by path: later layers win.
pub(crate) fn merge_files(files: &BTreeMap<String, String>) -> AccountFiles {
    let get = |p: &str| files.get(p).cloned().unwrap_or_default();
    AccountFiles {
        passwd: get("etc/passwd"),
        group: get("etc/group"),
        shadow: get("etc/shadow"),
        gshadow: get("etc/gshadow"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::Content;

    fn spec(user: &str, uid: u32) -> AccountSpec {
        AccountSpec {
            user: user.to_owned(),
            uid,
            group: None,
            gid: None,
            home: None,
            shell: default_shell(),
            groups: Vec::new(),
            create_home: true,
        }
    }

    fn text(tree: &LayerTree, path: &str) -> String {
        match &tree.get(&ImagePath::new(path).unwrap()).unwrap().kind {
            EntryKind::File {
                content: Content::Inline(bytes),
                ..
            } => String::from_utf8(bytes.to_vec()).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn adds_users_groups_and_homes_to_the_base() {
        let base = AccountFiles {
            passwd: "root:x:0:0:root:/root:/bin/bash\n".to_owned(),
            group: "root:x:0:\nusers:x:100:\nshadow:x:42:\n".to_owned(),
            shadow: "root:*:19000:0:99999:7:::\n".to_owned(),
            gshadow: String::new(),
        };
        let mut jovyan = spec("jovyan", 1000);
        jovyan.group = Some("users".to_owned());
        jovyan.gid = Some(100);
        let mut mlrun = spec("mlrun", 1001);
        mlrun.groups = vec!["users".to_owned()];
        let tree = layer_tree(&[jovyan, mlrun], &base).unwrap();
        assert_eq!(
            text(&tree, "/etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\njovyan:x:1000:100::/home/jovyan:/bin/bash\nmlrun:x:1001:1001::/home/mlrun:/bin/bash\n"
        );
        assert_eq!(
            text(&tree, "/etc/group"),
            "root:x:0:\nusers:x:100:mlrun\nshadow:x:42:\nmlrun:x:1001:\n"
        );
        assert!(text(&tree, "/etc/shadow").contains("jovyan:!:"));
        let shadow = tree.get(&ImagePath::new("/etc/shadow").unwrap()).unwrap();
        assert_eq!((shadow.mode, shadow.gid), (0o640, 42));
        let home = tree.get(&ImagePath::new("/home/jovyan").unwrap()).unwrap();
        assert_eq!((home.uid, home.gid), (1000, 100));
    }

    #[test]
    fn refuses_clashes() {
        let base = AccountFiles {
            passwd: "root:x:0:0:root:/root:/bin/bash\nsvc:x:1000:1000::/:/bin/false\n".to_owned(),
            group: "users:x:100:\n".to_owned(),
            ..Default::default()
        };
        let err = layer_tree(&[spec("jovyan", 1000)], &base).unwrap_err();
        assert!(
            err.to_string()
                .contains("uid 1000 already belongs to `svc`"),
            "{err}"
        );
        let err = layer_tree(&[spec("svc", 1001)], &base).unwrap_err();
        assert!(matches!(err, AccountsError::NameTaken { .. }), "{err}");
        let mut odd = spec("x", 1002);
        odd.group = Some("users".to_owned());
        odd.gid = Some(5);
        assert!(matches!(
            layer_tree(&[odd], &base).unwrap_err(),
            AccountsError::GroupMismatch { .. }
        ));
        let mut lost = spec("y", 1003);
        lost.groups = vec!["docker".to_owned()];
        assert!(matches!(
            layer_tree(&[lost], &base).unwrap_err(),
            AccountsError::NoGroup { .. }
        ));
    }
}
