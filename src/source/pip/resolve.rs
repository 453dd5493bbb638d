//! Resolution with PubGrub: the closure of a layer's requirements for the image's Python and
//! platform, newest versions first, with an explanation when no set of versions fits.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::mpsc;

use pep440_rs::Version;
use pep508_rs::{ExtraName, MarkerEnvironment, MarkerTree, Requirement, VerbatimUrl, VersionOrUrl};
use pubgrub::{
    Dependencies, DependencyConstraints, DependencyProvider, PackageResolutionStatistics,
    PubGrubError, Ranges,
};

use super::index::{DistFile, DistKind, PackageIndex};
use super::metadata::CoreMetadata;
use super::replace::InstalledDist;
use super::requirements::{Formats, Pinned, Requirements};
use super::target::PythonTarget;
use super::wheel::normalize_name;
use crate::digest::Digest;

mod explain;

/// A node of the resolution: the layer itself, a distribution, or a distribution with one
/// extra (which depends on the distribution at the same version).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Node {
    Root,
    Dist(String),
    Extra(String, String),
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Root => write!(f, "the layer's requirements"),
            Node::Dist(name) => write!(f, "{name}"),
            Node::Extra(name, extra) => write!(f, "{name}[{extra}]"),
        }
    }
}

/// What a resolution chose for one distribution.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    pub name: String,
    pub version: Version,
    pub file: DistFile,
}

/// Work for the prefetching threads.
enum Prefetch {
    /// A project's page and its newest wheel's metadata.
    Project(String),
    /// The metadata of one version, ahead of a backtracking solver asking for it.
    Version(String, Version),
}

/// What building a source distribution failed with. Boxed: the builder's error (the pip
/// layer's) holds resolution errors in turn, and this module does not import that one.
pub(crate) type BuildError = Box<dyn std::error::Error + Send + Sync>;

/// Builds a source distribution into a wheel and returns its metadata and the wheel's file.
pub(crate) type SdistBuilder<'b> =
    dyn Fn(&DistFile) -> Result<(CoreMetadata, DistFile), BuildError> + Sync + 'b;

/// Why the solver could not learn what it asked about a distribution.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error(transparent)]
    Index(#[from] super::index::IndexError),
    #[error("{name} {version} has no usable file")]
    NoFile { name: String, version: Version },
    #[error(transparent)]
    Build(BuildError),
    #[error("extra `{extra}` of {name}")]
    Extra {
        extra: String,
        name: String,
        #[source]
        source: pep508_rs::InvalidNameError,
    },
    /// Not an error the user sees: the solver learned an order of packages that avoids a long
    /// walk, and starts again with it.
    #[error("the resolution starts again with {early} decided before {late}")]
    Restart { early: String, late: String },
}

/// How many times a package's version must be rejected for the same decided package before
/// the two swap places (uv's threshold is the same).
const CONFLICT_THRESHOLD: u32 = 5;

/// At most this many fresh starts per resolution: each one demotes another package, so the
/// number is bounded anyway; this keeps a pathological input from costing more than a few
/// passes over cached metadata.
const MAX_RESTARTS: usize = 16;

/// The order a resolution learned from its conflicts, kept across fresh starts.
///
/// PubGrub decides packages in priority order; when a package decided early (`urllib3` at its
/// newest version, from a direct requirement) rejects every version of one found later
/// (`botocore`, whose releases for Python 3.9 all need `urllib3<1.27`), the solver walks the
/// later package's dependents down their release history instead of revising the early
/// decision. As uv does, after [`CONFLICT_THRESHOLD`] such rejections the rejected package is
/// decided early and the culprit late; pubgrub 0.4 cannot undo one decision, so the
/// resolution starts again (the index pages and metadata it read stay cached).
#[derive(Default)]
struct Learned {
    early: BTreeSet<String>,
    late: BTreeSet<String>,
    restarts: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("the requirements cannot be satisfied together: {0}")]
    NoSolution(String),
    #[error(
        "{packages}: only binaries are allowed (`only_binary` or `--only-binary`) and no version that fits has a wheel for the image, so no source distribution is built ({explanation})"
    )]
    OnlyBinary {
        packages: String,
        explanation: String,
    },
    #[error(transparent)]
    Failed(#[from] ProviderError),
    #[error(transparent)]
    Worker(#[from] crate::workers::WorkerPanicked),
}

pub(crate) struct Input<'r> {
    pub requirements: &'r Requirements,
    /// Distributions the layers below already hold, by normalised name: preferred at their
    /// version, replaced where the layer needs another.
    pub below: &'r BTreeMap<String, InstalledDist>,
    /// Distributions from project directories and direct references, by normalised name:
    /// their wheel's version is the only one the solver may choose, and no index is asked.
    pub direct: &'r BTreeMap<String, DirectDist>,
    /// The layer's own requirements of those.
    pub direct_roots: &'r [DirectRoot],
}

