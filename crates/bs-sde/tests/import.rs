//! Importers on tiny fixtures written here: official JSONL (directory and zip) and the CSV
//! layout with a newer type list merged over it.

use std::io::Write;
use std::path::Path;

use bs_sde::{Error, SecurityType, StaticData, import_official_sde};

const JSONL_FILES: &[(&str, &str)] = &[
    (
        "_sde.jsonl",
        r#"{"_key":"sde","buildNumber":3100000,"releaseDate":"2025-10-01T11:00:00Z"}"#,
    ),
    (
        "types.jsonl",
        concat!(
            r#"{"_key":587,"groupID":25,"name":{"en":"Rifter","de":"Rifter"},"published":true,"volume":27289.0}"#,
            "\n",
            r#"{"_key":670,"groupID":29,"name":{"en":"Capsule"},"published":true}"#,
            "\n",
            "this line is not json\n",
            r#"{"_key":35832,"groupID":1657,"name":"Astrahus","published":true}"#,
            "\n"
        ),
    ),
    (
        "groups.jsonl",
        concat!(
            r#"{"_key":25,"categoryID":6,"name":{"en":"Frigate"},"published":true}"#,
            "\n",
            r#"{"_key":29,"categoryID":6,"name":{"en":"Capsule"},"published":true}"#,
            "\n",
            r#"{"_key":1657,"categoryID":65,"name":{"en":"Citadel"},"published":true}"#
        ),
    ),
    (
        "categories.jsonl",
        concat!(
            r#"{"_key":6,"name":{"en":"Ship"},"published":true}"#,
            "\n",
            r#"{"_key":65,"name":{"en":"Structure"},"published":true}"#
        ),
    ),
    (
        "mapRegions.jsonl",
        concat!(
            r#"{"_key":10000002,"name":{"en":"The Forge"},"factionID":500001,"constellationIDs":[20000020]}"#,
            "\n",
            r#"{"_key":11000004,"name":{"en":"B-R00004"},"wormholeClassID":3}"#
        ),
    ),
    (
        "mapConstellations.jsonl",
        concat!(
            r#"{"_key":20000020,"name":{"en":"Kimotoro"},"regionID":10000002}"#,
            "\n",
            r#"{"_key":21000040,"name":{"en":"B-C00040"},"regionID":11000004}"#
        ),
    ),
    (
        "mapSolarSystems.jsonl",
        concat!(
            r#"{"_key":30000142,"name":{"en":"Jita"},"constellationID":20000020,"regionID":10000002,"securityStatus":0.945913,"securityClass":"B"}"#,
            "\n",
            r#"{"_key":30000144,"name":{"en":"Perimeter"},"constellationID":20000020,"regionID":10000002,"securityStatus":0.04}"#,
            "\n",
            r#"{"_key":30000145,"name":{"en":"New Caldari"},"constellationID":20000020,"securityStatus":0.449}"#,
            "\n",
            r#"{"_key":31000368,"name":{"en":"J105951"},"constellationID":21000040,"regionID":11000004,"securityStatus":-0.99}"#
        ),
    ),
    (
        "mapStargates.jsonl",
        concat!(
            r#"{"_key":50001248,"solarSystemID":30000142,"destination":{"solarSystemID":30000144,"stargateID":50001249},"typeID":29624}"#,
            "\n",
            r#"{"_key":50001249,"solarSystemID":30000144,"destination":{"solarSystemID":30000142,"stargateID":50001248},"typeID":29624}"#,
            "\n",
            r#"{"_key":50001250,"solarSystemID":30000144,"destination":{"solarSystemID":30000145,"stargateID":50001251},"typeID":29624}"#
        ),
    ),
    (
        "factions.jsonl",
        r#"{"_key":500001,"name":{"en":"Caldari State"},"corporationID":1000035}"#,
    ),
    (
        "npcCorporations.jsonl",
        r#"{"_key":1000035,"name":{"en":"Caldari Navy"},"tickerName":"CN","factionID":500001}"#,
    ),
];

