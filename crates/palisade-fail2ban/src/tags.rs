//! fail2ban's regex tags: `<HOST>`, `<ADDR>`, `<IP4>`, `<IP6>`, `<DNS>`, `<CIDR>`, `<SUBNET>`,
//! `<F-ID/>`, `<F-PORT/>`, `<SKIPLINES>` and user groups `<F-NAME>…</F-NAME>` (a named group
//! `name`, lower-cased; `ID`/`PORT` map to `fid`/`fport`).

/// Dotted IPv4 as fail2ban accepts it (leading zeros allowed; `192.030.0.6` is captured).
const IP4: &str = r"(?:\d{1,3}\.){3}\d{1,3}";
/// IPv6: one to seven `hex:`/`hex::`/`::` pieces, then a hex group or a final `:`. The
/// pieces always end in `:`, so a trailing `:` completes a `::` (no lookbehind needed).
const IP6: &str = r"(?:[0-9a-fA-F]{1,4}::?|::){1,7}(?:[0-9a-fA-F]{1,4}|:)";

fn ip4_tag() -> String {
    format!("(?:::f{{4,6}}:)?(?P<ip4>{IP4})")
}

fn ip6_tag() -> String {
    format!("(?P<ip6>{IP6})")
}

fn dns_tag() -> &'static str {
    r"(?P<dns>[\w\-.^_]*\w)"
}

fn addr_tag() -> String {
    format!(r"\[?(?:{}|{})\]?", ip4_tag(), ip6_tag())
}

fn cidr_tag() -> &'static str {
    r"(?P<cidr>\d+)"
}

/// Regex for a standard tag (`tn` is the text between `<` and `>`), if it is one.
fn standard(tn: &str, use_dns: bool) -> Option<String> {
    Some(match tn {
        "HOST" => {
            if use_dns {
                format!("(?:{}|{})", addr_tag(), dns_tag())
            } else {
                addr_tag()
            }
        }
        "IP4" | "F-IP4/" => ip4_tag(),
        "IP6" | "F-IP6/" => ip6_tag(),
        "ADDR" | "F-ADDR/" => addr_tag(),
        "CIDR" | "F-CIDR/" => cidr_tag().into(),
        "SUBNET" | "F-SUBNET/" => {
            format!(r"\[?(?:{}|{})(?:/{})?\]?", ip4_tag(), ip6_tag(), cidr_tag())
        }
        "DNS" | "F-DNS/" => dns_tag().into(),
        "F-ID/" => r"(?P<fid>\S+)".into(),
        "F-PORT/" => r"(?P<fport>\w+)".into(),
        _ => return None,
    })
}

/// Group name for a user tag `F-NAME`.
pub fn map_tag(tn: &str) -> String {
    let l = tn.to_lowercase();
    match l.as_str() {
        "id" => "fid".into(),
        "port" => "fport".into(),
        _ => l,
    }
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Replaces the tags of one regex. Other `<WORD>`s stay as written and match literally, as in
/// fail2ban (stock filters match `<NOSRV>`, `<USER>`, `<CODE>` this way). The second value
/// lists malformed field tags — `</F-X>` never opened, `<F-lower>`, `<f-X>` — that fail2ban
/// would silently treat as text, for the loader's "unknown tag" error.
pub fn resolve(regex: &str, use_dns: bool) -> (String, Vec<String>) {
    let mut out = String::with_capacity(regex.len() * 2);
    let mut unknown = Vec::new();
    let mut open: Vec<String> = Vec::new();
    let mut skiplines = 0;
    let mut rest = regex;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        let t = &rest[i..];
        // </?[\w\-]+/?>
        let body_start = if t[1..].starts_with('/') { 2 } else { 1 };
        let name_len = t[body_start..]
            .find(|c: char| !(is_word(c) || c == '-'))
            .unwrap_or(t.len() - body_start);
        let mut end = body_start + name_len;
        if name_len > 0 && t[end..].starts_with('/') {
            end += 1;
        }
        if name_len == 0 || !t[end..].starts_with('>') {
            out.push('<');
            rest = &t[1..];
            continue;
        }
        let tag = &t[..end + 1];
        let tn = &t[1..end];
        rest = &t[end + 1..];
        if tn == "SKIPLINES" {
            out.push_str(&format!(r"\n(?P<skiplines{skiplines}>(?:(?:.*\n)*?))"));
            skiplines += 1;
            continue;
        }
        if let Some(r) = standard(tn, use_dns) {
            out.push_str(&r);
            continue;
        }
        // ^(/?)F-([A-Z0-9_\-]+)$
        let (close, n) = match tn.strip_prefix('/') {
            Some(x) => (true, x),
            None => (false, tn),
        };
        if let Some(name) = n.strip_prefix("F-") {
            if !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == '-')
            {
                if close {
                    if open.iter().any(|o| o == name) {
                        out.push(')');
                    } else {
                        // fail2ban keeps it as literal text; it is a mistake in practice
                        unknown.push(tag.to_string());
                        out.push_str(tag);
                    }
                } else {
                    open.push(name.to_string());
                    out.push_str(&format!("(?P<{}>", map_tag(name)));
                }
                continue;
            }
        }
        // `<F-user>`, `<f-USER>`: a field tag fail2ban would silently take as literal text
        if n.len() > 2 && n[..2].eq_ignore_ascii_case("f-") {
            unknown.push(tag.to_string());
        }
        out.push_str(tag);
    }
    out.push_str(rest);
    (out, unknown)
}

/// `((?i)x)` / `(?:(?i)x)` → `(?i:x)` (fail2ban turns such group-leading global flags into
/// scoped ones).
pub fn glob_to_local_flags(re: &str) -> String {
    let b = re.as_bytes();
    let mut out = String::with_capacity(re.len());
    let mut i = 0;
    let mut last = 0;
    while i < b.len() {
        if b[i] == b'(' && (i == 0 || b[i - 1] != b'\\') {
            let mut j = i + 1;
            if re[j..].starts_with("?:") {
                j += 2;
            }
            if re[j..].starts_with("(?") {
                let k0 = j + 2;
                let mut k = k0;
                while k < b.len() && b[k].is_ascii_lowercase() {
                    k += 1;
                }
                if k > k0 && k < b.len() && b[k] == b')' {
                    out.push_str(&re[last..i]);
                    out.push_str(&re[j..k]);
                    out.push(':');
                    i = k + 1;
                    last = i;
                    continue;
                }
            }
        }
        i += 1;
    }
    out.push_str(&re[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        let (r, u) = resolve(
            "^<F-USER>x</F-USER> from <HOST> </F-NOPE> <lt> <FOO> <F-bad>",
            true,
        );
        assert!(r.starts_with("^(?P<user>x) from (?:"));
        assert!(r.ends_with(" </F-NOPE> <lt> <FOO> <F-bad>"));
        assert_eq!(u, vec!["</F-NOPE>".to_string(), "<F-bad>".to_string()]);
        let (r, _) = resolve("<F-ID/> <F-ALT_USER1>a</F-ALT_USER1>", true);
        assert_eq!(r, r"(?P<fid>\S+) (?P<alt_user1>a)");
        assert_eq!(
            glob_to_local_flags(r"a((?i)b)(?:(?s)c)\((?i)"),
            r"a(?i:b)(?s:c)\((?i)"
        );
    }
}