/// The wheel a direct reference gave, and its metadata.
pub(crate) struct DirectDist {
    pub file: DistFile,
    pub meta: CoreMetadata,
}

/// A direct reference as a requirement of the layer: `./app[api] ; marker`.
pub(crate) struct DirectRoot {
    pub name: String,
    pub extras: Vec<ExtraName>,
    pub marker: MarkerTree,
}

/// Resolves `input` for `target`; what the layers below hold is left out of the result, unless
/// it is another version (a replacement). Index pages and metadata files are fetched ahead on a
/// few threads while the solver works.
///
/// As pip does, a distribution below stays at its version unless the layer's requirements (or
/// theirs) need another; then it is replaced. Unlike pip, a replacement must keep every
/// distribution that stays satisfied: once a first resolution found what it replaces, a second
/// one pins everything else below at its version, with the requirements its installed
/// METADATA states, so that a conflict names the installed distribution and its requirement.
pub(crate) fn resolve(
    index: &PackageIndex<'_>,
    target: &PythonTarget,
    input: &Input<'_>,
    build_sdist: &SdistBuilder<'_>,
) -> Result<Vec<Resolved>, ResolveError> {
    let fit = Fit::new(target);
    let (sender, receiver) = mpsc::channel::<Prefetch>();
    let receiver = Mutex::new(receiver);
    // Projects the newest wheels' requirements name, fetched ahead of the solver finding them
    // (as uv does): the closure's pages and metadata come in parallel instead of one level of
    // the dependency tree at a time. Apart from the solver's queue, so that the workers end
    // when the solver is done.
    let environment = target.marker_environment();
    let ahead = Mutex::new((std::collections::VecDeque::<String>::new(), BTreeSet::new()));
    let prefetch = || {
        loop {
            let next = ahead.lock().expect("prefetch queue").0.pop_front();
            let job = match next {
                Some(name) => Prefetch::Project(name),
                None => match receiver
                    .lock()
                    .expect("prefetch queue")
                    .recv_timeout(std::time::Duration::from_millis(20))
                {
                    Ok(job) => job,
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                },
            };
            // Errors show again when the solver asks; here they only cost a request.
            match job {
                Prefetch::Project(name) => {
                    if !ahead.lock().expect("prefetch queue").1.insert(name.clone()) {
                        continue;
                    }
                    if let Ok(files) = index.files(&name)
                        && let Some(best) = newest_wheel(&files, &fit)
                        && let Ok(meta) = index.metadata(best)
                    {
                        let mut ahead = ahead.lock().expect("prefetch queue");
                        for requirement in &meta.requires_dist {
                            let dep = normalize_name(requirement.name.as_ref());
                            if requirement.marker.evaluate(&environment, &[])
                                && !input.direct.contains_key(&dep)
                                && !input.below.contains_key(&dep)
                                && !ahead.1.contains(&dep)
                            {
                                ahead.0.push_back(dep);
                            }
                        }
                    }
                }
                Prefetch::Version(name, version) => {
                    if let Ok(files) = index.files(&name)
                        && let Some(file) =
                            best_file(&files, &version, &fit, &[], false, Formats::ANY)
                        && matches!(file.kind, DistKind::Wheel(_))
                    {
                        let _ = index.metadata(file);
                    }
                }
            }
        }
    };
    let learned = RefCell::new(Learned::default());
    let phase = |pinned: &BTreeSet<String>, sender: mpsc::Sender<Prefetch>| {
        let (provider, result) = loop {
            let provider = Provider::new(
                index,
                target,
                &fit,
                input,
                build_sdist,
                sender.clone(),
                Phase {
                    pinned,
                    learned: &learned,
                },
            );
            let result = pubgrub::resolve(&provider, Node::Root, Version::new([0]));
            if let Err(PubGrubError::ErrorChoosingVersion {
                source: ProviderError::Restart { early, late },
                ..
            }) = &result
            {
                tracing::debug!(%early, %late, "pip resolution: starting again");
                continue;
            }
            break (provider, result);
        };
        drop(sender);
        let refused = provider.refused_sources.take();
        result.map_err(|e| match explain(e, &provider) {
            // Said first: the sdists the solver had to pass over are what a user must change.
            ResolveError::NoSolution(explanation) if !refused.is_empty() => {
                ResolveError::OnlyBinary {
                    packages: refused.into_iter().collect::<Vec<_>>().join(", "),
                    explanation,
                }
            }
            other => other,
        })
    };
    let solve = move || {
        let first = phase(&BTreeSet::new(), sender.clone())?;
        let replaced: BTreeSet<&String> = first
            .iter()
            .filter_map(|(node, version)| match node {
                Node::Dist(name)
                    if input.below.get(name).is_some_and(|b| &b.version != version) =>
                {
                    Some(name)
                }
                _ => None,
            })
            .collect();
        if replaced.is_empty() {
            return Ok(first);
        }
        let stays: BTreeSet<String> = input
            .below
            .keys()
            .filter(|name| !replaced.contains(name))
            .cloned()
            .collect();
        // `sender` goes with this provider: dropping it ends the prefetchers' loops.
        phase(&stays, sender)
    };
    // Dropping the provider (its sender) inside `solve` ends the prefetchers' loops.
    // Mostly waiting on the network: more threads than cores.
    let solution = crate::workers::run_beside(16, prefetch, solve)??;
    let mut resolved = Vec::new();
    for (node, version) in solution {
        let Node::Dist(name) = node else { continue };
        if let Some(direct) = input.direct.get(&name) {
            resolved.push(Resolved {
                name,
                version,
                file: direct.file.clone(),
            });
            continue;
        }
        if input.below.get(&name).is_some_and(|b| b.version == version) {
            continue;
        }
        let file =
            index_choice(index, &fit, input, &name, &version).map_err(ResolveError::Failed)?;
        resolved.push(Resolved {
            name,
            version,
            file,
        });
    }
    resolved.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(resolved)
}

