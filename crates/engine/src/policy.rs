//! The compiled residency policy: a validated, normalised policy document (Python parses the
//! YAML, checks it with line numbers and resolves every location token to region ids) turned
//! into bit sets, and the decision semantics over a dataset's effective attributes.
//!
//! For operation `op` and region `r` (see docs/router.md):
//! 1. applicable rules: those whose `match` holds on the effective labels (hierarchically: a
//!    rule on `PII` applies to `PII.CONTACT`) and origins;
//! 2. base = the intersection of the applicable rules' `allow` sets for `op`, or the defaults
//!    (`classified` when the dataset has a label, else `unclassified`); allowed = base minus
//!    the union of their `deny` sets;
//! 3. an unexpired exemption covering (dataset, op, r) allows `r`, except against rules with
//!    `exemptible: false`;
//! 4. ALLOW iff `r` is allowed; every DENY names each rule that excluded `r`, with the lineage
//!    path of the label/origin that made the rule apply, and the default when it denied.
//!
//! Steps 1-2 depend only on the set of effective labels and origins (the *signature*), so their
//! result is computed once per distinct set and cached; so is each DENY's explanation minus the
//! dataset's lineage paths, per (signature, operation, region).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, OnceLock};

use hashbrown::{DefaultHashBuilder, HashTable};
use parking_lot::{Mutex, RwLock};
use serde::Deserialize;

use crate::bits::Bits;
use crate::glob::{is_glob, Glob};
use crate::reason_texts::ReasonTexts;
use crate::symbols::{Interner, Key, Symbols};
use crate::text::py_repr;
use crate::Error;

/// Distinct signatures are few in practice; the bound only stops a degenerate catalog from
/// growing the cache without limit (it is rebuilt on demand).
const SIGNATURE_CACHE_LIMIT: usize = 65_536;
const REGION_LIST_CACHE_LIMIT: usize = 65_536;

// ---- the document ------------------------------------------------------------------------

/// `store` or `process`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Store = 0,
    Process = 1,
}

impl Operation {
    pub const ALL: [Operation; 2] = [Operation::Store, Operation::Process];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Store => "store",
            Operation::Process => "process",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    Allow,
    Deny,
}

/// What a dataset known only as a lineage output (a derived placeholder) is judged by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UndescribedOutputs {
    /// By what it inherits, like a described dataset without labels of its own.
    Inherit,
    /// Not at all: undescribed, every decision DENY / UNKNOWN_DATASET.
    Deny,
}

