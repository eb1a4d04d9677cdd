//! Suite `crypto`: an encrypting layer (DESIGN section 4) over a store the
//! suite can read and rewrite behind its back ([`Hooks::below`]) shows that
//! store no plaintext, reports plaintext sizes, and turns every tampering
//! into [`Error::Integrity`], never into wrong bytes. Backends that are not
//! such a layer report these checks as unsupported.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use storage_core::{
    Backend, BackendExt, Body, ByteRange, Error, GetOptions, Key, ListOptions, PutMode, PutOptions,
};

use crate::support::{key, pattern};
use crate::{Check, CheckResult, Failure, Hooks, check, ensure, ensure_eq, expect_err};

const SUITE: &str = "crypto";

/// The checks of this suite.
pub fn checks() -> Vec<Check> {
    vec![
        check!(SUITE, the_store_below_sees_no_plaintext, [BelowHook], hooks),
        check!(SUITE, sizes_are_plaintext_sizes, [BelowHook], hooks),
        check!(
            SUITE,
            a_flipped_byte_fails_the_read_with_integrity,
            [BelowHook],
            hooks
        ),
        check!(
            SUITE,
            truncated_or_extended_objects_fail_with_integrity,
            [BelowHook],
            hooks
        ),
        check!(
            SUITE,
            ciphertext_moved_to_another_key_fails_with_integrity,
            [BelowHook],
            hooks
        ),
        check!(
            SUITE,
            identical_plaintexts_get_distinct_etags,
            [BelowHook],
            hooks
        ),
        check!(
            SUITE,
            range_reads_decrypt_across_segment_boundaries,
            [BelowHook],
            hooks
        ),
    ]
}

fn below(hooks: Hooks) -> Result<Arc<dyn Backend>, Failure> {
    hooks
        .below
        .ok_or_else(|| Failure("the factory offers no store below the layer".into()))
}

/// A full read through the layer.
async fn read(b: &dyn Backend, k: &Key) -> storage_core::Result<Bytes> {
    b.get(k, GetOptions::default()).await?.bytes().await
}

/// Replaces what the store below holds at `k` with `stored`.
async fn rewrite(below: &dyn Backend, k: &Key, stored: Vec<u8>) -> Result<(), Failure> {
    below
        .put(k, Body::from(stored), PutOptions::default())
        .await?;
    Ok(())
}

/// Writes three kinds of plaintext (random, all zeros, repeated text)
/// through the layer and finds no 16-byte window of any in the stored form.
async fn the_store_below_sees_no_plaintext(b: Arc<dyn Backend>, hooks: Hooks) -> CheckResult {
    let below = below(hooks)?;
    let plaintexts = [
        pattern(150_000, 1).to_vec(),
        vec![0u8; 150_000],
        b"the quick brown fox jumps over the lazy dog ".repeat(3000),
    ];
    for (i, plain) in plaintexts.iter().enumerate() {
        let k = key(&format!("plain-{i}"))?;
        b.put(&k, Body::from(plain.clone()), PutOptions::default())
            .await?;
        let windows: HashSet<&[u8]> = plain.windows(16).collect();
        let stored = below.get_bytes(&k).await?;
        ensure!(
            !stored.windows(16).any(|w| windows.contains(w)),
            "a 16-byte window of plaintext {i} is in the stored form"
        );
        ensure_eq!(read(&*b, &k).await?, plain[..], "plaintext read back");
    }
    Ok(())
}

/// `head`, `list` and `get` report the plaintext size, while the store
/// below holds more (header and tags).
async fn sizes_are_plaintext_sizes(b: Arc<dyn Backend>, hooks: Hooks) -> CheckResult {
    let below = below(hooks)?;
    let k = key("sized/one")?;
    b.put(&k, Body::from(pattern(1000, 2)), PutOptions::default())
        .await?;
    ensure_eq!(b.head(&k).await?.size, 1000, "head size");
    let listed = b.list(&ListOptions::prefix("sized/")).await?;
    ensure_eq!(
        listed.objects.iter().map(|o| o.size).collect::<Vec<_>>(),
        vec![1000],
        "listed sizes"
    );
    let got = b.get(&k, GetOptions::default()).await?;
    ensure_eq!(got.meta.size, 1000, "get size");
    let stored = below.head(&k).await?.size;
    ensure!(
        stored > 1000,
        "the store below holds {stored} bytes, no more than the plaintext"
    );
    Ok(())
}

