//! Server-drawn SVG charts (no JS, no chart library): the battle timeline and small
//! activity bars. Output is a self-contained `<svg>` string, styled by classes from app.css.

use std::fmt::Write as _;

use crate::model::Minute;
use crate::view;

/// Kills per minute per side (bars, one colour per side) and ISK destroyed per side
/// (lines, right axis). `minutes` may be sparse; the span is filled with empty minutes.
pub fn timeline(minutes: &[Minute], sides: usize) -> String {
    const W: f64 = 800.0;
    const H: f64 = 220.0;
    const L: f64 = 36.0; // left axis
    const R: f64 = 56.0; // right axis
    const T: f64 = 12.0;
    const B: f64 = 28.0;
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        r#"<svg class="chart timeline" viewBox="0 0 {W} {H}" role="img" aria-label="kills and ISK per minute per side" preserveAspectRatio="none">"#
    );
    let (Some(first), Some(last)) = (
        minutes.iter().map(|m| m.minute_ms).min(),
        minutes.iter().map(|m| m.minute_ms).max(),
    ) else {
        out.push_str(
            r#"<text x="400" y="110" text-anchor="middle" class="muted">no kills yet</text></svg>"#,
        );
        return out;
    };
    let span = usize::try_from((last - first) / 60_000 + 1)
        .unwrap_or(1)
        .clamp(1, 24 * 60);
    let sides = sides.max(1);
    let mut kills = vec![vec![0u32; sides]; span];
    let mut isk = vec![vec![0f64; sides]; span];
    for m in minutes {
        let Ok(i) = usize::try_from((m.minute_ms - first) / 60_000) else {
            continue;
        };
        if i >= span {
            continue;
        }
        for s in 0..sides {
            kills[i][s] += m.kills.get(s).copied().unwrap_or(0);
            isk[i][s] += m.isk_destroyed.get(s).copied().unwrap_or(0.0);
        }
    }
    let max_kills = kills.iter().flatten().copied().max().unwrap_or(0).max(1);
    // Cumulative ISK per side reads better than a spiky per-minute line.
    let mut cum = vec![vec![0f64; sides]; span];
    for s in 0..sides {
        let mut acc = 0.0;
        for i in 0..span {
            acc += isk[i][s];
            cum[i][s] = acc;
        }
    }
    let max_isk = cum
        .last()
        .map(|row| row.iter().copied().fold(0.0, f64::max))
        .unwrap_or(0.0)
        .max(1.0);
    let pw = W - L - R;
    let ph = H - T - B;
    let slot = pw / span as f64;
    let bar = (slot / sides as f64).max(0.5);
    // Grid and axes.
    let _ = write!(
        out,
        r#"<g class="axis"><line x1="{L}" y1="{y0}" x2="{x1}" y2="{y0}"/><line x1="{L}" y1="{T}" x2="{L}" y2="{y0}"/><text x="{lx}" y="{ty}" text-anchor="end">{max_kills}</text><text x="{lx}" y="{y0}" text-anchor="end">0</text><text x="{rx}" y="{ty}">{isk}</text></g>"#,
        y0 = T + ph,
        x1 = L + pw,
        lx = L - 4.0,
        ty = T + 8.0,
        rx = L + pw + 4.0,
        isk = view::isk(max_isk),
    );
    for (i, row) in kills.iter().enumerate() {
        for (s, &k) in row.iter().enumerate() {
            if k == 0 {
                continue;
            }
            let h = ph * f64::from(k) / f64::from(max_kills);
            let x = L + i as f64 * slot + s as f64 * bar;
            let _ = write!(
                out,
                r#"<rect class="side{s}" x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{c}"><title>+{m} min: side {n} {k} kills</title></rect>"#,
                y = T + ph - h,
                w = (bar - 0.3).max(0.5),
                c = view::side_colour(s),
                m = i,
                n = s + 1,
            );
        }
    }
    for s in 0..sides {
        let mut pts = String::new();
        for (i, row) in cum.iter().enumerate() {
            let x = L + (i as f64 + 0.5) * slot;
            let y = T + ph - ph * row[s] / max_isk;
            let _ = write!(pts, "{x:.1},{y:.1} ");
        }
        let _ = write!(
            out,
            r#"<polyline class="isk side{s}" points="{p}" fill="none" stroke="{c}" stroke-width="1.5" stroke-dasharray="4 2"/>"#,
            p = pts.trim_end(),
            c = view::side_colour(s),
        );
    }
    let start = chrono::DateTime::from_timestamp_millis(first)
        .map(|t| t.format("%H:%M").to_string())
        .unwrap_or_default();
    let end = chrono::DateTime::from_timestamp_millis(last)
        .map(|t| t.format("%H:%M").to_string())
        .unwrap_or_default();
    let _ = write!(
        out,
        r#"<g class="axis"><text x="{L}" y="{y}">{start}</text><text x="{x}" y="{y}" text-anchor="end">{end} EVE</text></g></svg>"#,
        y = H - 8.0,
        x = L + pw,
    );
    out
}

/// Small bars of kills (and losses below) per day.
pub fn activity(days: &[(String, u32, u32)]) -> String {
    const W: f64 = 600.0;
    const H: f64 = 120.0;
    let mut out = format!(
        r#"<svg class="chart activity" viewBox="0 0 {W} {H}" role="img" aria-label="kills and losses per day">"#
    );
    if days.is_empty() {
        out.push_str(
            r#"<text x="300" y="60" text-anchor="middle" class="muted">no activity</text></svg>"#,
        );
        return out;
    }
    let max = days.iter().map(|d| d.1.max(d.2)).max().unwrap_or(1).max(1);
    let slot = W / days.len() as f64;
    let mid = H / 2.0;
    for (i, (date, k, l)) in days.iter().enumerate() {
        let x = i as f64 * slot + 1.0;
        let w = (slot - 2.0).max(1.0);
        let hk = (mid - 4.0) * f64::from(*k) / f64::from(max);
        let hl = (mid - 4.0) * f64::from(*l) / f64::from(max);
        let _ = write!(
            out,
            r#"<rect class="kills" x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{hk:.1}"><title>{date}: {k} kills</title></rect><rect class="losses" x="{x:.1}" y="{mid}" width="{w:.1}" height="{hl:.1}"><title>{date}: {l} losses</title></rect>"#,
            y = mid - hk,
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_draws_one_bar_per_side_and_minute_with_kills() {
        let m = |t: i64, k: Vec<u32>| Minute {
            minute_ms: t,
            isk_destroyed: k.iter().map(|&x| f64::from(x) * 1e6).collect(),
            losses: vec![0; k.len()],
            kills: k,
        };
        let svg = timeline(&[m(0, vec![2, 1]), m(180_000, vec![0, 3])], 2);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), 3, "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(timeline(&[], 2).contains("no kills yet"));
    }
}