fn explain(error: PubGrubError<Provider<'_, '_>>, provider: &Provider<'_, '_>) -> ResolveError {
    match error {
        // Not collapsed: what the index lacks is part of the explanation.
        PubGrubError::NoSolution(tree) => {
            ResolveError::NoSolution(explain::sentences(&tree, &provider.told()))
        }
        PubGrubError::ErrorRetrievingDependencies { source, .. }
        | PubGrubError::ErrorChoosingVersion { source, .. }
        | PubGrubError::ErrorInShouldCancel(source) => ResolveError::Failed(source),
    }
}

/// What deciding whether a file fits the image needs, worked out once per resolution: the
/// solver asks for every candidate version of every project.
struct Fit {
    tags: Vec<(String, String, String)>,
    python: Version,
}

impl Fit {
    fn new(target: &PythonTarget) -> Fit {
        Fit {
            tags: target.compatible_tags(),
            python: target.full_version(),
        }
    }

    fn wheel_rank(&self, wheel: &super::wheel::WheelName) -> Option<usize> {
        PythonTarget::wheel_rank(
            &self.tags,
            &wheel.python_tags,
            &wheel.abi_tags,
            &wheel.platform_tags,
        )
    }
}

fn newest_wheel<'f>(files: &'f [DistFile], fit: &Fit) -> Option<&'f DistFile> {
    let full = &fit.python;
    files
        .iter()
        .filter(|f| !f.yanked && !f.version.any_prerelease())
        .filter(|f| f.requires_python.as_ref().is_none_or(|r| r.contains(full)))
        .filter(|f| match &f.kind {
            DistKind::Wheel(w) => fit.wheel_rank(w).is_some(),
            DistKind::Sdist => false,
        })
        .max_by(|a, b| a.version.cmp(&b.version))
}

