//! A minimal zip reader for CCP's SDE download: central directory, stored and deflated entries,
//! zip64 size/offset extras. No encryption, no multi-disk archives, no zip64 end record.
//!
//! Written here rather than pulling in a zip crate: the SDE archive is the only zip the project
//! reads, and flate2 (already a dependency) does the decompression.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const EOCD_SIG: u32 = 0x0605_4b50;
const CDH_SIG: u32 = 0x0201_4b50;
const LFH_SIG: u32 = 0x0403_4b50;

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub name: String,
    method: u16,
    compressed: u64,
    uncompressed: u64,
    offset: u64,
}

pub(crate) struct ZipArchive {
    path: PathBuf,
    file: File,
    entries: Vec<Entry>,
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], i: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?))
}

impl ZipArchive {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let bad = |detail: &str| Error::Zip {
            path: path.to_path_buf(),
            detail: detail.to_string(),
        };
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        // The end record is 22 bytes plus a comment of at most 65535 bytes.
        let tail_len = len.min(22 + 65_535);
        let mut tail = vec![0u8; tail_len as usize];
        file.seek(SeekFrom::Start(len - tail_len))
            .map_err(|e| Error::io(path, e))?;
        file.read_exact(&mut tail).map_err(|e| Error::io(path, e))?;
        let eocd = (0..tail.len().saturating_sub(21))
            .rev()
            .find(|&i| u32_at(&tail, i) == Some(EOCD_SIG))
            .ok_or_else(|| bad("no end of central directory record"))?;
        let total = u16_at(&tail, eocd + 10).ok_or_else(|| bad("truncated end record"))?;
        let cd_size = u32_at(&tail, eocd + 12).ok_or_else(|| bad("truncated end record"))?;
        let cd_offset = u32_at(&tail, eocd + 16).ok_or_else(|| bad("truncated end record"))?;
        if total == 0xFFFF || cd_offset == u32::MAX || cd_size == u32::MAX {
            return Err(bad(
                "zip64 end record not supported; extract the archive and import the directory",
            ));
        }
        let mut cd = vec![0u8; cd_size as usize];
        file.seek(SeekFrom::Start(u64::from(cd_offset)))
            .map_err(|e| Error::io(path, e))?;
        file.read_exact(&mut cd).map_err(|e| Error::io(path, e))?;

        let mut entries = Vec::with_capacity(usize::from(total));
        let mut i = 0usize;
        for _ in 0..total {
            if u32_at(&cd, i) != Some(CDH_SIG) {
                return Err(bad("bad central directory header"));
            }
            let field =
                |o: usize| u16_at(&cd, i + o).ok_or_else(|| bad("truncated central directory"));
            let field32 =
                |o: usize| u32_at(&cd, i + o).ok_or_else(|| bad("truncated central directory"));
            let flags = field(8)?;
            let method = field(10)?;
            let mut compressed = u64::from(field32(20)?);
            let mut uncompressed = u64::from(field32(24)?);
            let name_len = usize::from(field(28)?);
            let extra_len = usize::from(field(30)?);
            let comment_len = usize::from(field(32)?);
            let mut offset = u64::from(field32(42)?);
            let name_bytes = cd
                .get(i + 46..i + 46 + name_len)
                .ok_or_else(|| bad("truncated name"))?;
            let name = String::from_utf8_lossy(name_bytes).into_owned();
            let extra = cd
                .get(i + 46 + name_len..i + 46 + name_len + extra_len)
                .ok_or_else(|| bad("truncated extra field"))?;
            // Zip64 extra (id 1): the 64-bit values of whichever fields are saturated, in order.
            let mut e = 0usize;
            while e + 4 <= extra.len() {
                let id = u16_at(extra, e).unwrap_or(0);
                let size = usize::from(u16_at(extra, e + 2).unwrap_or(0));
                if id == 1 {
                    let mut p = e + 4;
                    for v in [&mut uncompressed, &mut compressed, &mut offset] {
                        if *v == u64::from(u32::MAX) {
                            *v = u64_at(extra, p).ok_or_else(|| bad("truncated zip64 extra"))?;
                            p += 8;
                        }
                    }
                }
                e += 4 + size;
            }
            if flags & 1 != 0 {
                return Err(bad("encrypted entries are not supported"));
            }
            entries.push(Entry {
                name,
                method,
                compressed,
                uncompressed,
                offset,
            });
            i += 46 + name_len + extra_len + comment_len;
        }
        Ok(ZipArchive {
            path: path.to_path_buf(),
            file,
            entries,
        })
    }

    /// The entry whose file name (last path component) is `base`, if any.
    pub(crate) fn find(&self, base: &str) -> Option<Entry> {
        self.entries
            .iter()
            .find(|e| e.name.rsplit('/').next() == Some(base))
            .cloned()
    }

    pub(crate) fn read(&mut self, entry: &Entry) -> Result<Vec<u8>> {
        let path = self.path.clone();
        let bad = |detail: String| Error::Zip {
            path: path.clone(),
            detail,
        };
        let mut lfh = [0u8; 30];
        self.file
            .seek(SeekFrom::Start(entry.offset))
            .map_err(|e| Error::io(&self.path, e))?;
        self.file
            .read_exact(&mut lfh)
            .map_err(|e| Error::io(&self.path, e))?;
        if u32_at(&lfh, 0) != Some(LFH_SIG) {
            return Err(bad(format!("bad local header for {}", entry.name)));
        }
        let skip =
            u64::from(u16_at(&lfh, 26).unwrap_or(0)) + u64::from(u16_at(&lfh, 28).unwrap_or(0));
        self.file
            .seek(SeekFrom::Current(skip as i64))
            .map_err(|e| Error::io(&self.path, e))?;
        let raw = (&mut self.file).take(entry.compressed);
        let mut out = Vec::with_capacity(entry.uncompressed.min(1 << 30) as usize);
        match entry.method {
            0 => {
                let mut raw = raw;
                raw.read_to_end(&mut out)
                    .map_err(|e| Error::io(&self.path, e))?;
            }
            8 => {
                flate2::read::DeflateDecoder::new(raw)
                    .read_to_end(&mut out)
                    .map_err(|e| bad(format!("{}: {e}", entry.name)))?;
            }
            m => {
                return Err(bad(format!(
                    "{}: compression method {m} not supported",
                    entry.name
                )));
            }
        }
        if out.len() as u64 != entry.uncompressed {
            return Err(bad(format!("{}: size mismatch", entry.name)));
        }
        Ok(out)
    }
}
