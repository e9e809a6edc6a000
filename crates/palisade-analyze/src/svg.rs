//! Small inline SVG charts for the HTML reports (no scripts, no external resources), and the
//! HTML escaping they and the reports share.

use std::fmt::Write;

/// Escapes text for HTML/SVG content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() => o.push('\u{FFFD}'),
            c => o.push(c),
        }
    }
    o
}

/// A horizontal bar chart: one labelled bar per `(label, value)`, longest first as given.
pub fn hbar(title: &str, rows: &[(String, u64)], color: &str) -> String {
    let width = 640.0;
    let label_w = 190.0;
    let row_h = 20.0;
    let h = 30.0 + row_h * rows.len().max(1) as f64;
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1) as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" role="img" aria-label="{t}" font-family="sans-serif" font-size="12"><title>{t}</title><text x="0" y="14" font-weight="bold">{t}</text>"#,
        t = esc(title)
    );
    if rows.is_empty() {
        s.push_str(r#"<text x="0" y="40">no data</text>"#);
    }
    for (i, (label, v)) in rows.iter().enumerate() {
        let y = 24.0 + row_h * i as f64;
        let w = ((width - label_w - 70.0) * (*v as f64) / max).max(1.0);
        let _ = write!(
            s,
            r#"<text x="0" y="{ty}">{l}</text><rect x="{label_w}" y="{y}" width="{w:.1}" height="{bh}" fill="{color}"/><text x="{tx:.1}" y="{ty}">{v}</text>"#,
            ty = y + 13.0,
            l = esc(label),
            bh = row_h - 4.0,
            tx = label_w + w + 4.0,
        );
    }
    s.push_str("</svg>");
    s
}

/// A column chart over time: one column pair per bucket (`total` light, `part` dark), with
/// the first and last labels under the axis.
pub fn columns(title: &str, buckets: &[(String, u64, u64)], legend: (&str, &str)) -> String {
    let width = 720.0;
    let height = 200.0;
    let plot_h = 140.0;
    let n = buckets.len().max(1) as f64;
    let bw = (width - 40.0) / n;
    let max = buckets
        .iter()
        .map(|b| b.1.max(b.2))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="{t}" font-family="sans-serif" font-size="11"><title>{t}</title><text x="0" y="14" font-weight="bold" font-size="12">{t}</text><rect x="420" y="4" width="10" height="10" fill="#9ecae1"/><text x="434" y="13">{l0}</text><rect x="560" y="4" width="10" height="10" fill="#d62728"/><text x="574" y="13">{l1}</text><text x="0" y="34">{max}</text><line x1="40" y1="{base}" x2="{width}" y2="{base}" stroke="#888"/>"##,
        t = esc(title),
        l0 = esc(legend.0),
        l1 = esc(legend.1),
        base = 24.0 + plot_h,
        max = max as u64,
    );
    for (i, (_, total, part)) in buckets.iter().enumerate() {
        let x = 40.0 + bw * i as f64;
        let th = plot_h * (*total as f64) / max;
        let ph = plot_h * (*part as f64) / max;
        let _ = write!(
            s,
            r##"<rect x="{x:.2}" y="{y0:.2}" width="{w:.2}" height="{th:.2}" fill="#9ecae1"/><rect x="{x:.2}" y="{y1:.2}" width="{w:.2}" height="{ph:.2}" fill="#d62728"/>"##,
            y0 = 24.0 + plot_h - th,
            y1 = 24.0 + plot_h - ph,
            w = (bw * 0.9).max(0.5),
        );
    }
    if let (Some(first), Some(last)) = (buckets.first(), buckets.last()) {
        let _ = write!(
            s,
            r#"<text x="40" y="{y}">{a}</text><text x="{width}" y="{y}" text-anchor="end">{b}</text>"#,
            y = 24.0 + plot_h + 16.0,
            a = esc(&first.0),
            b = esc(&last.0),
        );
    }
    s.push_str("</svg>");
    s
}