/// The file the resolution used for a version (the best wheel, else the sdist).
fn index_choice(
    index: &PackageIndex<'_>,
    fit: &Fit,
    input: &Input<'_>,
    name: &str,
    version: &Version,
) -> Result<DistFile, ProviderError> {
    let files = index.files(name)?;
    let hashes = pinned_hashes(input.requirements, name);
    let formats = input.requirements.formats.formats(name);
    best_file(&files, version, fit, &hashes, true, formats)
        .cloned()
        .ok_or_else(|| ProviderError::NoFile {
            name: name.to_owned(),
            version: version.clone(),
        })
}

fn pinned_hashes(requirements: &Requirements, name: &str) -> Vec<Digest> {
    requirements
        .requirements
        .iter()
        .chain(&requirements.constraints)
        .filter(|p| normalize_name(p.requirement.name.as_ref()) == name)
        .flat_map(|p| p.hashes.iter().cloned())
        .collect()
}

/// The best file of `version` for the target: the wheel with the most specific tags, else an
/// sdist, of the kinds `formats` allows. `hashes`, when not empty, limits the choice to files
/// pinned by `--hash`.
fn best_file<'f>(
    files: &'f [DistFile],
    version: &Version,
    fit: &Fit,
    hashes: &[Digest],
    allow_yanked: bool,
    formats: Formats,
) -> Option<&'f DistFile> {
    let full = &fit.python;
    let candidates = files.iter().filter(|f| {
        &f.version == version
            && (allow_yanked || !f.yanked)
            && f.requires_python.as_ref().is_none_or(|r| r.contains(full))
            && (hashes.is_empty() || f.sha256.as_ref().is_some_and(|h| hashes.contains(h)))
    });
    let mut best: Option<(usize, &DistFile)> = None;
    let mut sdist = None;
    for file in candidates {
        match &file.kind {
            DistKind::Wheel(w) if formats.binary => {
                if let Some(rank) = fit.wheel_rank(w)
                    && best.is_none_or(|(r, _)| rank < r)
                {
                    best = Some((rank, file));
                }
            }
            DistKind::Wheel(_) => {}
            DistKind::Sdist if formats.source => {
                // .tar.gz before .zip, as pip prefers.
                if sdist.is_none() || file.filename.ends_with(".tar.gz") {
                    sdist = Some(file);
                }
            }
            DistKind::Sdist => {}
        }
    }
    best.map(|(_, f)| f).or(sdist)
}

/// The requirements each chosen version stated, by distribution and version.
type Stated = HashMap<(String, Version), Vec<(String, Ranges<Version>)>>;

/// What one pass of the solver starts from: the distributions below kept at their version,
/// and the order earlier passes learned.
struct Phase<'p> {
    pinned: &'p BTreeSet<String>,
    learned: &'p RefCell<Learned>,
}

struct Provider<'p, 'c> {
    index: &'p PackageIndex<'c>,
    target: &'p PythonTarget,
    fit: &'p Fit,
    environment: MarkerEnvironment,
    input: &'p Input<'p>,
    build_sdist: &'p SdistBuilder<'p>,
    constraints: HashMap<String, Ranges<Version>>,
    prefetch: Mutex<mpsc::Sender<Prefetch>>,
    /// How many versions of each project the solver has asked dependencies of.
    tried: RefCell<HashMap<String, usize>>,
    /// First time each package was seen, for breadth-first order among equals.
    seen: RefCell<HashMap<String, usize>>,
    /// Metadata of built sdists, by (name, version).
    built: RefCell<HashMap<(String, Version), CoreMetadata>>,
    /// Packages for which no version was left once `--only-binary` took their sdists away.
    refused_sources: RefCell<BTreeSet<String>>,
    /// Distributions below kept at their version: the layer's requirements depend on each.
    pinned: &'p BTreeSet<String>,
    learned: &'p RefCell<Learned>,
    /// The version last chosen of each distribution, and the requirements each chosen version
    /// stated: when the solver asks again with that version excluded, they name the decided
    /// package that rejected it.
    chosen: RefCell<HashMap<String, Version>>,
    stated: RefCell<Stated>,
    /// Rejections of a package's versions by (rejected, culprit).
    rejections: RefCell<HashMap<(String, String), u32>>,
    /// Each requirement as written (`dep>=1,<3`), by the node and version that state it and
    /// the node they require, for messages.
    texts: RefCell<HashMap<(Node, Version, Node), Vec<String>>>,
}

