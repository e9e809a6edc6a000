//! XML helpers over `roxmltree`, which refuses DTDs (and so entity expansion) by default.

use roxmltree::{Document, Node, ParsingOptions};

/// Parses an answer; a DTD (entity bombs, external entities) is an error.
pub fn parse(text: &str) -> Result<Document<'_>, String> {
    Document::parse_with_options(
        text,
        ParsingOptions {
            allow_dtd: false,
            nodes_limit: 50_000_000,
        },
    )
    .map_err(|e| e.to_string())
}

/// The first child element named `name` (local name; namespaces ignored).
pub fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

/// Children elements named `name`.
pub fn children<'a, 'i: 'a>(
    n: Node<'a, 'i>,
    name: &'a str,
) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    n.children()
        .filter(move |c| c.is_element() && c.tag_name().name() == name)
}

/// The items of a list element: `<name><item/>…</name>` (EC2) or `<name><member/>…` (others).
pub fn list<'a, 'i: 'a>(n: Node<'a, 'i>, name: &str) -> Vec<Node<'a, 'i>> {
    match child(n, name) {
        Some(l) => l
            .children()
            .filter(|c| c.is_element() && matches!(c.tag_name().name(), "item" | "member"))
            .collect(),
        None => Vec::new(),
    }
}

/// Text of the child element `name`.
pub fn text<'a>(n: Node<'a, '_>, name: &str) -> Option<&'a str> {
    child(n, name).and_then(|c| c.text()).map(str::trim)
}

/// The first element named `name` anywhere in the document.
pub fn find<'a, 'i>(doc: &'a Document<'i>, name: &str) -> Option<Node<'a, 'i>> {
    doc.descendants()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

/// An EC2 `tagSet` / ELB `Tags` as (key, value) pairs.
pub fn tags(n: Node<'_, '_>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for set in ["tagSet", "Tags"] {
        for t in list(n, set) {
            let k = text(t, "key")
                .or_else(|| text(t, "Key"))
                .unwrap_or_default();
            let v = text(t, "value")
                .or_else(|| text(t, "Value"))
                .unwrap_or_default();
            out.push((k.to_string(), v.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_bomb_is_an_error() {
        let bomb = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<DescribeSecurityGroupsResponse><x>&lol2;</x></DescribeSecurityGroupsResponse>"#;
        let e = parse(bomb).unwrap_err();
        assert!(e.to_lowercase().contains("dtd"), "{e}");
        let ext = r#"<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>"#;
        assert!(parse(ext).is_err());
    }

    #[test]
    fn lists_of_both_shapes() {
        let d = parse("<r xmlns='urn:x'><a><item><v>1</v></item><item><v>2</v></item></a><b><member><v>3</v></member></b></r>").unwrap();
        let r = d.root_element();
        assert_eq!(list(r, "a").len(), 2);
        assert_eq!(text(list(r, "b")[0], "v"), Some("3"));
        assert!(list(r, "c").is_empty());
    }
}
