//! Reading the head's named actors a page at a time: each page must go on
//! from where the last one stopped, or the listing stops with an error (a
//! head answering out of order would otherwise repeat rows forever).

use crate::head::wire::{ControlError, PlacedPage, PlacedRow};

/// Adds `page` (asked for after the last of `rows`) to `rows`; whether
/// more follow.
///
/// # Errors
///
/// [`ControlError::PageOutOfOrder`] unless the page is sorted by name and
/// starts after the last row, and is not empty while more follow: a page
/// that repeats or goes back would make the listing never end.
pub(super) fn add(rows: &mut Vec<PlacedRow>, page: PlacedPage) -> Result<bool, ControlError> {
    let after = rows.last().map(|r| r.name.as_str());
    let sorted = page
        .rows
        .iter()
        .zip(page.rows.iter().skip(1))
        .all(|(a, b)| a.name < b.name);
    let continues = match (after, page.rows.first()) {
        (Some(after), Some(first)) => first.name.as_str() > after,
        _ => true,
    };
    if !sorted || !continues || (page.more && page.rows.is_empty()) {
        return Err(ControlError::PageOutOfOrder {
            after: after.map(str::to_owned),
        });
    }
    rows.extend(page.rows);
    Ok(page.more)
}

#[cfg(test)]
mod tests {
    use swarm_protocol::NodeId;

    use super::*;
    use crate::placement::ResourceSet;

    fn row(name: &str) -> PlacedRow {
        PlacedRow {
            name: name.to_owned(),
            type_name: "t".to_owned(),
            node: NodeId::from_bytes([1; 16]),
            state: "placed".to_owned(),
            epoch: 1,
            placements: 1,
            resources: ResourceSet::default(),
            bundle: None,
            journal_seq: None,
        }
    }

    fn page(names: &[&str], more: bool) -> PlacedPage {
        PlacedPage {
            rows: names.iter().map(|n| row(n)).collect(),
            more,
        }
    }

    #[test]
    fn pages_that_go_on_in_order_add_up_to_the_listing() {
        let mut rows = Vec::new();
        assert_eq!(add(&mut rows, page(&["a", "b"], true)), Ok(true));
        assert_eq!(add(&mut rows, page(&["c"], false)), Ok(false));
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        // No actors at all: one empty last page.
        assert_eq!(add(&mut Vec::new(), page(&[], false)), Ok(false));
    }

    #[test]
    fn a_page_that_repeats_goes_back_is_unsorted_or_stalls_is_refused() {
        let refused = |first: &[&str], second: PlacedPage| {
            let mut rows = Vec::new();
            add(&mut rows, page(first, true)).expect("the first page");
            add(&mut rows, second)
        };
        let out_of_order = |after: &str| {
            Err(ControlError::PageOutOfOrder {
                after: Some(after.to_owned()),
            })
        };
        // The same page again (a replayed answer): it would never end.
        assert_eq!(
            refused(&["a", "b"], page(&["a", "b"], true)),
            out_of_order("b")
        );
        assert_eq!(
            refused(&["a", "b"], page(&["b", "c"], false)),
            out_of_order("b")
        );
        assert_eq!(
            refused(&["a", "b"], page(&["d", "c"], false)),
            out_of_order("b")
        );
        assert_eq!(
            refused(&["a", "b"], page(&["c", "c"], false)),
            out_of_order("b")
        );
        assert_eq!(refused(&["a", "b"], page(&[], true)), out_of_order("b"));
        assert_eq!(
            add(&mut Vec::new(), page(&[], true)),
            Err(ControlError::PageOutOfOrder { after: None })
        );
    }
}