impl<'p, 'c> Provider<'p, 'c> {
    fn new(
        index: &'p PackageIndex<'c>,
        target: &'p PythonTarget,
        fit: &'p Fit,
        input: &'p Input<'p>,
        build_sdist: &'p SdistBuilder<'p>,
        prefetch: mpsc::Sender<Prefetch>,
        phase: Phase<'p>,
    ) -> Self {
        let Phase { pinned, learned } = phase;
        let mut constraints: HashMap<String, Ranges<Version>> = HashMap::new();
        let environment = target.marker_environment();
        for pinned in &input.requirements.constraints {
            if !pinned.requirement.marker.evaluate(&environment, &[]) {
                continue;
            }
            let name = normalize_name(pinned.requirement.name.as_ref());
            let range = requirement_range(&pinned.requirement);
            constraints
                .entry(name)
                .and_modify(|r| *r = r.intersection(&range))
                .or_insert(range);
        }
        Provider {
            index,
            target,
            fit,
            environment,
            input,
            build_sdist,
            constraints,
            prefetch: Mutex::new(prefetch),
            tried: RefCell::new(HashMap::new()),
            seen: RefCell::new(HashMap::new()),
            built: RefCell::new(HashMap::new()),
            refused_sources: RefCell::new(BTreeSet::new()),
            pinned,
            learned,
            chosen: RefCell::new(HashMap::new()),
            stated: RefCell::new(HashMap::new()),
            rejections: RefCell::new(HashMap::new()),
            texts: RefCell::new(HashMap::new()),
        }
    }

    /// Called when the solver asks for a version of `name` within `range`: if the version
    /// chosen last is outside it, that version was rejected. The decided package its
    /// requirements disagree with is the culprit; at the threshold the two swap places and the
    /// resolution starts again.
    fn note_rejection(&self, name: &str, range: &Ranges<Version>) -> Result<(), ProviderError> {
        let chosen = self.chosen.borrow();
        let Some(last) = chosen.get(name) else {
            return Ok(());
        };
        if range.contains(last) {
            return Ok(());
        }
        let stated = self.stated.borrow();
        let Some(requirements) = stated.get(&(name.to_owned(), last.clone())) else {
            return Ok(());
        };
        // The requirement that failed: against a decided dependency, or against what another
        // decided package requires of the same dependency (s3fs pinning fsspec for mlrun).
        let Some(culprit) = requirements.iter().find_map(|(dep, dep_range)| {
            if chosen.get(dep).is_some_and(|v| !dep_range.contains(v)) {
                return Some(dep.clone());
            }
            chosen.iter().find_map(|(other, version)| {
                let theirs = stated.get(&(other.clone(), version.clone()))?;
                (other != name
                    && theirs
                        .iter()
                        .any(|(d, r)| d == dep && r.intersection(dep_range).is_empty()))
                .then(|| other.clone())
            })
        }) else {
            return Ok(());
        };
        let culprit = &culprit;
        let mut rejections = self.rejections.borrow_mut();
        let count = rejections
            .entry((name.to_owned(), culprit.clone()))
            .or_insert(0);
        *count += 1;
        let mut learned = self.learned.borrow_mut();
        // Each fresh start sends one more package early, so they are bounded. A package
        // learned to go early is never sent late: when a package sent early rejects another
        // in turn (s3fs, early, rejecting mlrun through fsspec), that one goes early too, and
        // the order found first among early packages decides.
        if *count >= CONFLICT_THRESHOLD
            && learned.restarts < MAX_RESTARTS
            && !learned.early.contains(name)
        {
            learned.restarts += 1;
            learned.early.insert(name.to_owned());
            learned.late.remove(name);
            if !learned.early.contains(culprit) && !self.pinned.contains(culprit) {
                learned.late.insert(culprit.clone());
            }
            return Err(ProviderError::Restart {
                early: name.to_owned(),
                late: culprit.clone(),
            });
        }
        Ok(())
    }