/// Flips one byte at a time (in the header, at each quarter of the body,
/// and the last byte): every full read fails with `Error::Integrity`.
async fn a_flipped_byte_fails_the_read_with_integrity(
    b: Arc<dyn Backend>,
    hooks: Hooks,
) -> CheckResult {
    let below = below(hooks)?;
    let k = key("flipped")?;
    b.put(&k, Body::from(pattern(150_000, 3)), PutOptions::default())
        .await?;
    let stored = below.get_bytes(&k).await?.to_vec();
    let len = stored.len();
    for at in [0, 8, 40, 100, len / 4, len / 2, 3 * len / 4, len - 1] {
        let mut tampered = stored.clone();
        tampered[at] ^= 0x20;
        rewrite(&*below, &k, tampered).await?;
        expect_err!(read(&*b, &k).await, Error::Integrity { .. });
    }
    Ok(())
}

/// Cuts the stored form (one byte, half of it) or extends it (16 bytes, a
/// second copy of its body): every full read fails with `Error::Integrity`.
async fn truncated_or_extended_objects_fail_with_integrity(
    b: Arc<dyn Backend>,
    hooks: Hooks,
) -> CheckResult {
    let below = below(hooks)?;
    let k = key("cut")?;
    b.put(&k, Body::from(pattern(150_000, 4)), PutOptions::default())
        .await?;
    let stored = below.get_bytes(&k).await?.to_vec();
    let len = stored.len();
    let forms = [
        stored[..len - 1].to_vec(),
        stored[..len / 2].to_vec(),
        [&stored[..], &stored[len - 16..]].concat(),
        [&stored[..], &stored[len / 2..]].concat(),
    ];
    for form in forms {
        rewrite(&*below, &k, form).await?;
        expect_err!(read(&*b, &k).await, Error::Integrity { .. });
    }
    Ok(())
}

/// Copies the stored form of one key to another behind the layer's back:
/// reading it there fails with `Error::Integrity`.
async fn ciphertext_moved_to_another_key_fails_with_integrity(
    b: Arc<dyn Backend>,
    hooks: Hooks,
) -> CheckResult {
    let below = below(hooks)?;
    let (from, to) = (key("moved/from")?, key("moved/to")?);
    b.put(&from, Body::from("bound to its key"), PutOptions::default())
        .await?;
    let stored = below.get_bytes(&from).await?;
    rewrite(&*below, &to, stored.to_vec()).await?;
    expect_err!(read(&*b, &to).await, Error::Integrity { .. });
    ensure_eq!(read(&*b, &from).await?, "bound to its key", "the original");
    Ok(())
}

/// The same plaintext written twice gets two ETags, so a compare-and-swap
/// with the first fails after the second write (the ABA case of ETags
/// derived from content, such as S3's MD5).
async fn identical_plaintexts_get_distinct_etags(b: Arc<dyn Backend>, hooks: Hooks) -> CheckResult {
    below(hooks)?;
    let k = key("aba")?;
    let first = b
        .put(&k, Body::from("same bytes"), PutOptions::default())
        .await?;
    let second = b
        .put(&k, Body::from("same bytes"), PutOptions::default())
        .await?;
    ensure!(
        first.etag != second.etag,
        "both writes got ETag {}",
        first.etag
    );
    if b.capabilities().conditional_put {
        expect_err!(
            b.put(
                &k,
                Body::from("late"),
                PutOptions::mode(PutMode::IfMatch(first.etag))
            )
            .await,
            Error::PreconditionFailed { .. }
        );
    }
    Ok(())
}

/// Ranges inside one segment, across segment boundaries (of 1 KiB and of
/// 64 KiB alike), to the end and from the end return exactly the plaintext
/// slice.
async fn range_reads_decrypt_across_segment_boundaries(
    b: Arc<dyn Backend>,
    hooks: Hooks,
) -> CheckResult {
    below(hooks)?;
    let k = key("ranged")?;
    let plain = pattern(200_000, 5);
    b.put(&k, Body::from(plain.clone()), PutOptions::default())
        .await?;
    let cases: [(ByteRange, std::ops::Range<usize>); 6] = [
        ((10..20).into(), 10..20),
        ((65_530..65_550).into(), 65_530..65_550),
        ((60_000..140_000).into(), 60_000..140_000),
        ((131_072..131_073).into(), 131_072..131_073),
        (ByteRange::From { start: 199_990 }, 199_990..200_000),
        (ByteRange::suffix(70_000), 130_000..200_000),
    ];
    for (range, slice) in cases {
        let got = b
            .get(
                &k,
                GetOptions {
                    range: Some(range),
                    ..GetOptions::default()
                },
            )
            .await?;
        ensure_eq!(
            got.range.clone(),
            slice.start as u64..slice.end as u64,
            format!("range served for {range}")
        );
        let bytes = got.bytes().await?;
        ensure!(
            bytes == plain[slice.clone()],
            "the bytes of {range} differ from the plaintext slice"
        );
    }
    Ok(())
}
