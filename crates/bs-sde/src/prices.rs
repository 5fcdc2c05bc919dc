//! Market prices by type id, from ESI `GET /markets/prices` (live) or the bundled snapshot.
//!
//! The bundled snapshot is ESI's response captured on 2025-05-13 (see shared/data/SOURCES.md
//! §5a), stored in `data/prices/` as a gzip'd TSV `type_id, average_price, adjusted_price`
//! (empty = ESI omitted the field). It is 3½ years newer than the 2021 killmails: fine for
//! order-of-magnitude values, not for reproducing zKillboard's 2021 numbers.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
#[cfg(feature = "embedded")]
use std::sync::OnceLock;

use serde::Deserialize;

use crate::bundle::write_gz;
use crate::error::{Error, Result};

const PRICES_HEADER: &str = "type_id\taverage_price\tadjusted_price";

/// ESI's two prices for one type.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Price {
    /// The market average (what a player would pay); ESI omits it for unmarketed items.
    pub average_price: Option<f64>,
    /// CCP's industry reference price.
    pub adjusted_price: Option<f64>,
}

impl Price {
    /// The unit value used for valuation: `average_price` when positive, else
    /// `adjusted_price` when positive, else `None` (no usable price).
    pub fn unit_value(&self) -> Option<f64> {
        let positive = |v: Option<f64>| v.filter(|p| p.is_finite() && *p > 0.0);
        positive(self.average_price).or(positive(self.adjusted_price))
    }
}

/// Prices by type id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MarketPrices {
    prices: HashMap<i64, Price>,
}

#[derive(Deserialize)]
struct EsiPrice {
    type_id: i64,
    #[serde(default)]
    average_price: Option<f64>,
    #[serde(default)]
    adjusted_price: Option<f64>,
}

#[cfg(feature = "embedded")]
const EMBEDDED: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../data/prices/esi-markets-prices-2025-05-13.tsv.gz"
));

impl MarketPrices {
    /// The bundled 2025-05-13 snapshot, decoded once.
    ///
    /// # Panics
    /// Only if the embedded file is damaged, which the crate's tests rule out.
    #[cfg(feature = "embedded")]
    pub fn bundled() -> &'static MarketPrices {
        static PRICES: OnceLock<MarketPrices> = OnceLock::new();
        PRICES.get_or_init(|| {
            MarketPrices::from_tsv_gz(EMBEDDED)
                .unwrap_or_else(|e| panic!("embedded price snapshot is damaged: {e}"))
        })
    }

    /// Parses the body of ESI `GET /markets/prices` (a JSON array).
    pub fn from_esi_json(body: &[u8]) -> Result<MarketPrices> {
        let rows: Vec<EsiPrice> = serde_json::from_slice(body).map_err(|source| Error::Json {
            file: "markets/prices".into(),
            source,
        })?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    r.type_id,
                    Price {
                        average_price: r.average_price,
                        adjusted_price: r.adjusted_price,
                    },
                )
            })
            .collect())
    }

    /// Parses the compact gzip'd TSV form written by [`MarketPrices::write_tsv_gz`].
    pub fn from_tsv_gz(gz: &[u8]) -> Result<MarketPrices> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_string(&mut text)
            .map_err(|e| Error::format("prices", format!("not gzip'd utf-8: {e}")))?;
        let mut lines = text.lines();
        if lines.next() != Some(PRICES_HEADER) {
            return Err(Error::format("prices", "unexpected header"));
        }
        let opt = |s: &str| -> Option<Option<f64>> {
            if s.is_empty() {
                Some(None)
            } else {
                s.parse().ok().map(Some)
            }
        };
        let mut prices = HashMap::new();
        for (n, line) in lines.enumerate() {
            let mut cells = line.split('\t');
            let parsed = (|| {
                let id: i64 = cells.next()?.parse().ok()?;
                let average_price = opt(cells.next()?)?;
                let adjusted_price = opt(cells.next()?)?;
                Some((
                    id,
                    Price {
                        average_price,
                        adjusted_price,
                    },
                ))
            })();
            let (id, p) =
                parsed.ok_or_else(|| Error::format("prices", format!("bad row {}", n + 2)))?;
            prices.insert(id, p);
        }
        Ok(MarketPrices { prices })
    }

    /// Writes the compact form (sorted by type id, so equal data gives equal bytes).
    pub fn write_tsv_gz(&self, path: &Path) -> Result<()> {
        let mut ids: Vec<_> = self.prices.keys().copied().collect();
        ids.sort_unstable();
        let mut out = String::from(PRICES_HEADER);
        out.push('\n');
        let f = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        for id in ids {
            let p = self.prices[&id];
            out.push_str(&format!(
                "{id}\t{}\t{}\n",
                f(p.average_price),
                f(p.adjusted_price)
            ));
        }
        write_gz(path, out.as_bytes())
    }

    pub fn get(&self, type_id: i64) -> Option<&Price> {
        self.prices.get(&type_id)
    }

    /// The unit value of a type (see [`Price::unit_value`]).
    pub fn unit_value(&self, type_id: i64) -> Option<f64> {
        self.prices.get(&type_id).and_then(Price::unit_value)
    }

    pub fn len(&self) -> usize {
        self.prices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prices.is_empty()
    }
}

impl FromIterator<(i64, Price)> for MarketPrices {
    fn from_iter<I: IntoIterator<Item = (i64, Price)>>(iter: I) -> Self {
        MarketPrices {
            prices: iter.into_iter().collect(),
        }
    }
}