    /// What messages need to know of this resolution.
    fn told(&self) -> explain::Told<'_> {
        explain::Told {
            texts: self.texts.borrow().clone(),
            below: self.input.below,
            pinned: self.pinned,
        }
    }

    fn note(&self, name: &str) {
        let mut seen = self.seen.borrow_mut();
        if !seen.contains_key(name) {
            let order = seen.len();
            seen.insert(name.to_owned(), order);
            // A direct reference's name is never asked of an index (it may be a private one);
            // a distribution kept below needs nothing of one.
            if self.input.direct.contains_key(name) || self.pinned.contains(name) {
                return;
            }
            let _ = self
                .prefetch
                .lock()
                .expect("prefetch")
                .send(Prefetch::Project(name.to_owned()));
        }
    }

    fn add_requirement(
        &self,
        deps: &mut BTreeMap<Node, Ranges<Version>>,
        requirement: &Requirement<VerbatimUrl>,
        from: (&Node, &Version),
    ) {
        let name = normalize_name(requirement.name.as_ref());
        let text = match &requirement.version_or_url {
            // As METADATA writes it: `dep>=1,<3`.
            Some(VersionOrUrl::VersionSpecifier(specifiers)) => format!(
                "{}{}",
                requirement.name,
                specifiers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            _ => requirement.name.to_string(),
        };
        {
            let mut texts = self.texts.borrow_mut();
            let mut note = |node: Node| {
                texts
                    .entry((from.0.clone(), from.1.clone(), node))
                    .or_default()
                    .push(text.clone());
            };
            note(Node::Dist(name.clone()));
            for extra in &requirement.extras {
                note(Node::Extra(name.clone(), extra.to_string()));
            }
        }
        self.note(&name);
        let mut range = requirement_range(requirement);
        if let Some(constraint) = self.constraints.get(&name) {
            range = range.intersection(constraint);
        }
        let mut add = |node: Node, range: &Ranges<Version>| {
            deps.entry(node)
                .and_modify(|r| *r = r.intersection(range))
                .or_insert_with(|| range.clone());
        };
        add(Node::Dist(name.clone()), &range);
        for extra in &requirement.extras {
            add(Node::Extra(name.clone(), extra.to_string()), &range);
        }
    }

    /// A distribution's Requires-Python and Requires-Dist: an installed one's as its METADATA
    /// below states them, others' from the index (or the built wheel).
    fn requirements_of(
        &self,
        name: &str,
        version: &Version,
    ) -> Result<
        (
            Option<pep440_rs::VersionSpecifiers>,
            Vec<Requirement<VerbatimUrl>>,
        ),
        ProviderError,
    > {
        if let Some(installed) = self.input.below.get(name)
            && &installed.version == version
            && let Some(requires) = &installed.requires
        {
            // Installed: its Python is the image's.
            return Ok((None, requires.clone()));
        }
        let meta = self.metadata(name, version)?;
        Ok((meta.requires_python, meta.requires_dist))
    }

    fn metadata(&self, name: &str, version: &Version) -> Result<CoreMetadata, ProviderError> {
        if let Some(direct) = self.input.direct.get(name) {
            return Ok(direct.meta.clone());
        }
        if let Some(meta) = self.built.borrow().get(&(name.to_owned(), version.clone())) {
            return Ok(meta.clone());
        }
        let file = index_choice(self.index, self.fit, self.input, name, version)?;
        match file.kind {
            DistKind::Wheel(_) => Ok(self.index.metadata(&file)?),
            DistKind::Sdist => {
                let (meta, _) = (self.build_sdist)(&file).map_err(ProviderError::Build)?;
                self.built
                    .borrow_mut()
                    .insert((name.to_owned(), version.clone()), meta.clone());
                Ok(meta)
            }
        }
    }
}