/// The axis label of an hour: its time of day (`10:00` of `2025-03-03 10:00 UTC`), not the
/// zone every label ends with (the chart's title names it).
fn tick_label(label: &str) -> &str {
    label
        .split_whitespace()
        .find(|w| w.contains(':'))
        .unwrap_or(label)
}

/// A column chart of one count per hour: `(hour label, count)` per bucket, oldest first,
/// every hour of the period present (zeros included). Each column carries its figures
/// (`data-hour`, `data-count`, and a `<title>` tooltip `"label: count unit"`); the scale's
/// maximum is written at the top of the axis, a few hour labels under it.
pub fn hourly(title: &str, buckets: &[(String, u64)], unit: &str, color: &str) -> String {
    let width = 720.0;
    let left = 40.0;
    let top = 24.0;
    let plot_h = 140.0;
    let height = top + plot_h + 22.0;
    let n = buckets.len().max(1);
    let bw = (width - left) / n as f64;
    let max = buckets.iter().map(|b| b.1).max().unwrap_or(0).max(1);
    let base = top + plot_h;
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="{t}" font-family="sans-serif" font-size="11"><title>{t}</title><text x="0" y="14" font-weight="bold" font-size="12">{t}</text><text x="{lx}" y="{ty}" text-anchor="end">{max}</text><text x="{lx}" y="{base}" text-anchor="end">0</text><line x1="{left}" y1="{top}" x2="{left}" y2="{base}" stroke="#888"/><line x1="{left}" y1="{base}" x2="{width}" y2="{base}" stroke="#888"/>"##,
        t = esc(title),
        lx = left - 4.0,
        ty = top + 8.0,
    );
    // Label about six hours, evenly spaced.
    let every = n.div_ceil(6).max(1);
    for (i, (label, v)) in buckets.iter().enumerate() {
        let x = left + bw * i as f64;
        let h = plot_h * (*v as f64) / max as f64;
        let _ = write!(
            s,
            r#"<rect class="bar" data-hour="{l}" data-count="{v}" x="{x:.2}" y="{y:.2}" width="{w:.2}" height="{h:.2}" fill="{color}"><title>{l}: {v} {u}</title></rect>"#,
            l = esc(label),
            y = base - h,
            w = (bw * 0.85).max(0.5),
            u = esc(unit),
        );
        if i % every == 0 {
            let _ = write!(
                s,
                r#"<text x="{x:.2}" y="{y}">{l}</text>"#,
                y = base + 15.0,
                l = esc(tick_label(label)),
            );
        }
    }
    if buckets.is_empty() {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}">no data</text>"#,
            left + 8.0,
            top + 20.0
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_hostile_labels() {
        let s = hbar("t", &[("<script>".into(), 3)], "#000");
        assert!(!s.contains("<script>") && s.contains("&lt;script&gt;"));
        let c = columns("t", &[("a".into(), 5, 1), ("b".into(), 2, 2)], ("x", "y"));
        assert!(c.starts_with("<svg") && c.ends_with("</svg>"));
        let h = hourly(
            "t",
            &[("<b> 10:00".into(), 2), ("x 11:00".into(), 0)],
            "bans",
            "#000",
        );
        assert!(!h.contains("<b>") && h.contains("&lt;b&gt; 10:00: 2 bans"));
        assert_eq!(h.matches("<rect class=\"bar\"").count(), 2);
        assert!(hourly("t", &[], "bans", "#000").contains("no data"));
    }

    #[test]
    fn hour_ticks_show_the_time_of_day_not_the_zone() {
        let hours: Vec<(String, u64)> = (0..12)
            .map(|h| (format!("2025-03-03 {h:02}:00 UTC"), h))
            .collect();
        let s = hourly("New bans per hour (UTC)", &hours, "bans", "#000");
        assert!(!s.contains(">UTC</text>"), "{s}");
        for t in ["00:00", "02:00", "10:00"] {
            assert!(s.contains(&format!(">{t}</text>")), "{t} in {s}");
        }
    }
}
