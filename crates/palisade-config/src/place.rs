//! Gives a place to the problems that validation reports without one, and drops those that
//! only follow from a value already reported.
//!
//! Semantic checks name what they are about at the start of their message, by one convention:
//! `[section] key …`, `[section.sub] key …`, `[section]: key …`, `jail "NAME": key …` or
//! `responder "NAME": key …`. This finds that key in the file (its value), else the section's
//! header or the jail's / responder's `name`. A check added for a new section is placed
//! without code of its own, as long as its message follows the convention.

use crate::{Locator, Problem};
use toml::de::{DeTable, DeValue};

/// `problems[..parsed]` come from reading the sections, the rest from the semantic checks.
/// A semantic problem is given the place its message names (when it has none) and is dropped
/// when it names a key of the same table that was reported (and taken out) while reading: its
/// default stood in for the checks, and the check runs again once the value is fixed.
pub(crate) fn settle(
    root: &DeTable<'_>,
    loc: &Locator<'_>,
    problems: &mut Vec<Problem>,
    parsed: usize,
) {
    // (table, key) of every entry reported while reading.
    let bad: Vec<(usize, String)> = problems[..parsed]
        .iter()
        .filter(|p| p.line > 0 && p.file == loc.file)
        .filter_map(|p| owner(root, 0, loc.offset(p.line, p.col)))
        .collect();
    let mut i = parsed;
    while i < problems.len() {
        let p = &mut problems[i];
        let about = find(root, &p.message);
        if let Some((table, _)) = about {
            let follows = bad.iter().any(|(t, k)| *t == table && names(&p.message, k));
            if follows {
                problems.remove(i);
                continue;
            }
        }
        if let (0, Some((_, Some(off)))) = (p.line, about) {
            if p.file == loc.file {
                let at = loc.at(off, "");
                p.line = at.line;
                p.col = at.col;
            }
        }
        i += 1;
    }
}

/// Whether `message` names `key` as a word.
fn names(message: &str, key: &str) -> bool {
    message
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|w| w == key)
}

/// The innermost table (by its span's start) with an entry whose key or value holds `off`,
/// and that entry's key.
fn owner(table: &DeTable<'_>, id: usize, off: usize) -> Option<(usize, String)> {
    for (k, v) in table.iter() {
        let inner = match v.get_ref() {
            DeValue::Table(t) => owner(t, v.span().start, off),
            DeValue::Array(a) => a.iter().find_map(|x| match x.get_ref() {
                DeValue::Table(t) => owner(t, x.span().start, off),
                _ => None,
            }),
            _ => None,
        };
        if inner.is_some() {
            return inner;
        }
        if k.span().contains(&off) || v.span().contains(&off) {
            return Some((id, k.get_ref().to_string()));
        }
    }
    None
}

/// The table `message` is about (by its span's start) and the offset of the place it names:
/// the key's value, else the section's header or the item's `name`.
fn find(root: &DeTable<'_>, message: &str) -> Option<(usize, Option<usize>)> {
    if let Some(rest) = message.strip_prefix('[') {
        let (path, rest) = rest.split_once(']')?;
        let mut table = root;
        let mut at = 0;
        for part in path.split('.') {
            let v = table.iter().find(|(k, _)| k.get_ref() == part)?.1;
            at = v.span().start;
            match v.get_ref() {
                DeValue::Table(t) => table = t,
                _ => return Some((at, Some(at))),
            }
        }
        return Some((at, key_in(table, first_word(rest)).or(Some(at))));
    }
    for kind in ["jail", "responder"] {
        let Some(rest) = message
            .strip_prefix(kind)
            .and_then(|r| r.strip_prefix(" \""))
        else {
            continue;
        };
        let (name, rest) = rest.split_once('"')?;
        let DeValue::Array(items) = root.iter().find(|(k, _)| k.get_ref() == kind)?.1.get_ref()
        else {
            return None;
        };
        let (id, table) = items.iter().find_map(|i| match i.get_ref() {
            DeValue::Table(t) => t
                .iter()
                .any(|(k, v)| {
                    k.get_ref() == "name"
                        && matches!(v.get_ref(), DeValue::String(s) if s.as_ref() == name)
                })
                .then_some((i.span().start, t)),
            _ => None,
        })?;
        return Some((
            id,
            key_in(table, first_word(rest)).or_else(|| key_in(table, "name")),
        ));
    }
    None
}

/// The offset of `key`'s value in `table`.
fn key_in(table: &DeTable<'_>, key: &str) -> Option<usize> {
    (!key.is_empty())
        .then(|| table.iter().find(|(k, _)| k.get_ref() == key))
        .flatten()
        .map(|(_, v)| v.span().start)
}

/// The key a message names after its section: `": max_retry must…"` → `max_retry`.
fn first_word(rest: &str) -> &str {
    let rest = rest.trim_start_matches(':').trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    &rest[..end]
}