impl Provider<'_, '_> {
    /// When the solver comes back for another version of a project, it is backtracking and
    /// will likely walk down its versions: fetch the next few versions' metadata meanwhile.
    fn prefetch_older(&self, name: &str, version: &Version) {
        let tries = {
            let mut tried = self.tried.borrow_mut();
            let count = tried.entry(name.to_owned()).or_insert(0);
            *count += 1;
            *count
        };
        if tries < 2 {
            return;
        }
        let Ok(files) = self.index.files(name) else {
            return;
        };
        let mut older: Vec<&Version> = files
            .iter()
            .map(|f| &f.version)
            .filter(|v| *v < version && !v.any_prerelease())
            .collect();
        older.sort_unstable_by(|a, b| b.cmp(a));
        older.dedup();
        let sender = self.prefetch.lock().expect("prefetch");
        // Every second try asks for the next batch, so the walk stays ahead of the solver.
        if tries % 8 == 2 {
            for v in older.into_iter().take(16) {
                let _ = sender.send(Prefetch::Version(name.to_owned(), v.clone()));
            }
        }
    }
}

fn requirement_range(requirement: &Requirement<VerbatimUrl>) -> Ranges<Version> {
    match &requirement.version_or_url {
        Some(VersionOrUrl::VersionSpecifier(specifiers)) => Ranges::from(specifiers.clone()),
        _ => Ranges::full(),
    }
}

impl DependencyProvider for Provider<'_, '_> {
    type P = Node;
    type V = Version;
    type VS = Ranges<Version>;
    type M = String;
    /// A single version left first, then what conflicts taught (early, normal, late), then
    /// the packages most involved in conflicts, then breadth-first.
    type Priority = (bool, u8, u32, Reverse<usize>);
    type Err = ProviderError;

    fn prioritize(
        &self,
        package: &Node,
        range: &Ranges<Version>,
        statistics: &PackageResolutionStatistics,
    ) -> Self::Priority {
        let (order, class) = match package {
            Node::Root => (0, 1),
            Node::Dist(name) | Node::Extra(name, _) => {
                let learned = self.learned.borrow();
                let class = if learned.early.contains(name) {
                    2
                } else if learned.late.contains(name) {
                    0
                } else {
                    1
                };
                (
                    self.seen.borrow().get(name).copied().unwrap_or(usize::MAX),
                    class,
                )
            }
        };
        (
            range.as_singleton().is_some(),
            class,
            statistics.conflict_count(),
            Reverse(order),
        )
    }

    fn choose_version(
        &self,
        package: &Node,
        range: &Ranges<Version>,
    ) -> Result<Option<Version>, ProviderError> {
        let name = match package {
            Node::Root => return Ok(Some(Version::new([0]))),
            Node::Dist(name) | Node::Extra(name, _) => name,
        };
        if let Some(direct) = self.input.direct.get(name) {
            let version = &direct.file.version;
            return Ok(range.contains(version).then(|| version.clone()));
        }
        if let Some(installed) = self.input.below.get(name)
            && range.contains(&installed.version)
        {
            return Ok(Some(installed.version.clone()));
        }
        if matches!(package, Node::Dist(_)) {
            self.note_rejection(name, range)?;
        }
        let files = self.index.files(name)?;
        let hashes = pinned_hashes(self.input.requirements, name);
        let formats = self.input.requirements.formats.formats(name);
        let mut versions: Vec<&Version> = files.iter().map(|f| &f.version).collect();
        versions.sort_unstable_by(|a, b| b.cmp(a));
        versions.dedup();
        let exact = range.as_singleton().is_some();
        let fits = |version: &Version, formats: Formats| {
            range.contains(version)
                && best_file(&files, version, self.fit, &hashes, exact, formats).is_some()
        };
        let usable = |version: &&&Version| fits(version, formats);
        let has_wheel = |version: &&&Version| {
            best_file(&files, version, self.fit, &hashes, exact, formats)
                .is_some_and(|f| matches!(f.kind, DistKind::Wheel(_)))
        };
        // Pre-releases only where the request names one or nothing else fits (uv's default).
        // A version with a wheel first (pip's --prefer-binary): backtracking into old,
        // sdist-only releases would build each of them on the host to read its metadata.
        let allow_pre = self.input.requirements.pre;
        let finals = || {
            versions
                .iter()
                .filter(move |v| allow_pre || !v.any_prerelease())
        };
        let chosen = finals()
            .filter(usable)
            .find(has_wheel)
            .or_else(|| finals().find(usable))
            .or_else(|| versions.iter().find(usable));
        tracing::debug!(%package, %range, chosen = ?chosen.map(ToString::to_string), "pip resolution: version chosen");
        if let (Node::Dist(_), Some(version)) = (package, chosen) {
            self.chosen
                .borrow_mut()
                .insert(name.clone(), (*version).clone());
        }
        if chosen.is_none() && !formats.source && versions.iter().any(|v| fits(v, Formats::ANY)) {
            self.refused_sources.borrow_mut().insert(name.clone());
        }
        Ok(chosen.map(|v| (*v).clone()))
    }

