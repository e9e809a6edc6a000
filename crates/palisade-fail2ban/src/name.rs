//! Interned group names: the keys of fail2ban's failure dict, compared by pointer.
//!
//! Every distinct name gets one `&'static str` for the life of the process (names come from
//! filter files, so there are few: fail2ban's tags and a filter's own `<F-…>` groups; a
//! reloaded filter reuses them).

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

/// A group name. Two `Name`s are equal exactly when their texts are.
#[derive(Clone, Copy)]
pub struct Name(&'static str);

static NAMES: LazyLock<Mutex<HashSet<&'static str>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

impl Name {
    /// The interned name for `s`.
    pub fn new(s: &str) -> Name {
        let mut set = NAMES.lock().unwrap_or_else(|e| e.into_inner());
        match set.get(s) {
            Some(n) => Name(n),
            None => {
                let n: &'static str = Box::leak(s.to_owned().into_boxed_str());
                set.insert(n);
                Name(n)
            }
        }
    }

    /// The text.
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl PartialEq for Name {
    fn eq(&self, o: &Name) -> bool {
        // interned: one pointer per text
        std::ptr::eq(self.0, o.0)
    }
}

impl Eq for Name {}

impl PartialOrd for Name {
    fn partial_cmp(&self, o: &Name) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Name {
    /// By text (equal texts are one name, so this agrees with `==`).
    fn cmp(&self, o: &Name) -> std::cmp::Ordering {
        self.0.cmp(o.0)
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, o: &str) -> bool {
        self.0 == o
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, o: &&str) -> bool {
        self.0 == *o
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        self.0
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.0, f)
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// The names the matcher itself reads or writes.
pub(crate) struct Known {
    pub mlfid: Name,
    pub fid: Name,
    pub ip4: Name,
    pub ip6: Name,
    pub dns: Name,
    pub cidr: Name,
    pub ip: Name,
    pub user: Name,
    pub nofail: Name,
    pub mlfgained: Name,
    pub mlfforget: Name,
    pub content: Name,
}

/// [`Known`], interned on first use.
pub(crate) static KNOWN: LazyLock<Known> = LazyLock::new(|| Known {
    mlfid: Name::new("mlfid"),
    fid: Name::new("fid"),
    ip4: Name::new("ip4"),
    ip6: Name::new("ip6"),
    dns: Name::new("dns"),
    cidr: Name::new("cidr"),
    ip: Name::new("ip"),
    user: Name::new("user"),
    nofail: Name::new("nofail"),
    mlfgained: Name::new("mlfgained"),
    mlfforget: Name::new("mlfforget"),
    content: Name::new("content"),
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_are_one_name() {
        let a = Name::new("user");
        let b = Name::new(&(String::from("us") + "er"));
        assert_eq!(a, b);
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
        assert_ne!(a, Name::new("users"));
        assert_eq!(KNOWN.user, a);
        assert!(a == "user");
    }
}
