//! Pure formatting helpers shared by the pages: ISK, durations, security and ship-class
//! colours, image URLs. No IO and no clock (times are passed in).

use chrono::{DateTime, Utc};

/// ISK abbreviated as players read it (`350.0M`, `1.24B`); the full value goes in a `title`.
pub fn isk(v: f64) -> String {
    let a = v.abs();
    let (div, suffix) = if a >= 1e12 {
        (1e12, "T")
    } else if a >= 1e9 {
        (1e9, "B")
    } else if a >= 1e6 {
        (1e6, "M")
    } else if a >= 1e3 {
        (1e3, "K")
    } else {
        (1.0, "")
    };
    if suffix.is_empty() {
        format!("{v:.0}")
    } else if a / div >= 100.0 {
        format!("{:.0}{suffix}", v / div)
    } else {
        format!("{:.2}{suffix}", v / div)
    }
}

/// Full ISK with thousands separators, for tooltips.
pub fn isk_full(v: f64) -> String {
    let whole = format!("{:.0}", v.abs());
    let mut out = String::with_capacity(whole.len() + whole.len() / 3 + 5);
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 {
        out.insert(0, '-');
    }
    out.push_str(" ISK");
    out
}

/// ISK tier class (`<100M` grey, `<1B` blue, `<10B` purple, else gold).
pub fn isk_tier(v: f64) -> &'static str {
    if v < 1e8 {
        "isk-t0"
    } else if v < 1e9 {
        "isk-t1"
    } else if v < 1e10 {
        "isk-t2"
    } else {
        "isk-t3"
    }
}

/// `1h 05m`, `12m`, `45s`.
pub fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    if s >= 3600 {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// `2021-11-28 19:04` (EVE time is UTC).
pub fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M").to_string()
}

/// Parses an RFC 3339 time, `None` when absent or malformed.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `3 min ago`, relative to `now`.
pub fn ago(t: &DateTime<Utc>, now: &DateTime<Utc>) -> String {
    let s = (*now - *t).num_seconds();
    if s < 60 {
        "just now".into()
    } else if s < 3600 {
        format!("{} min ago", s / 60)
    } else if s < 86_400 {
        format!("{} h ago", s / 3600)
    } else {
        format!("{} d ago", s / 86_400)
    }
}

/// The in-game colour of a security status, by its displayed (rounded) tenth: 1.0 `#2FEFEF`
/// down to 0.5 `#EFEF00` (the last high-sec band), 0.4 `#D77700` … 0.1 `#D73000`, 0.0 and
/// below `#F00000`.
pub fn security_colour(rounded: f64) -> &'static str {
    // Work in integer tenths so 0.5 is exactly band 5.
    let tenths = (rounded * 10.0).round() as i64;
    match tenths {
        t if t >= 10 => "#2FEFEF",
        9 => "#48F0C0",
        8 => "#00EF47",
        7 => "#00F000",
        6 => "#8FEF2F",
        5 => "#EFEF00",
        4 => "#D77700",
        3 => "#F06000",
        2 => "#F04800",
        1 => "#D73000",
        _ => "#F00000",
    }
}

/// Colour per space type (k-space by band, J-space purple, Pochven red).
pub fn space_colour(security_type: &str) -> &'static str {
    match security_type {
        "highsec" => "#2FEFEF",
        "lowsec" => "#D77700",
        "nullsec" => "#F00000",
        "wormhole" => "#8b5cf6",
        "pochven" => "#ef4444",
        _ => "#9ca3af",
    }
}

/// A stable colour per ship class for composition bars and chips.
pub fn class_colour(class: &str) -> &'static str {
    match class {
        "capsule" => "#9ca3af",
        "shuttle" => "#a3a3a3",
        "corvette" => "#d4d4d4",
        "frigate" => "#60a5fa",
        "destroyer" => "#38bdf8",
        "cruiser" => "#34d399",
        "logistics" => "#a3e635",
        "battlecruiser" => "#facc15",
        "battleship" => "#fb923c",
        "capital" => "#f87171",
        "supercapital" => "#e879f9",
        "industrial" => "#a78bfa",
        "mining" => "#c4b5fd",
        "structure" => "#94a3b8",
        "deployable" => "#cbd5e1",
        "fighter" => "#fda4af",
        "drone" => "#99f6e4",
        _ => "#6b7280",
    }
}

/// Display order of ship classes (small to big, then the rest).
pub const CLASS_ORDER: &[&str] = &[
    "frigate",
    "destroyer",
    "cruiser",
    "logistics",
    "battlecruiser",
    "battleship",
    "capital",
    "supercapital",
    "industrial",
    "mining",
    "corvette",
    "shuttle",
    "capsule",
    "fighter",
    "drone",
    "structure",
    "deployable",
    "other",
];

/// Efficiency class (>60% good, 50–60% middling, <50% bad).
pub fn efficiency_class(pct: f64) -> &'static str {
    if pct > 60.0 {
        "eff-good"
    } else if pct >= 50.0 {
        "eff-mid"
    } else {
        "eff-bad"
    }
}

/// Side colours, side 0 first (blue, red, then more for multi-party fights).
pub fn side_colour(index: usize) -> &'static str {
    const C: [&str; 6] = [
        "#3b82f6", "#ef4444", "#f59e0b", "#10b981", "#a855f7", "#ec4899",
    ];
    C[index % C.len()]
}

/// EVE image server URLs under a configurable base.
#[derive(Clone, Debug)]
pub struct Images {
    base: String,
}

impl Images {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    pub fn portrait(&self, id: i64, size: u32) -> String {
        format!("{}/characters/{id}/portrait?size={size}", self.base)
    }

    pub fn corporation(&self, id: i64, size: u32) -> String {
        format!("{}/corporations/{id}/logo?size={size}", self.base)
    }

    pub fn alliance(&self, id: i64, size: u32) -> String {
        format!("{}/alliances/{id}/logo?size={size}", self.base)
    }

    pub fn render(&self, type_id: i64, size: u32) -> String {
        format!("{}/types/{type_id}/render?size={size}", self.base)
    }

    pub fn icon(&self, type_id: i64, size: u32) -> String {
        format!("{}/types/{type_id}/icon?size={size}", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isk_is_abbreviated_like_players_read_it() {
        assert_eq!(isk(350_000_000.0), "350M");
        assert_eq!(isk(1_240_000_000.0), "1.24B");
        assert_eq!(isk(12_345.0), "12.35K");
        assert_eq!(isk(999.0), "999");
        assert_eq!(isk_full(1_234_567.4), "1,234,567 ISK");
    }

    #[test]
    fn security_colours_follow_the_client_ramp() {
        assert_eq!(security_colour(1.0), "#2FEFEF");
        assert_eq!(security_colour(0.5), "#EFEF00");
        assert_eq!(security_colour(0.4), "#D77700");
        assert_eq!(security_colour(0.0), "#F00000");
        assert_eq!(security_colour(-0.7), "#F00000");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(720), "12m");
        assert_eq!(duration(3900), "1h 05m");
    }
}