fn write_jsonl_dir(dir: &Path) {
    for (name, body) in JSONL_FILES {
        std::fs::write(dir.join(name), body).expect("write fixture");
    }
}

fn check_fixture_data(sde: &StaticData) {
    assert_eq!(sde.type_info(587).expect("Rifter").name, "Rifter");
    assert_eq!(sde.type_info(35832).expect("Astrahus").name, "Astrahus");
    assert!(sde.is_capsule(670));
    assert!(sde.is_structure(35832));
    let jita = sde.system(30000142).expect("Jita");
    assert_eq!(
        (jita.region_name.as_str(), jita.constellation_name.as_str()),
        ("The Forge", "Kimotoro")
    );
    assert_eq!(jita.security_type, SecurityType::Highsec);
    assert_eq!(jita.security_class.as_deref(), Some("B"));
    assert_eq!(
        sde.system(30000144).expect("Perimeter").security_type,
        SecurityType::Lowsec
    );
    let new_caldari = sde.system(30000145).expect("New Caldari");
    assert_eq!(new_caldari.security_type, SecurityType::Lowsec);
    // No regionID in its line: taken from the constellation.
    assert_eq!(new_caldari.region_name, "The Forge");
    assert_eq!(
        sde.system(31000368).expect("J105951").security_type,
        SecurityType::Wormhole
    );
    assert_eq!(sde.jumps_between(30000142, 30000145), Some(2));
    assert_eq!(sde.neighbours(30000144), &[30000142, 30000145]);
    assert_eq!(sde.faction(500001).expect("faction").name, "Caldari State");
    assert_eq!(sde.npc_corporation(1000035).expect("corp").ticker, "CN");
    assert_eq!(sde.stats().jumps, 2);
}

#[test]
fn official_jsonl_directory_imports_and_loads() {
    let src = tempfile::tempdir().expect("tmp");
    write_jsonl_dir(src.path());
    let bundle = import_official_sde(src.path()).expect("import");
    let manifest = bundle.manifest();
    assert_eq!(manifest.sde_build, Some(3100000));
    assert_eq!(manifest.rejected_rows, 1, "the non-json line");
    assert_eq!(manifest.counts["types"], 3);

    let out = tempfile::tempdir().expect("tmp");
    bundle.write_dir(out.path()).expect("write bundle");
    let sde = StaticData::load_dir(out.path()).expect("load bundle");
    check_fixture_data(&sde);
    assert!(
        sde.version().starts_with("sde3100000-"),
        "{}",
        sde.version()
    );
    assert_eq!(StaticData::from_bundle(bundle).version(), sde.version());
}

#[test]
fn official_jsonl_zip_imports_like_the_directory() {
    let src = tempfile::tempdir().expect("tmp");
    write_jsonl_dir(src.path());
    let from_dir = StaticData::from_bundle(import_official_sde(src.path()).expect("dir import"));

    let zip_path = src.path().join("eve-online-static-data-3100000-jsonl.zip");
    write_zip(&zip_path, JSONL_FILES);
    let bundle = import_official_sde(&zip_path).expect("zip import");
    assert!(bundle.manifest().source.starts_with("official-jsonl-zip:"));
    let from_zip = StaticData::from_bundle(bundle);
    check_fixture_data(&from_zip);
    assert_eq!(from_zip.version(), from_dir.version());

    // A damaged archive is an error, not a panic.
    let bad = src.path().join("bad.zip");
    std::fs::write(&bad, b"PK\x03\x04 definitely not a zip").expect("write");
    assert!(matches!(import_official_sde(&bad), Err(Error::Zip { .. })));
}

