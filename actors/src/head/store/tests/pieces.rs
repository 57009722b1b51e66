//! Snapshots in pieces: older headers, round trips, pieces moved, missing
//! or added.

use super::*;

/// Snapshots are written in pieces, their header holding the count; the
/// headers of older builds, the data inline (as one binary, or earlier as
/// an array of integers), still read.
#[test]
fn older_snapshot_headers_with_the_data_inline_still_read() {
    #[derive(Serialize)]
    struct Older {
        meta: SnapshotMeta,
        data: Vec<u8>,
    }
    #[derive(Serialize)]
    struct Binary<'a> {
        meta: &'a SnapshotMeta,
        #[serde(with = "serde_bytes")]
        data: &'a [u8],
    }
    let meta = SnapshotMeta {
        last_log_id: None,
        last_membership: Membership::default(),
        snapshot_id: "7-1".to_owned(),
    };
    let data: Vec<u8> = (0..=255).collect();
    let older = rmp_serde::to_vec(&Older {
        meta: meta.clone(),
        data: data.clone(),
    })
    .expect("encodes");
    let binary = rmp_serde::to_vec(&Binary {
        meta: &meta,
        data: &data,
    })
    .expect("encodes");
    for form in [older, binary] {
        let read: StoredSnapshot = rmp_serde::from_slice(&form).expect("the older form reads");
        assert_eq!(
            (read.meta, read.data, read.pieces),
            (meta.clone(), data.clone(), 0)
        );
    }
    let header = rmp_serde::to_vec(&StoredSnapshot {
        meta: meta.clone(),
        data: Vec::new(),
        pieces: 3,
    })
    .expect("encodes");
    let read: StoredSnapshot = rmp_serde::from_slice(&header).expect("reads");
    assert_eq!((read.meta, read.data, read.pieces), (meta, Vec::new(), 3));
}

/// A machine encoded into pieces decodes whole from them, whatever the
/// piece size; bytes written in pieces read back, a write over them
/// replaces what was there, and a write past the end is refused.
#[test]
fn a_machine_round_trips_through_pieces_of_any_size() {
    use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
    let mut machine = Machine::default();
    for i in 0..50 {
        if let EntryPayload::Normal(command) = scale::placement(i, 7, i as u64 + 1).payload {
            machine.state.apply(command);
        }
    }
    let whole = rmp_serde::to_vec(&machine).expect("encodes");
    let encoded = machine.encode().expect("encodes");
    assert!(encoded.pieces().len() > 1, "{}", encoded.len());
    assert_eq!(encoded.len(), whole.len());
    for piece in [1, 7, 1000, whole.len(), whole.len() + 1] {
        let data = Pieces::from_bytes_in(&whole, piece);
        let decoded = Machine::decode(&data).expect("decodes");
        assert_eq!(rmp_serde::to_vec(&decoded).expect("encodes"), whole);
        let stored = Pieces::from_pieces(data.pieces().to_vec()).expect("well formed");
        assert_eq!(stored.len(), whole.len());
    }
    // Written in odd runs, as openraft writes the leader's chunks.
    let mut data = Pieces::with_piece(64);
    for run in whole.chunks(37) {
        data.write_all(run).expect("written");
    }
    let mut back = Vec::new();
    data.seek(SeekFrom::Start(0)).expect("seeks");
    data.read_to_end(&mut back).expect("reads");
    assert_eq!(back, whole);
    data.seek(SeekFrom::Start(60)).expect("seeks");
    data.write_all(&[0xee; 10]).expect("rewritten");
    assert_eq!(data.len(), whole.len());
    let mut back = Vec::new();
    data.reader().read_to_end(&mut back).expect("reads");
    assert_eq!(&back[60..70], &[0xee; 10]);
    assert_eq!((&back[..60], &back[70..]), (&whole[..60], &whole[70..]));
    data.seek(SeekFrom::End(1)).expect("seeks");
    assert!(data.write_all(b"x").is_err(), "a gap is never filled");
    // Stored pieces out of shape are refused.
    assert!(Pieces::from_pieces(vec![vec![1; 8], vec![1; 9]]).is_err());
    assert!(Pieces::from_pieces(vec![vec![1; 8], vec![1; 7], vec![1; 8]]).is_err());
    assert!(Pieces::from_pieces(vec![vec![1; 8], Vec::new()]).is_err());
    // Truncated, it does not decode (and does not panic).
    let cut = Pieces::from_bytes_in(&whole[..whole.len() - 3], 7);
    assert!(Machine::decode(&cut).is_err());
}

/// A stored snapshot spans pieces, each sealed for its number and its
/// snapshot: a piece moved to another number, or missing, or one more,
/// and the store is refused at open, naming the file.
#[tokio::test]
async fn a_snapshot_piece_moved_missing_or_added_is_refused() -> Result<(), StorageError> {
    let dir = Scratch::new("pieces");
    let ring = keyring_in(&dir.0)?;
    {
        let (_, mut sm) = open(&dir.0, Arc::new(ring.clone()))?;
        sm.apply((0..30).map(|i| scale::placement(i, 3, i as u64 + 1)))
            .await?;
        sm.get_snapshot_builder().await.build_snapshot().await?;
    }
    let file = dir.0.join("head.redb");
    let pristine = std::fs::read(&file).map_err(io)?;
    let pieces = {
        let db = Database::create(&file).map_err(io)?;
        raw_contents(&db)
            .into_iter()
            .filter(|(t, _, _)| *t == "snapshot")
            .map(|(_, _, v)| v)
            .collect::<Vec<_>>()
    };
    assert!(pieces.len() >= 3, "{} pieces", pieces.len());
    let last = u32::try_from(pieces.len() - 1).map_err(io)?;
    type Change<'a> = &'a dyn Fn(&mut redb::Table<'_, u32, &[u8]>);
    let cases: [(&str, Change<'_>); 4] = [
        ("snapshot piece 1 does not open", &|t| {
            t.insert(1, pieces[0].as_slice()).expect("an insert");
        }),
        ("of its", &|t| {
            t.remove(last).expect("a removal");
        }),
        ("snapshot piece 2 is out of place", &|t| {
            t.remove(1).expect("a removal");
        }),
        ("is out of place (the snapshot has", &|t| {
            t.insert(last + 1, pieces[0].as_slice()).expect("an insert");
        }),
    ];
    for (expected, change) in cases {
        let error = open_error_after(&dir.0, &pristine, &ring, &|txn| {
            change(&mut txn.open_table(SNAPSHOT).expect("the snapshot table"));
        })?;
        assert!(
            error.contains("head.redb: ") && error.contains(expected),
            "{expected}: {error:?}"
        );
    }
    std::fs::write(&file, &pristine).map_err(io)?;
    let (_, mut sm) = open(&dir.0, Arc::new(ring))?;
    let snapshot = sm.get_current_snapshot().await?.expect("a snapshot");
    assert_eq!(snapshot.snapshot.pieces().len(), pieces.len());
    Ok(())
}
