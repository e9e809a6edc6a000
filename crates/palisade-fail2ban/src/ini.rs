//! INI files as Python's `configparser` reads them (fail2ban's dialect): `#`/`;` comment
//! lines, `;` inline comments after whitespace, `=` or `:` delimiters, lower-cased option
//! names, values continued on deeper-indented lines (blank lines inside a value kept, trailing
//! ones dropped), `[DEFAULT]` apart from the other sections, duplicates rejected.

use crate::error::LoadError;
use std::path::Path;

/// An insertion-ordered string map (sections have a handful of options).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OMap(pub Vec<(String, String)>);

impl OMap {
    /// Value of `k`.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
    }

    /// Whether `k` is present.
    pub fn contains(&self, k: &str) -> bool {
        self.0.iter().any(|(a, _)| a == k)
    }

    /// Sets `k` (keeps its position if present, appends otherwise).
    pub fn set(&mut self, k: &str, v: String) {
        match self.0.iter_mut().find(|(a, _)| a == k) {
            Some(e) => e.1 = v,
            None => self.0.push((k.to_string(), v)),
        }
    }

    /// Keys in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }
}

/// One parsed file.
#[derive(Debug, Clone, Default)]
pub struct IniFile {
    /// `[DEFAULT]`.
    pub defaults: OMap,
    /// Other sections in file order.
    pub sections: Vec<(String, OMap)>,
}

impl IniFile {
    /// A section by name.
    pub fn section(&self, name: &str) -> Option<&OMap> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
    }
}

fn comment_start(line: &str) -> Option<usize> {
    let t = line.trim();
    if t.starts_with('#') || t.starts_with(';') {
        return Some(0);
    }
    let b = line.as_bytes();
    let mut i = 0;
    while let Some(off) = line[i..].find(';') {
        let idx = i + off;
        if idx == 0 || (b[idx - 1] as char).is_whitespace() {
            return Some(idx);
        }
        i = idx + 1;
    }
    None
}

/// Parses `text` (from `path`, for messages).
pub fn parse(text: &str, path: &Path) -> Result<IniFile, LoadError> {
    let mut f = IniFile::default();
    // current section: None = before any header, Some(None) = DEFAULT, Some(Some(i)) = section
    let mut cur: Option<Option<usize>> = None;
    let mut optname: Option<String> = None;
    let mut values: Vec<String> = Vec::new();
    let mut indent_level = 0usize;
    let mut seen_sections: Vec<String> = Vec::new();
    let mut seen_opts: Vec<(String, String)> = Vec::new();

    fn flush(
        f: &mut IniFile,
        cur: Option<Option<usize>>,
        optname: &mut Option<String>,
        values: &mut Vec<String>,
    ) {
        if let (Some(sec), Some(name)) = (cur, optname.take()) {
            let v = values.join("\n").trim_end().to_string();
            match sec {
                None => f.defaults.set(&name, v),
                Some(i) => f.sections[i].1.set(&name, v),
            }
        }
        values.clear();
    }

    let err = |line: usize, reason: String| LoadError::Syntax {
        path: path.to_path_buf(),
        line,
        reason,
    };

    for (n, raw) in text.split('\n').enumerate() {
        let lineno = n + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let cs = comment_start(raw);
        let value = match cs {
            Some(c) => raw[..c].trim(),
            None => raw.trim(),
        };
        if value.is_empty() {
            if cs.is_none() && cur.is_some() && optname.is_some() {
                values.push(String::new());
            }
            continue;
        }
        let cur_indent = raw.len() - raw.trim_start().len();
        if cur.is_some() && optname.is_some() && cur_indent > indent_level {
            values.push(value.to_string());
            continue;
        }
        indent_level = cur_indent;
        flush(&mut f, cur, &mut optname, &mut values);
        if value.starts_with('[') && value.len() > 2 {
            if let Some(end) = value.rfind(']') {
                if end > 1 {
                    let name = value[1..end].to_string();
                    if seen_sections.contains(&name) {
                        return Err(err(lineno, format!("section [{name}] already exists")));
                    }
                    seen_sections.push(name.clone());
                    if name == "DEFAULT" {
                        cur = Some(None);
                    } else {
                        let idx = match f.sections.iter().position(|(s, _)| *s == name) {
                            Some(i) => i,
                            None => {
                                f.sections.push((name, OMap::default()));
                                f.sections.len() - 1
                            }
                        };
                        cur = Some(Some(idx));
                    }
                    continue;
                }
            }
        }
        if cur.is_none() {
            return Err(err(lineno, "file contains no section headers".into()));
        }
        let delim = value.find(['=', ':']);
        let Some(d) = delim else {
            return Err(err(lineno, format!("cannot parse line {value:?}")));
        };
        let name = value[..d].trim_end().to_lowercase();
        if name.is_empty() {
            return Err(err(lineno, format!("empty option name in {value:?}")));
        }
        let sec_name = match cur {
            Some(Some(i)) => f.sections[i].0.clone(),
            _ => "DEFAULT".to_string(),
        };
        if seen_opts.iter().any(|(s, o)| *s == sec_name && *o == name) {
            return Err(err(
                lineno,
                format!("option {name:?} in section [{sec_name}] already exists"),
            ));
        }
        seen_opts.push((sec_name, name.clone()));
        optname = Some(name);
        values.push(value[d + 1..].trim().to_string());
    }
    flush(&mut f, cur, &mut optname, &mut values);
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_configparser_rules() {
        let t = "# c\n[DEFAULT]\na = 1 ; inline\nb=x;y\n[Definition]\nFailRegex = ^one\n    ^two\n\n    # comment\n    ^three\n\nnext: v\n";
        let f = parse(t, Path::new("t")).unwrap();
        assert_eq!(f.defaults.get("a"), Some("1"));
        assert_eq!(f.defaults.get("b"), Some("x;y"));
        let d = f.section("Definition").unwrap();
        assert_eq!(d.get("failregex"), Some("^one\n^two\n\n^three"));
        assert_eq!(d.get("next"), Some("v"));
        assert!(parse("[a]\nx=1\nx=2\n", Path::new("t")).is_err());
        assert!(parse("x=1\n", Path::new("t")).is_err());
    }
}