#[test]
fn csv_layout_with_newer_type_list_merged() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let w = |name: &str, body: &str| std::fs::write(d.join(name), body).expect("write");
    w(
        "invTypes.csv",
        "typeID,groupID,typeName,published,volume\n587,25,Rifter,1,27289.0\n2454,100,\"Hobgoblin I, test\",1,5\n",
    );
    w(
        "invGroups.csv",
        "groupID,categoryID,groupName,published\n25,6,Frigate,1\n100,18,Combat Drone,1\n",
    );
    w(
        "invCategories.csv",
        "categoryID,categoryName,published\n6,Ship,1\n18,Drone,1\n",
    );
    w(
        "mapRegions.csv",
        "regionID,regionName,factionID\n10000070,Pochven,500026\n",
    );
    w(
        "mapConstellations.csv",
        "constellationID,constellationName,regionID\n20000788,Krai Perun,10000070\n",
    );
    w(
        "mapSolarSystems.csv",
        "solarSystemID,solarSystemName,constellationID,regionID,security,securityClass\n\
         30003504,Niarja,20000788,10000070,-1.0,B1\n30002225,Harva,20000788,10000070,-1.0,\n",
    );
    // No mapSolarSystemJumps.csv: adjacency is derived from stargates.
    w(
        "mapStargates.csv",
        "stargateID,solarSystemID,destinationStargateID\n1,30003504,2\n2,30002225,1\n3,30003504,99\n",
    );
    let overlay = d.join("eveshipfit-build3650286");
    std::fs::create_dir(&overlay).expect("mkdir");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(overlay.join("types.csv.gz")).expect("create"),
        flate2::Compression::fast(),
    );
    gz.write_all(b"typeID,groupID,categoryID,typeName,published\n85062,25,6,Sidewinder,1\n587,25,6,Rifter (renamed),1\n")
        .expect("gz");
    gz.finish().expect("gz finish");
    std::fs::write(
        overlay.join("groups.csv"),
        "groupID,categoryID,groupName,published\n25,6,Frigate,1\n",
    )
    .expect("w");
    std::fs::write(
        overlay.join("categories.csv"),
        "categoryID,categoryName,published\n6,Ship,1\n",
    )
    .expect("w");

    let bundle = import_official_sde(d).expect("csv import");
    assert_eq!(
        bundle.manifest().rejected_rows,
        1,
        "the gate to an unknown stargate"
    );
    let sde = StaticData::from_bundle(bundle);
    assert_eq!(sde.type_info(85062).expect("Sidewinder").name, "Sidewinder");
    assert_eq!(sde.type_info(587).expect("Rifter").name, "Rifter (renamed)");
    assert_eq!(
        sde.type_info(2454).expect("drone").name,
        "Hobgoblin I, test"
    );
    assert_eq!(sde.ship_class(2454), Some(bs_sde::ShipClass::Drone));
    assert_eq!(
        sde.system(30003504).expect("Niarja").security_type,
        SecurityType::Pochven
    );
    assert_eq!(sde.jumps_between(30003504, 30002225), Some(1));
}

#[test]
fn missing_and_unknown_inputs_are_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    assert!(matches!(
        import_official_sde(dir.path()),
        Err(Error::UnknownLayout(_))
    ));
    assert!(matches!(
        import_official_sde(&dir.path().join("nope")),
        Err(Error::MissingFile(_))
    ));
    // JSONL directory without groups.jsonl.
    write_jsonl_dir(dir.path());
    std::fs::remove_file(dir.path().join("groups.jsonl")).expect("rm");
    assert!(
        matches!(import_official_sde(dir.path()), Err(Error::MissingFile(f)) if f == "groups.jsonl")
    );
    // A bundle directory with a damaged table fails to load.
    let out = tempfile::tempdir().expect("tmp");
    write_jsonl_dir(dir.path());
    import_official_sde(dir.path())
        .expect("import")
        .write_dir(out.path())
        .expect("write");
    std::fs::write(out.path().join("types.tsv.gz"), b"garbage").expect("w");
    assert!(StaticData::load_dir(out.path()).is_err());
    assert!(StaticData::load_dir(dir.path()).is_err());
}