/// The normalised policy document the router passes (JSON). Location tokens are already
/// resolved: every region list holds region ids of `regions`, origin matches hold countries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// `metadata.version` as written.
    pub version: String,
    pub content_hash: String,
    /// Every region id of the registry (builtin and the policy's private regions).
    pub regions: Vec<String>,
    #[serde(default)]
    pub rules: Vec<RuleDocument>,
    #[serde(default)]
    pub declassifiers: Vec<DeclassifierDocument>,
    #[serde(default)]
    pub exemptions: Vec<ExemptionDocument>,
    pub defaults: DefaultsDocument,
    /// Recorded in the policy history before declassifiers named their jobs: its decisions
    /// keep the messages they had.
    #[serde(default)]
    pub legacy: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDocument {
    pub id: String,
    #[serde(default)]
    pub citation: String,
    /// Labels any of which (or a descendant) makes the rule apply; empty: labels do not matter.
    #[serde(default)]
    pub classifications: Vec<String>,
    /// None: origins do not matter.
    #[serde(default)]
    pub origins: Option<OriginsDocument>,
    #[serde(default)]
    pub store: Option<PermissionDocument>,
    #[serde(default)]
    pub process: Option<PermissionDocument>,
    pub exemptible: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginsDocument {
    /// `*`: any dataset that has an origin.
    pub everywhere: bool,
    #[serde(default)]
    pub countries: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionDocument {
    /// None: the rule does not restrict the base set for this operation.
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    #[serde(default)]
    pub deny: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclassifierDocument {
    pub transform: String,
    pub removes: Vec<String>,
    /// Glob patterns over job ids `namespace/name`; None (a policy written before grants
    /// existed): any job.
    #[serde(default)]
    pub jobs: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExemptionDocument {
    pub id: String,
    /// An exact dataset id, or a glob when it holds `*`, `?` or `[`.
    pub dataset: String,
    pub operations: Vec<Operation>,
    pub regions: Vec<String>,
    /// Microseconds since the Unix epoch; the exemption applies strictly before.
    pub expires_micros: i64,
    /// The expiry as messages show it (Python's `isoformat` of the time as written).
    pub expires: String,
    pub approved_by: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultsDocument {
    pub classified: Verb,
    pub unclassified: Verb,
    pub undescribed_outputs: UndescribedOutputs,
}

// ---- verdicts ----------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Allow = 0,
    Deny = 1,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReasonCode {
    RuleDenied = 0,
    DefaultDenied = 1,
    UnknownDataset = 2,
    ExemptionApplied = 3,
    StaleCatalog = 4,
}

impl ReasonCode {
    /// The code named `name` (`as_str`).
    pub fn from_name(name: &str) -> Option<ReasonCode> {
        use ReasonCode::*;
        [RuleDenied, DefaultDenied, UnknownDataset, ExemptionApplied, StaleCatalog]
            .into_iter()
            .find(|code| code.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::RuleDenied => "RULE_DENIED",
            ReasonCode::DefaultDenied => "DEFAULT_DENIED",
            ReasonCode::UnknownDataset => "UNKNOWN_DATASET",
            ReasonCode::ExemptionApplied => "EXEMPTION_APPLIED",
            ReasonCode::StaleCatalog => "STALE_CATALOG",
        }
    }
}

/// Why a decision came out as it did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason {
    pub code: ReasonCode,
    pub message: Arc<str>,
    pub rule_id: Arc<str>,
    pub citation: Arc<str>,
    /// Dataset ids from the one that brought the matching label/origin to the decided one.
    pub path: Vec<Arc<str>>,
}

/// A sorted list of region ids, shared by every verdict with the same allowed set. `id` is
/// unique among the lists of one compiled policy (callers cache encodings by it).
#[derive(Debug)]
pub struct RegionList {
    pub id: u32,
    pub names: Box<[Arc<str>]>,
    bits: Bits,
}

/// What the policy says for one (dataset, operation, region).
#[derive(Clone, Debug)]
pub struct Verdict {
    pub outcome: Outcome,
    /// Every region where the operation is allowed for the dataset, exemptions included.
    pub allowed: Arc<RegionList>,
    pub reasons: Vec<Reason>,
    /// The dataset is not described: it is judged by what it inherits (a derived placeholder).
    pub inherited_only: bool,
}

// ---- what a decision reads of a dataset --------------------------------------------------

/// A dataset's effective attributes as the policy reads them.
pub trait Attributes {
    fn dataset_id(&self) -> &Arc<str>;
    /// The effective labels and origins, ascending.
    fn keys(&self) -> impl Iterator<Item = Key> + '_;
    /// The number of lineage steps from the dataset that brought `key` (0: its own).
    fn distance(&self, key: Key) -> Option<u32>;
    /// A shortest lineage path for `key`, from the dataset that brought it to this one.
    fn path(&self, key: Key) -> Vec<Arc<str>>;
}

// ---- compiled ----------------------------------------------------------------------------

#[derive(Debug)]
struct Rule {
    id: Arc<str>,
    citation: Arc<str>,
    labels: Vec<String>,
    origins: Option<OriginMatch>,
    allow: [Option<Bits>; 2],
    deny: [Bits; 2],
    exemptible: bool,
}

#[derive(Debug)]
struct OriginMatch {
    everywhere: bool,
    countries: Vec<String>,
}

impl OriginMatch {
    fn matches(&self, origin: &str) -> bool {
        self.everywhere || self.countries.iter().any(|c| c == origin)
    }
}

#[derive(Debug)]
struct Exemption {
    id: Arc<str>,
    operations: [bool; 2],
    regions: Bits,
    expires_micros: i64,
    expires: String,
    approved_by: String,
}

/// A declassifier as the index reads it: which transform, which jobs, which labels.
#[derive(Debug)]
pub struct Declassifier {
    pub removes: Vec<String>,
    jobs: Option<Vec<Glob>>,
}

impl Declassifier {
    /// Whether lineage recorded by `job` (an id as recorded; one without `/` is in namespace
    /// `default`) may apply this declassifier. An empty job is granted only by a policy
    /// written before grants existed (no `jobs`: any job).
    pub fn grants(&self, job: &str) -> bool {
        let Some(patterns) = &self.jobs else {
            return true;
        };
        if job.is_empty() {
            return false;
        }
        let qualified;
        let job = if job.contains('/') {
            job
        } else {
            qualified = format!("default/{job}");
            &qualified
        };
        patterns.iter().any(|pattern| pattern.matches(job))
    }
}

#[derive(Debug)]
struct OpResult {
    allowed: Bits,
    /// Excluded by non-exemptible rules: no exemption reaches these.
    hard_block: Bits,
    default_denies: bool,
    allowed_list: Arc<RegionList>,
}

/// Steps 1-2 for one set of effective labels and origins.
struct Signature {
    keys: Box<[Key]>,
    /// The text of each key (messages name labels and origins).
    texts: Vec<(Key, Arc<str>)>,
    /// Applicable rules (indexes into the policy's rules), in policy order.
    rules: Vec<usize>,
    classified: bool,
    undescribed: bool,
    ops: [OpResult; 2],
    /// By applicable rule: the effective labels and origins that made it apply, sorted by text
    /// (empty when the rule does not look at them).
    evidence: Vec<(Vec<Key>, Vec<Key>)>,
    /// By operation, by region index: the DENY explanation, built on first use.
    explanations: [Box<[OnceLock<Arc<Explanation>>]>; 2],
}

/// Why a region is excluded for a (signature, operation): the excluding rules in policy order
/// and the DEFAULT_DENIED reason when the base came from a `deny` default.
struct Explanation {
    rules: Vec<RuleReason>,
    default: Option<Reason>,
}

/// One excluding rule's RULE_DENIED reason minus the dataset's lineage path.
struct RuleReason {
    /// Index into the signature's rules (and evidence).
    position: usize,
    rule: usize,
    /// "rule <id> (<citation>): <op> in <region> <how>"
    prefix: String,
    /// Final when at most one label and one origin are candidates; else the dataset's paths
    /// choose which are named, and `messages` caches the texts by that choice.
    message: Option<Arc<str>>,
    messages: Mutex<HashMap<Evidence, Arc<str>>>,
}

/// The label and/or origin a RULE_DENIED message names.
type Evidence = (Option<Key>, Option<Key>);

/// A policy ready to decide. Immutable apart from its caches; shared between threads.
pub struct CompiledPolicy {
    pub version: Arc<str>,
    pub content_hash: String,
    regions: Interner,
    everywhere: Bits,
    rules: Vec<Rule>,
    by_label: HashMap<String, Bits>,
    by_origin: HashMap<String, Bits>,
    ignores_labels: Bits,
    ignores_origins: Bits,
    any_origin: Bits,
    exemptions: Vec<Exemption>,
    /// Every exemption's expiry, ascending (`expiry_epoch`).
    expiries: Box<[i64]>,
    exact_exemptions: HashMap<String, Vec<usize>>,
    glob_exemptions: Vec<(usize, Glob)>,
    declassifiers: HashMap<String, Declassifier>,
    defaults: DefaultsDocument,
    legacy: bool,
    empty: Arc<str>,
    no_regions: Arc<RegionList>,
    signatures: RwLock<SignatureCache>,
    region_lists: Mutex<HashMap<Bits, Arc<RegionList>>>,
    next_list_id: std::sync::atomic::AtomicU32,
    /// The texts of the reasons its verdicts give, as answers and log entries render them.
    pub reason_texts: ReasonTexts,
}

#[derive(Default)]
struct SignatureCache {
    table: HashTable<Arc<Signature>>,
    hasher: DefaultHashBuilder,
}

impl CompiledPolicy {
    /// Compiles a normalised document. Errors name what is inconsistent (a region id that is
    /// not in `regions`, a duplicate id): Python validated the document, so these are bugs
    /// or a hand-made document.
    pub fn compile(document: PolicyDocument) -> Result<CompiledPolicy, Error> {
        let mut region_ids = document.regions.clone();
        region_ids.sort();
        region_ids.dedup();
        if region_ids.len() != document.regions.len() {
            return Err(Error::Policy("duplicate region ids in `regions`".into()));
        }
        let mut regions = Interner::default();
        for id in &region_ids {
            regions.intern(id);
        }
        let size = regions.len();
        let bits_of = |ids: &[String], what: &str| -> Result<Bits, Error> {
            let mut bits = Bits::empty(size);
            for id in ids {
                let index = regions
                    .get(id)
                    .ok_or_else(|| Error::Policy(format!("{what}: region {id:?} is not in `regions`")))?;
                bits.insert(index as usize);
            }
            Ok(bits)
        };
        let mut rules = Vec::with_capacity(document.rules.len());
        for rule in &document.rules {
            let mut allow = [None, None];
            let mut deny = [Bits::empty(size), Bits::empty(size)];
            for op in Operation::ALL {
                let permission = match op {
                    Operation::Store => &rule.store,
                    Operation::Process => &rule.process,
                };
                if let Some(permission) = permission {
                    let what = format!("rule {}", rule.id);
                    if let Some(ids) = &permission.allow {
                        allow[op.slot()] = Some(bits_of(ids, &what)?);
                    }
                    deny[op.slot()] = bits_of(&permission.deny, &what)?;
                }
            }
            rules.push(Rule {
                id: Arc::from(rule.id.as_str()),
                citation: Arc::from(rule.citation.as_str()),
                labels: rule.classifications.clone(),
                origins: rule
                    .origins
                    .as_ref()
                    .map(|o| OriginMatch { everywhere: o.everywhere, countries: o.countries.clone() }),
                allow,
                deny,
                exemptible: rule.exemptible,
            });
        }
        let count = rules.len();
        let mut by_label: HashMap<String, Bits> = HashMap::new();
        let mut by_origin: HashMap<String, Bits> = HashMap::new();
        let (mut ignores_labels, mut ignores_origins, mut any_origin) =
            (Bits::empty(count), Bits::empty(count), Bits::empty(count));
        for (index, rule) in rules.iter().enumerate() {
            if rule.labels.is_empty() {
                ignores_labels.insert(index);
            }
            for label in &rule.labels {
                by_label.entry(label.clone()).or_insert_with(|| Bits::empty(count)).insert(index);
            }
            match &rule.origins {
                None => ignores_origins.insert(index),
                Some(origins) if origins.everywhere => any_origin.insert(index),
                Some(origins) => {
                    for country in &origins.countries {
                        by_origin.entry(country.clone()).or_insert_with(|| Bits::empty(count)).insert(index);
                    }
                }
            }
        }
        let mut exemptions = Vec::with_capacity(document.exemptions.len());
        let mut exact_exemptions: HashMap<String, Vec<usize>> = HashMap::new();
        let mut glob_exemptions = Vec::new();
        for (index, exemption) in document.exemptions.iter().enumerate() {
            let mut operations = [false; 2];
            for op in &exemption.operations {
                operations[op.slot()] = true;
            }
            if is_glob(&exemption.dataset) {
                glob_exemptions.push((index, Glob::new(&exemption.dataset)));
            } else {
                exact_exemptions.entry(exemption.dataset.clone()).or_default().push(index);
            }
            exemptions.push(Exemption {
                id: Arc::from(exemption.id.as_str()),
                operations,
                regions: bits_of(&exemption.regions, &format!("exemption {}", exemption.id))?,
                expires_micros: exemption.expires_micros,
                expires: exemption.expires.clone(),
                approved_by: exemption.approved_by.clone(),
            });
        }
        let mut expiries: Box<[i64]> = exemptions.iter().map(|e| e.expires_micros).collect();
        expiries.sort_unstable();
        let mut declassifiers = HashMap::new();
        for declassifier in &document.declassifiers {
            let compiled = Declassifier {
                removes: declassifier.removes.clone(),
                jobs: declassifier.jobs.as_ref().map(|jobs| jobs.iter().map(|p| Glob::new(p)).collect()),
            };
            if declassifiers.insert(declassifier.transform.clone(), compiled).is_some() {
                return Err(Error::Policy(format!(
                    "duplicate declassifier for transform {:?}",
                    declassifier.transform
                )));
            }
        }
        let empty = Arc::<str>::from("");
        let no_regions = Arc::new(RegionList { id: 0, names: Box::new([]), bits: Bits::empty(size) });
        Ok(CompiledPolicy {
            version: Arc::from(document.version.as_str()),
            content_hash: document.content_hash,
            everywhere: Bits::full(size),
            regions,
            rules,
            by_label,
            by_origin,
            ignores_labels,
            ignores_origins,
            any_origin,
            exemptions,
            expiries,
            exact_exemptions,
            glob_exemptions,
            declassifiers,
            defaults: document.defaults,
            legacy: document.legacy,
            empty,
            region_lists: Mutex::new(HashMap::from([(no_regions.bits.clone(), no_regions.clone())])),
            no_regions,
            signatures: RwLock::new(SignatureCache::default()),
            next_list_id: std::sync::atomic::AtomicU32::new(1),
            reason_texts: ReasonTexts::default(),
        })
    }

    /// Parses and compiles a document given as JSON.
    pub fn from_json(json: &str) -> Result<CompiledPolicy, Error> {
        let document: PolicyDocument =
            serde_json::from_str(json).map_err(|e| Error::Policy(format!("policy document: {e}")))?;
        CompiledPolicy::compile(document)
    }

    // ---- what the index and the callers read ---------------------------------------------

    /// The region's index in the registry, or None for a region the policy does not know.
    pub fn region(&self, id: &str) -> Option<u32> {
        self.regions.get(id)
    }

    pub fn region_name(&self, index: u32) -> &Arc<str> {
        self.regions.resolve(index)
    }

    pub fn region_count(&self) -> usize {
        self.regions.len()
    }

    /// The declassifier for lineage recorded with `transform`, if any.
    pub fn declassifier(&self, transform: &str) -> Option<&Declassifier> {
        self.declassifiers.get(transform)
    }

    pub fn undescribed_outputs(&self) -> UndescribedOutputs {
        self.defaults.undescribed_outputs
    }

    /// The first instant after `now` at which an exemption expires (verdicts made at `now` may
    /// change then); None when none is left to expire.
    pub fn next_expiry(&self, now: i64) -> Option<i64> {
        self.exemptions.iter().map(|e| e.expires_micros).filter(|&expires| expires > now).min()
    }

    /// How many exemptions have expired at `now`. Verdicts depend on time only through which
    /// exemptions are unexpired, so verdicts made at two instants of one epoch are the same.
    pub fn expiry_epoch(&self, now: i64) -> u32 {
        self.expiries.partition_point(|&expires| expires <= now) as u32
    }

    /// Whether the policy was recorded before declassifiers named their jobs.
    pub fn legacy(&self) -> bool {
        self.legacy
    }

    /// The empty region list (decisions that allow nowhere without looking at the policy).
    pub fn no_regions(&self) -> &Arc<RegionList> {
        &self.no_regions
    }

    /// The shared empty string (reasons without a rule, citation or path).
    pub fn empty_text(&self) -> &Arc<str> {
        &self.empty
    }

    /// A DENY that no rule gave (an unknown dataset, a stale view, ...): one reason with `code`,
    /// `message` and lineage `path`, no rule or citation, allowed nowhere.
    pub fn plain_denial(&self, code: ReasonCode, message: Arc<str>, path: Vec<Arc<str>>) -> Verdict {
        Verdict {
            outcome: Outcome::Deny,
            allowed: self.no_regions.clone(),
            reasons: vec![Reason { code, message, rule_id: self.empty.clone(), citation: self.empty.clone(), path }],
            inherited_only: false,
        }
    }

    // ---- decisions -----------------------------------------------------------------------

    /// The policy's verdict for `op` on a dataset with these effective attributes in the
    /// region of index `region` (see `region`), at `now` (microseconds since the epoch;
    /// decides which exemptions are unexpired).
    pub fn decide(&self, attrs: &impl Attributes, symbols: &Symbols, op: Operation, region: u32, now: i64) -> Verdict {
        let signature = self.signature(attrs, symbols);
        if signature.undescribed {
            return self.undescribed_verdict(attrs);
        }
        let slot = op.slot();
        let result = &signature.ops[slot];
        let active = self.active_exemptions(attrs.dataset_id(), op, now);
        if !active.is_empty() {
            return self.decide_exempted(attrs, &signature, op, region, &active);
        }
        if result.allowed.contains(region as usize) {
            return Verdict {
                outcome: Outcome::Allow,
                allowed: result.allowed_list.clone(),
                reasons: Vec::new(),
                inherited_only: false,
            };
        }
        let explanation = self.explanation(&signature, slot, region);
        Verdict {
            outcome: Outcome::Deny,
            allowed: result.allowed_list.clone(),
            reasons: self.deny_reasons(&explanation, &signature, attrs, None),
            inherited_only: false,
        }
    }

    /// Every region where `op` is allowed for the dataset now, exemptions included; none when
    /// its provenance is undescribed.
    pub fn allowed_regions(
        &self,
        attrs: &impl Attributes,
        symbols: &Symbols,
        op: Operation,
        now: i64,
    ) -> Arc<RegionList> {
        let signature = self.signature(attrs, symbols);
        if signature.undescribed {
            return self.no_regions.clone();
        }
        let result = &signature.ops[op.slot()];
        let active = self.active_exemptions(attrs.dataset_id(), op, now);
        if active.is_empty() {
            return result.allowed_list.clone();
        }
        self.region_list(&self.exempted_allowed(result, &active))
    }

    fn active_exemptions(&self, dataset_id: &str, op: Operation, now: i64) -> Vec<&Exemption> {
        let mut found: Vec<usize> = self.exact_exemptions.get(dataset_id).cloned().unwrap_or_default();
        for (index, glob) in &self.glob_exemptions {
            if glob.matches(dataset_id) {
                found.push(*index);
            }
        }
        found.sort_unstable();
        found
            .into_iter()
            .map(|index| &self.exemptions[index])
            .filter(|e| e.operations[op.slot()] && now < e.expires_micros)
            .collect()
    }

    fn exempted_allowed(&self, result: &OpResult, active: &[&Exemption]) -> Bits {
        let mut exempted = Bits::empty(self.regions.len());
        for exemption in active {
            exempted.union_with(&exemption.regions);
        }
        exempted.subtract(&result.hard_block);
        let mut allowed = result.allowed.clone();
        allowed.union_with(&exempted);
        allowed
    }

    fn decide_exempted(
        &self,
        attrs: &impl Attributes,
        signature: &Signature,
        op: Operation,
        region: u32,
        active: &[&Exemption],
    ) -> Verdict {
        let slot = op.slot();
        let result = &signature.ops[slot];
        let allowed_bits = self.exempted_allowed(result, active);
        let allowed = self.region_list(&allowed_bits);
        if result.allowed.contains(region as usize) {
            return Verdict { outcome: Outcome::Allow, allowed, reasons: Vec::new(), inherited_only: false };
        }
        let explanation = self.explanation(signature, slot, region);
        let covering = active.iter().find(|e| e.regions.contains(region as usize));
        if allowed_bits.contains(region as usize) {
            let exemption = covering.expect("an exemption opened the region");
            let mut overridden: Vec<&str> = explanation.rules.iter().map(|item| &*self.rules[item.rule].id).collect();
            if result.default_denies {
                overridden.push("defaults");
            }
            let message = format!(
                "exemption {} (approved by {}, expires {}) allows {} in {}; overrides {}",
                exemption.id,
                exemption.approved_by,
                exemption.expires,
                op.as_str(),
                self.regions.resolve(region),
                overridden.join(", ")
            );
            let reason = Reason {
                code: ReasonCode::ExemptionApplied,
                message: Arc::from(message),
                rule_id: exemption.id.clone(),
                citation: self.empty.clone(),
                path: Vec::new(),
            };
            return Verdict { outcome: Outcome::Allow, allowed, reasons: vec![reason], inherited_only: false };
        }
        Verdict {
            outcome: Outcome::Deny,
            allowed,
            reasons: self.deny_reasons(&explanation, signature, attrs, covering.copied()),
            inherited_only: false,
        }
    }

    fn undescribed_verdict(&self, attrs: &impl Attributes) -> Verdict {
        let path = attrs.path(Key::UNDESCRIBED);
        let source = path.first().map_or_else(|| attrs.dataset_id().clone(), Arc::clone);
        let message = format!(
            "{} derives from {}, which the catalog does not describe (a lineage placeholder or a deleted \
             dataset): register it to decide",
            py_repr(attrs.dataset_id()),
            py_repr(&source)
        );
        self.plain_denial(ReasonCode::UnknownDataset, Arc::from(message), path)
    }

    /// The DENY reasons of `explanation` for one dataset: each rule's reason names the matched
    /// label (else origin) with the shortest lineage path, and carries that path.
    fn deny_reasons(
        &self,
        explanation: &Explanation,
        signature: &Signature,
        attrs: &impl Attributes,
        blocked: Option<&Exemption>,
    ) -> Vec<Reason> {
        let mut reasons = Vec::with_capacity(explanation.rules.len() + 1);
        for item in &explanation.rules {
            let rule = &self.rules[item.rule];
            let (labels, origins) = &signature.evidence[item.position];
            let label = shortest(labels, attrs);
            let origin = shortest(origins, attrs);
            let path = match label.or(origin) {
                Some(key) => attrs.path(key),
                None => vec![attrs.dataset_id().clone()],
            };
            let mut message = match &item.message {
                Some(message) => message.clone(),
                None => item
                    .messages
                    .lock()
                    .entry((label, origin))
                    .or_insert_with(|| {
                        let symbols_text = |key: Option<Key>| key.map(|k| attrs_text(signature, k));
                        Arc::from(format!("{}{}", item.prefix, matched(symbols_text(label), symbols_text(origin))))
                    })
                    .clone(),
            };
            if let Some(exemption) = blocked {
                if !rule.exemptible {
                    message =
                        Arc::from(format!("{message}; not exemptible, so exemption {} does not apply", exemption.id));
                }
            }
            reasons.push(Reason {
                code: ReasonCode::RuleDenied,
                message,
                rule_id: rule.id.clone(),
                citation: rule.citation.clone(),
                path,
            });
        }
        if let Some(default) = &explanation.default {
            reasons.push(default.clone());
        }
        reasons
    }

    // ---- signatures and explanations ------------------------------------------------------

    fn signature(&self, attrs: &impl Attributes, symbols: &Symbols) -> Arc<Signature> {
        let hash = {
            let mut hasher = self.signatures.read().hasher.build_hasher();
            for key in attrs.keys() {
                hasher.write_u32(key.raw());
            }
            hasher.finish()
        };
        let same = |signature: &Arc<Signature>| signature.keys.iter().copied().eq(attrs.keys());
        if let Some(found) = self.signatures.read().table.find(hash, same) {
            return found.clone();
        }
        let keys: Box<[Key]> = attrs.keys().collect();
        let signature = Arc::new(self.compute_signature(keys, symbols));
        let mut cache = self.signatures.write();
        if let Some(found) = cache.table.find(hash, same) {
            return found.clone();
        }
        if cache.table.len() >= SIGNATURE_CACHE_LIMIT {
            cache.table.clear();
        }
        let SignatureCache { table, hasher } = &mut *cache;
        table.insert_unique(hash, signature.clone(), |s| {
            let mut h = hasher.build_hasher();
            for key in s.keys.iter() {
                h.write_u32(key.raw());
            }
            h.finish()
        });
        signature
    }

    fn compute_signature(&self, keys: Box<[Key]>, symbols: &Symbols) -> Signature {
        let mut labels: Vec<(Key, &str)> = Vec::new();
        let mut origins: Vec<(Key, &str)> = Vec::new();
        for &key in keys.iter() {
            let text = &**symbols.key_text(key);
            if key.is_origin() {
                origins.push((key, text));
            } else {
                labels.push((key, text));
            }
        }
        labels.sort_by(|a, b| a.1.cmp(b.1));
        origins.sort_by(|a, b| a.1.cmp(b.1));
        let count = self.rules.len();
        let mut by_label = self.ignores_labels.clone();
        for (_, label) in &labels {
            // The label and each of its ancestors (`PII.CONTACT`, then `PII`).
            for end in label.match_indices('.').map(|(i, _)| i).chain([label.len()]) {
                if let Some(rules) = self.by_label.get(&label[..end]) {
                    by_label.union_with(rules);
                }
            }
        }
        let mut by_origin = self.ignores_origins.clone();
        if !origins.is_empty() {
            by_origin.union_with(&self.any_origin);
        }
        for (_, origin) in &origins {
            if let Some(rules) = self.by_origin.get(*origin) {
                by_origin.union_with(rules);
            }
        }
        let mut mask = by_label;
        mask.intersect_with(&by_origin);
        let rules: Vec<usize> = mask.ones().filter(|&index| index < count).collect();
        let classified = !labels.is_empty();
        let ops = Operation::ALL.map(|op| self.op_result(&rules, classified, op.slot()));
        let evidence = rules
            .iter()
            .map(|&index| {
                let rule = &self.rules[index];
                let matched_labels = if rule.labels.is_empty() {
                    Vec::new()
                } else {
                    labels
                        .iter()
                        .filter(|(_, label)| rule.labels.iter().any(|r| label_matches(r, label)))
                        .map(|(key, _)| *key)
                        .collect()
                };
                let matched_origins = match &rule.origins {
                    None => Vec::new(),
                    Some(origin_match) => {
                        origins.iter().filter(|(_, origin)| origin_match.matches(origin)).map(|(key, _)| *key).collect()
                    }
                };
                (matched_labels, matched_origins)
            })
            .collect();
        let undescribed = keys.contains(&Key::UNDESCRIBED);
        let regions = self.regions.len();
        let explanations = [(); 2].map(|_| (0..regions).map(|_| OnceLock::new()).collect());
        let texts = keys.iter().map(|&key| (key, symbols.key_text(key).clone())).collect();
        Signature { texts, keys, rules, classified, undescribed, ops, evidence, explanations }
    }

    fn op_result(&self, rules: &[usize], classified: bool, slot: usize) -> OpResult {
        let size = self.regions.len();
        let mut base: Option<Bits> = None;
        let mut deny = Bits::empty(size);
        let mut hard_block = Bits::empty(size);
        for &index in rules {
            let rule = &self.rules[index];
            if let Some(allow) = &rule.allow[slot] {
                match &mut base {
                    None => base = Some(allow.clone()),
                    Some(base) => base.intersect_with(allow),
                }
            }
            deny.union_with(&rule.deny[slot]);
            if !rule.exemptible {
                hard_block.union_with(&rule.deny[slot]);
                if let Some(allow) = &rule.allow[slot] {
                    let mut outside = self.everywhere.clone();
                    outside.subtract(allow);
                    hard_block.union_with(&outside);
                }
            }
        }
        let mut default_denies = false;
        let mut allowed = match base {
            Some(base) => base,
            None => {
                let verb = if classified { self.defaults.classified } else { self.defaults.unclassified };
                default_denies = verb == Verb::Deny;
                if default_denies {
                    Bits::empty(size)
                } else {
                    self.everywhere.clone()
                }
            }
        };
        allowed.subtract(&deny);
        let allowed_list = self.region_list(&allowed);
        OpResult { allowed, hard_block, default_denies, allowed_list }
    }

    fn explanation(&self, signature: &Signature, slot: usize, region: u32) -> Arc<Explanation> {
        signature.explanations[slot][region as usize]
            .get_or_init(|| Arc::new(self.explain(signature, slot, region)))
            .clone()
    }

    /// Everything in a DENY's reasons for (signature, operation, region) except each
    /// dataset's lineage paths.
    fn explain(&self, signature: &Signature, slot: usize, region: u32) -> Explanation {
        let op = Operation::ALL[slot];
        let region_name = self.regions.resolve(region);
        let bit = region as usize;
        let mut items = Vec::new();
        for (position, &index) in signature.rules.iter().enumerate() {
            let rule = &self.rules[index];
            let outside = rule.allow[slot].as_ref().is_some_and(|allow| !allow.contains(bit));
            let denied = rule.deny[slot].contains(bit);
            if !outside && !denied {
                continue;
            }
            let (labels, origins) = &signature.evidence[position];
            let how = if denied { "is denied" } else { "is outside the locations it allows" };
            let citation = if rule.citation.is_empty() { String::new() } else { format!(" ({})", rule.citation) };
            let prefix = format!("rule {}{}: {} in {} {}", rule.id, citation, op.as_str(), region_name, how);
            let single = labels.len() == usize::from(!rule.labels.is_empty())
                && origins.len() == usize::from(rule.origins.is_some());
            let message = single.then(|| {
                let label = labels.first().map(|&k| attrs_text(signature, k));
                let origin = origins.first().map(|&k| attrs_text(signature, k));
                Arc::from(format!("{prefix}{}", matched(label, origin)))
            });
            items.push(RuleReason { position, rule: index, prefix, message, messages: Mutex::default() });
        }
        let default = signature.ops[slot].default_denies.then(|| {
            let kind = if signature.classified { "classified" } else { "unclassified" };
            Reason {
                code: ReasonCode::DefaultDenied,
                message: Arc::from(format!(
                    "no applicable rule has an allow list for {} and defaults.{kind} is deny",
                    op.as_str()
                )),
                rule_id: self.empty.clone(),
                citation: self.empty.clone(),
                path: Vec::new(),
            }
        });
        Explanation { rules: items, default }
    }

    fn region_list(&self, bits: &Bits) -> Arc<RegionList> {
        let mut lists = self.region_lists.lock();
        if let Some(list) = lists.get(bits) {
            return list.clone();
        }
        if lists.len() >= REGION_LIST_CACHE_LIMIT {
            lists.clear();
        }
        let id = self.next_list_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let names = bits.ones().map(|index| self.regions.resolve(index as u32).clone()).collect();
        let list = Arc::new(RegionList { id, names, bits: bits.clone() });
        lists.insert(bits.clone(), list.clone());
        list
    }
}

impl RegionList {
    /// Whether the region of this index (in the policy's registry) is in the list.
    pub fn contains(&self, region: u32) -> bool {
        self.bits.contains(region as usize)
    }
}

/// True when `label` is `rule_label` or one of its descendants (`PII` matches `PII.CONTACT`).
pub fn label_matches(rule_label: &str, label: &str) -> bool {
    label == rule_label
        || (label.len() > rule_label.len()
            && label.starts_with(rule_label)
            && label.as_bytes()[rule_label.len()] == b'.')
}

/// The key of `candidates` (sorted by text) with the shortest lineage path; ties go to the
/// first, for stable output.
fn shortest(candidates: &[Key], attrs: &impl Attributes) -> Option<Key> {
    let mut best: Option<(Key, u32)> = None;
    for &key in candidates {
        let distance = attrs.distance(key).unwrap_or(u32::MAX);
        if best.is_none_or(|(_, d)| distance < d) {
            best = Some((key, distance));
        }
    }
    best.map(|(key, _)| key)
}

/// The evidence part of a RULE_DENIED message.
fn matched(label: Option<Arc<str>>, origin: Option<Arc<str>>) -> String {
    match (label, origin) {
        (Some(label), Some(origin)) => format!("; matched classification {label} and origin {origin}"),
        (Some(label), None) => format!("; matched classification {label}"),
        (None, Some(origin)) => format!("; matched origin {origin}"),
        (None, None) => "; applies to every dataset".to_owned(),
    }
}

fn attrs_text(signature: &Signature, key: Key) -> Arc<str> {
    signature.texts.iter().find(|(k, _)| *k == key).map(|(_, text)| text.clone()).expect("a key of the signature")
}
