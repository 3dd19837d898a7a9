//! What a pull decides, the same for both backends: where it starts (never
//! below what retention trimmed, and the device told when it would have),
//! placeholders for positions whose message expired, and the position the
//! device's fetch cursor moves to. The backends only run the SQL.

use super::rows::RunRow;
use super::{DeviceCursor, GroupMessage, MailboxItem, Position, StoreError, rules};

/// Where a pull starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Start {
    /// Items strictly after this.
    pub after: u64,
    /// The ack the pull moves to first.
    pub ack: u64,
    /// Non-zero when the device asked for positions at or below the user's
    /// trimmed position: they are gone, and it is told (`Pulled`). The
    /// cursor keeps its ack, so a device that loses this answer is told
    /// again until it acks past it.
    pub trimmed: u64,
}

/// Where a pull of `device_id` at `cursor` starts, in a mailbox trimmed up
/// to `trimmed_seq`.
pub(crate) fn start(
    from: Position,
    cursor: &DeviceCursor,
    trimmed_seq: u64,
    device_id: &str,
) -> Result<Start, StoreError> {
    let (after, ack) = rules::pull_start(from, cursor, device_id)?;
    if after >= trimmed_seq {
        return Ok(Start { after, ack, trimmed: 0 });
    }
    Ok(Start {
        after: trimmed_seq,
        ack,
        trimmed: trimmed_seq,
    })
}

/// True when `items` (after `after`, at most `want`) leave no position
/// unaccounted for: contiguous from `after + 1`, and either `want` long or
/// reaching `head`. Mailbox positions above the trimmed one are all covered
/// by runs, so a hole can only be a message that retention expired.
pub(crate) fn whole(items: &[MailboxItem], after: u64, head: u64, want: usize) -> bool {
    let contiguous = items
        .iter()
        .enumerate()
        .all(|(i, item)| item.mailbox_seq == after + 1 + i as u64);
    contiguous && (items.len() >= want || after + items.len() as u64 >= head)
}

/// `items` with a placeholder (`expired`) for every position of `runs` (the
/// user's first runs past `after`, ascending) that has no message, at most
/// `want` long. Only positions up to `head` (read before the items) can
/// have expired: a run above it that the items missed is a commit that
/// landed between the two reads, and the page ends before it (the next pull
/// brings it). Positions below the first run, or up to `head` when no run
/// is left, are a trim that raced this pull: `start.trimmed` is raised over
/// them instead.
pub(crate) fn fill_expired(
    items: Vec<MailboxItem>,
    start: &mut Start,
    head: u64,
    runs: &[RunRow],
    want: usize,
) -> Vec<MailboxItem> {
    let mut found = items.into_iter().peekable();
    let mut out = Vec::with_capacity(want);
    let first_position = runs.first().map_or(head, |first| (first.end_seq - first.n) as u64);
    if first_position > start.after {
        start.after = first_position;
        start.trimmed = first_position;
    }
    'runs: for run in runs {
        let (end, n, last) = (run.end_seq as u64, run.n as u64, run.last_seq as u64);
        for position in (end + 1 - n)..=end {
            if position <= start.after {
                continue;
            }
            if out.len() >= want {
                break 'runs;
            }
            while found.next_if(|i| i.mailbox_seq < position).is_some() {}
            match found.next_if(|i| i.mailbox_seq == position) {
                Some(item) => out.push(item),
                None if position > head => break 'runs,
                None => out.push(expired(position, &run.group_id, last - (end - position))),
            }
        }
    }
    out
}

/// A position whose message is gone.
fn expired(mailbox_seq: u64, group_id: &str, seq: u64) -> MailboxItem {
    MailboxItem {
        mailbox_seq,
        message: GroupMessage {
            group_id: group_id.to_owned(),
            seq,
            ..GroupMessage::default()
        },
        expired: true,
    }
}