/// Writes a zip with the first file stored and the rest deflated (CRCs are not checked by the
/// reader, so they are left 0).
fn write_zip(path: &Path, files: &[(&str, &str)]) {
    let mut out: Vec<u8> = Vec::new();
    let mut central: Vec<u8> = Vec::new();
    for (i, (name, body)) in files.iter().enumerate() {
        let name = format!("eve-online-static-data-3100000-jsonl/{name}");
        let (method, data): (u16, Vec<u8>) = if i == 0 {
            (0, body.as_bytes().to_vec())
        } else {
            let mut enc =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(body.as_bytes()).expect("deflate");
            (8, enc.finish().expect("deflate finish"))
        };
        let offset = out.len() as u32;
        let header = |sig: u32, central_entry: bool| {
            let mut h = Vec::new();
            h.extend(sig.to_le_bytes());
            if central_entry {
                h.extend(20u16.to_le_bytes()); // version made by
            }
            h.extend(20u16.to_le_bytes()); // version needed
            h.extend(0u16.to_le_bytes()); // flags
            h.extend(method.to_le_bytes());
            h.extend([0u8; 4]); // time, date
            h.extend(0u32.to_le_bytes()); // crc
            h.extend((data.len() as u32).to_le_bytes());
            h.extend((body.len() as u32).to_le_bytes());
            h.extend((name.len() as u16).to_le_bytes());
            h.extend(0u16.to_le_bytes()); // extra
            if central_entry {
                h.extend(0u16.to_le_bytes()); // comment
                h.extend(0u16.to_le_bytes()); // disk
                h.extend(0u16.to_le_bytes()); // internal attrs
                h.extend(0u32.to_le_bytes()); // external attrs
                h.extend(offset.to_le_bytes());
            }
            h.extend(name.as_bytes());
            h
        };
        let local = header(0x0403_4b50, false);
        let cent = header(0x0201_4b50, true);
        out.extend(local);
        out.extend(&data);
        central.extend(cent);
    }
    let cd_offset = out.len() as u32;
    out.extend(&central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0u8; 4]); // disk numbers
    out.extend((files.len() as u16).to_le_bytes());
    out.extend((files.len() as u16).to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    std::fs::write(path, out).expect("write zip");
}

/// The committed bundle and price snapshot are exactly what the builder makes from the shared
/// sources (so nobody edits data/ by hand or forgets to rebuild). CI has `shared/` beside the
/// checkout; elsewhere the check is skipped with a note.
#[test]
fn committed_bundle_is_rebuilt_from_shared_sources() {
    let shared = crate::common::repo_path("../shared/data");
    let sde_src = shared.join("sde");
    if !sde_src.is_dir() {
        eprintln!("skipped: {} not present", sde_src.display());
        return;
    }
    let out = tempfile::tempdir().expect("tmp");
    import_official_sde(&sde_src)
        .expect("build from shared csv")
        .write_dir(out.path())
        .expect("write");
    let committed = crate::common::repo_path("data/sde");
    for entry in std::fs::read_dir(out.path()).expect("ls") {
        let p = entry.expect("entry").path();
        let name = p.file_name().expect("name");
        assert_eq!(
            std::fs::read(&p).expect("read"),
            std::fs::read(committed.join(name)).expect("committed file"),
            "data/sde/{name:?} is stale: rerun the build_bundle example"
        );
    }

    let mut body = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(
            std::fs::File::open(shared.join("esi/markets-prices-2025-05-13.json.gz"))
                .expect("prices"),
        ),
        &mut body,
    )
    .expect("gunzip");
    let rebuilt = bs_sde::MarketPrices::from_esi_json(&body).expect("parse");
    assert_eq!(&rebuilt, bs_sde::MarketPrices::bundled());
}
