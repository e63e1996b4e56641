//! The bootstrap superuser of a data directory, read from its files: the role with oid 10
//! in `pg_authid`, which `initdb -U` may have named anything (`admin`, `postgres`, the OS
//! user). A restored copy trusts its private socket, but a connection still has to name a
//! role that exists, and this is the one every cluster has.
//!
//! The relation's file is found through `global/pg_filenode.map` (pg_authid is a mapped
//! shared catalog, oid 1260), and read page by page in PostgreSQL's heap page format: line
//! pointers, tuple headers, and the row's first columns `oid` and `rolname` (`name`, 64
//! bytes). The files are in the byte order of the machine that wrote them, which is this one.

use std::path::Path;

/// pg_authid's relation oid.
const PG_AUTHID: u32 = 1260;
/// The bootstrap superuser's oid.
const BOOTSTRAP_SUPERUSER: u32 = 10;
/// `RELMAPPER_FILEMAGIC`.
const MAP_MAGIC: u32 = 0x0059_2717;
/// The size of a page header, where the line pointers begin.
const PAGE_HEADER: usize = 24;
/// `NAMEDATALEN`.
const NAME_LEN: usize = 64;
/// `LP_NORMAL`: a line pointer to a tuple.
const LP_NORMAL: u32 = 1;
/// Infomask bits: the tuple's xmax is not a deleting or updating transaction.
const HEAP_XMAX_LOCK_ONLY: u16 = 0x0080;
const HEAP_XMAX_INVALID: u16 = 0x0800;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The name of the role with oid 10 in the cluster whose data directory is `data`.
pub fn bootstrap_superuser(data: &Path) -> Result<String, String> {
    let map_path = data.join("global/pg_filenode.map");
    let map =
        std::fs::read(&map_path).map_err(|e| format!("cannot read {}: {e}", map_path.display()))?;
    if u32_at(&map, 0) != Some(MAP_MAGIC) {
        return Err(format!("{} is not a relation map", map_path.display()));
    }
    let count = u32_at(&map, 4).unwrap_or(0) as usize;
    let filenode = (0..count)
        .filter_map(|i| Some((u32_at(&map, 8 + 8 * i)?, u32_at(&map, 12 + 8 * i)?)))
        .find(|(oid, _)| *oid == PG_AUTHID)
        .map(|(_, file)| file)
        .ok_or_else(|| format!("{} does not map pg_authid", map_path.display()))?;
    let rel_path = data.join("global").join(filenode.to_string());
    let rel =
        std::fs::read(&rel_path).map_err(|e| format!("cannot read {}: {e}", rel_path.display()))?;
    superuser_in(&rel).ok_or_else(|| format!("no role with oid 10 in {}", rel_path.display()))
}

/// Finds the live row with oid 10 in a heap file (the last version when none is live).
fn superuser_in(rel: &[u8]) -> Option<String> {
    // pd_pagesize_version: the page size in its high byte's bits
    let page_size = usize::from(u16_at(rel, 18)? & 0xFF00);
    if page_size < 1024 || !page_size.is_power_of_two() {
        return None;
    }
    let mut found: Option<(String, bool)> = None;
    for page in rel.chunks_exact(page_size) {
        let lower = usize::from(u16_at(page, 12)?);
        let pointers = lower.saturating_sub(PAGE_HEADER) / 4;
        for i in 0..pointers {
            let item = u32_at(page, PAGE_HEADER + 4 * i)?;
            let (offset, flags, len) = (
                (item & 0x7FFF) as usize,
                (item >> 15) & 0x3,
                (item >> 17) as usize,
            );
            if flags != LP_NORMAL {
                continue;
            }
            let Some(tuple) = page.get(offset..offset + len) else {
                continue;
            };
            let (Some(xmax), Some(infomask), Some(&hoff)) =
                (u32_at(tuple, 4), u16_at(tuple, 20), tuple.get(22))
            else {
                continue;
            };
            let data = &tuple[usize::from(hoff).min(tuple.len())..];
            if u32_at(data, 0) != Some(BOOTSTRAP_SUPERUSER) {
                continue;
            }
            let Some(raw) = data.get(4..4 + NAME_LEN) else {
                continue;
            };
            let name = raw.split(|b| *b == 0).next().unwrap_or_default();
            let live = xmax == 0 || infomask & (HEAP_XMAX_INVALID | HEAP_XMAX_LOCK_ONLY) != 0;
            if found.as_ref().is_none_or(|(_, was_live)| live || !was_live) {
                found = Some((String::from_utf8_lossy(name).into_owned(), live));
            }
        }
    }
    found.map(|(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A heap page holding `rows` as (oid, name, xmax, infomask).
    fn page(rows: &[(u32, &str, u32, u16)]) -> Vec<u8> {
        let mut page = vec![0u8; 8192];
        page[18..20].copy_from_slice(&(8192u16 | 4).to_ne_bytes());
        let mut upper = 8192;
        for (i, (oid, name, xmax, infomask)) in rows.iter().enumerate() {
            let hoff = 24usize;
            let len = hoff + 4 + NAME_LEN;
            upper -= len;
            let t = &mut page[upper..upper + len];
            t[4..8].copy_from_slice(&xmax.to_ne_bytes());
            t[20..22].copy_from_slice(&infomask.to_ne_bytes());
            t[22] = hoff as u8;
            t[hoff..hoff + 4].copy_from_slice(&oid.to_ne_bytes());
            t[hoff + 4..hoff + 4 + name.len()].copy_from_slice(name.as_bytes());
            let item = (upper as u32) | (LP_NORMAL << 15) | ((len as u32) << 17);
            page[PAGE_HEADER + 4 * i..PAGE_HEADER + 4 * i + 4].copy_from_slice(&item.to_ne_bytes());
        }
        let lower = (PAGE_HEADER + 4 * rows.len()) as u16;
        page[12..14].copy_from_slice(&lower.to_ne_bytes());
        page
    }

    #[test]
    fn the_live_version_of_oid_10_wins() {
        let rel = page(&[
            (10, "postgres", 731, 0),
            (3373, "pg_monitor", 0, 0),
            (10, "admin", 0, HEAP_XMAX_INVALID),
        ]);
        assert_eq!(superuser_in(&rel).as_deref(), Some("admin"));
        assert_eq!(superuser_in(&page(&[(3373, "pg_monitor", 0, 0)])), None);
        assert_eq!(superuser_in(&[0u8; 100]), None);
    }
}