/// The position a pull moves the device's fetch cursor to: its last item,
/// or the trimmed position it was told about.
pub(crate) fn fetched(items: &[MailboxItem], start: &Start) -> u64 {
    items.last().map_or(0, |i| i.mailbox_seq).max(start.trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(end_seq: i64, n: i64, last_seq: i64) -> RunRow {
        RunRow {
            end_seq,
            n,
            group_id: "g".to_owned(),
            last_seq,
        }
    }

    fn item(mailbox_seq: u64, seq: u64) -> MailboxItem {
        MailboxItem {
            mailbox_seq,
            message: GroupMessage {
                group_id: "g".to_owned(),
                seq,
                body: b"x".to_vec(),
                ..GroupMessage::default()
            },
            expired: false,
        }
    }

    #[test]
    fn holes_become_expired_placeholders_in_order() {
        let mut start = Start {
            after: 0,
            ack: 0,
            trimmed: 0,
        };
        // Positions 1..=5 are seqs 11..=15; 12 and 13 expired.
        let items = vec![item(1, 11), item(4, 14), item(5, 15)];
        assert!(!whole(&items, 0, 5, 10));
        let out = fill_expired(items, &mut start, 5, &[run(5, 5, 15)], 10);
        let got: Vec<(u64, u64, bool)> = out.iter().map(|i| (i.mailbox_seq, i.message.seq, i.expired)).collect();
        assert_eq!(
            got,
            vec![
                (1, 11, false),
                (2, 12, true),
                (3, 13, true),
                (4, 14, false),
                (5, 15, false)
            ]
        );
        assert_eq!(start.trimmed, 0);
    }

    #[test]
    fn a_page_of_only_expired_items_still_moves() {
        let mut start = Start {
            after: 2,
            ack: 0,
            trimmed: 0,
        };
        assert!(!whole(&[], 2, 9, 3));
        let out = fill_expired(Vec::new(), &mut start, 9, &[run(4, 4, 4), run(9, 5, 9)], 3);
        let got: Vec<u64> = out.iter().map(|i| i.mailbox_seq).collect();
        assert_eq!(got, vec![3, 4, 5]);
        assert!(out.iter().all(|i| i.expired));
        assert_eq!(fetched(&out, &start), 5);
    }

    #[test]
    fn runs_starting_above_the_pull_mean_a_trim_raced_it() {
        let mut start = Start {
            after: 1,
            ack: 1,
            trimmed: 0,
        };
        let out = fill_expired(vec![item(7, 7)], &mut start, 7, &[run(7, 1, 7)], 10);
        assert_eq!(start.trimmed, 6);
        assert_eq!(out.len(), 1);
        assert!(!out[0].expired);
    }

    #[test]
    fn a_run_committed_after_the_head_was_read_is_not_expired() {
        let mut start = Start {
            after: 0,
            ack: 0,
            trimmed: 0,
        };
        // Head 2 when the pull began; positions 3 and 4 landed before the
        // runs were read but after the items were.
        let items = vec![item(2, 2)];
        let out = fill_expired(items, &mut start, 2, &[run(2, 2, 2), run(4, 2, 4)], 10);
        let got: Vec<(u64, bool)> = out.iter().map(|i| (i.mailbox_seq, i.expired)).collect();
        assert_eq!(got, vec![(1, true), (2, false)]);
    }

    #[test]
    fn no_run_left_below_the_head_is_a_trim() {
        let mut start = Start {
            after: 3,
            ack: 3,
            trimmed: 0,
        };
        let out = fill_expired(Vec::new(), &mut start, 8, &[], 10);
        assert!(out.is_empty());
        assert_eq!((start.after, start.trimmed), (8, 8));
        assert_eq!(fetched(&out, &start), 8);
    }

    #[test]
    fn a_pull_below_the_trim_starts_after_it_and_keeps_the_ack() {
        let cursor = DeviceCursor {
            device_id: "d".to_owned(),
            begin_seq: 1,
            fetch_seq: 3,
            ack_seq: 3,
            read_seq: 0,
        };
        let s = start(Position::ACKED, &cursor, 10, "d").unwrap();
        assert_eq!((s.after, s.ack, s.trimmed), (10, 3, 10));
        assert_eq!(fetched(&[], &s), 10);
        let s = start(Position::after(12), &cursor, 10, "d").unwrap();
        assert_eq!((s.after, s.trimmed), (12, 0));
        assert!(whole(&[item(13, 1)], 12, 13, 5));
    }
}