    fn get_dependencies(
        &self,
        package: &Node,
        version: &Version,
    ) -> Result<Dependencies<Node, Ranges<Version>, String>, ProviderError> {
        let mut deps: BTreeMap<Node, Ranges<Version>> = BTreeMap::new();
        match package {
            Node::Root => {
                for Pinned { requirement, .. } in &self.input.requirements.requirements {
                    if requirement.marker.evaluate(&self.environment, &[]) {
                        self.add_requirement(&mut deps, requirement, (package, version));
                    }
                }
                for root in self.input.direct_roots {
                    if !root.marker.evaluate(&self.environment, &[]) {
                        continue;
                    }
                    self.note(&root.name);
                    let mut add = |node: Node| {
                        deps.entry(node).or_insert_with(Ranges::full);
                    };
                    add(Node::Dist(root.name.clone()));
                    for extra in &root.extras {
                        add(Node::Extra(root.name.clone(), extra.to_string()));
                    }
                }
                for name in self.pinned {
                    let Some(installed) = self.input.below.get(name) else {
                        continue;
                    };
                    // Stays as installed, and so do its requirements: asking for another
                    // version of it, or of what it requires, is a conflict that names it.
                    self.note(name);
                    let pin = Ranges::singleton(installed.version.clone());
                    deps.entry(Node::Dist(name.clone()))
                        .and_modify(|r: &mut Ranges<Version>| *r = r.intersection(&pin))
                        .or_insert(pin);
                }
            }
            Node::Dist(name) => {
                if !self.input.direct.contains_key(name) {
                    self.prefetch_older(name, version);
                }
                let (requires_python, requires_dist) = self.requirements_of(name, version)?;
                if let Some(python) = &requires_python
                    && !python.contains(&self.fit.python)
                {
                    return Ok(Dependencies::Unavailable(format!(
                        "requires Python {python}, the image has {}",
                        self.target.version
                    )));
                }
                for requirement in &requires_dist {
                    if requirement.marker.evaluate(&self.environment, &[]) {
                        self.add_requirement(&mut deps, requirement, (package, version));
                    }
                }
                let stated = deps
                    .iter()
                    .filter_map(|(node, range)| match node {
                        Node::Dist(dep) => Some((dep.clone(), range.clone())),
                        _ => None,
                    })
                    .collect();
                self.stated
                    .borrow_mut()
                    .insert((name.clone(), version.clone()), stated);
            }
            Node::Extra(name, extra) => {
                deps.insert(Node::Dist(name.clone()), Ranges::singleton(version.clone()));
                let (_, requires_dist) = self.requirements_of(name, version)?;
                let extra_name =
                    ExtraName::from_str(extra).map_err(|source| ProviderError::Extra {
                        extra: extra.clone(),
                        name: name.clone(),
                        source,
                    })?;
                let extras = [extra_name];
                for requirement in &requires_dist {
                    if requirement.marker.evaluate(&self.environment, &extras)
                        && !requirement.marker.evaluate(&self.environment, &[])
                    {
                        self.add_requirement(&mut deps, requirement, (package, version));
                    }
                }
            }
        }
        Ok(Dependencies::Available(
            deps.into_iter().collect::<DependencyConstraints<_, _>>(),
        ))
    }
}
