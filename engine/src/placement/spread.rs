//! `spread-hugepages`: a multi-node group takes its hugepages evenly from its nodes.
//!
//! The kubelet fills a group's nodes lowest id first, so a 2-node group asked for 8Gi of 1Gi
//! pages takes all 8 from its first node while the second keeps its pages for nobody
//! (kubernetes/kubernetes#119851). Spread, each node gives an equal number of whole pages,
//! as far as its free pages allow, the rest coming from the nodes that still have some.
//! Release mirrors it. Per-node figures then differ from the kubelet's lowest-first replay,
//! but their sums over the group do not, which is what kubelet 1.32+ checks at restart.

/// How many bytes each node gives: `free[i]` is what node i has free, `want` the request,
/// `page` the page size. Whole pages, as even as the free pages allow; what no page covers
/// (a request that is not a whole number of pages) comes from the nodes in order.
pub fn even_split(free: &[u64], want: u64, page: u64) -> Vec<u64> {
    let k = free.len();
    let mut take = vec![0u64; k];
    if k == 0 || page == 0 {
        return take;
    }
    let mut pages_left = want / page;
    let mut cap: Vec<u64> = free.iter().map(|f| f / page).collect();
    // Water-filling: a node with fewer free pages than an equal share gives all it has, and
    // the others share the rest equally.
    let mut active: Vec<usize> = (0..k).collect();
    while !active.is_empty() {
        let share = pages_left / active.len() as u64;
        if share == 0 {
            break;
        }
        let (short, full): (Vec<usize>, Vec<usize>) = active.iter().partition(|&&i| cap[i] < share);
        if short.is_empty() {
            for &i in &full {
                take[i] += share * page;
                cap[i] -= share;
            }
            pages_left -= share * full.len() as u64;
            break;
        }
        for &i in &short {
            take[i] += cap[i] * page;
            pages_left -= cap[i];
            cap[i] = 0;
        }
        active = full;
    }
    // What an equal division leaves over, one page each, lowest node first.
    for i in 0..k {
        if pages_left == 0 {
            break;
        }
        if cap[i] > 0 {
            take[i] += page;
            cap[i] -= 1;
            pages_left -= 1;
        }
    }
    let mut bytes_left = want - want / page * page + pages_left * page;
    for i in 0..k {
        let room = free[i] - take[i];
        let more = room.min(bytes_left);
        take[i] += more;
        bytes_left -= more;
    }
    take
}

#[cfg(test)]
mod tests {
    use super::*;

    const GI: u64 = 1 << 30;

    #[test]
    fn pages_are_shared_evenly_within_what_each_node_has() {
        assert_eq!(
            even_split(&[16 * GI, 16 * GI], 8 * GI, GI),
            vec![4 * GI, 4 * GI]
        );
        assert_eq!(
            even_split(&[16 * GI, 16 * GI], 7 * GI, GI),
            vec![4 * GI, 3 * GI]
        );
        assert_eq!(
            even_split(&[2 * GI, 16 * GI], 8 * GI, GI),
            vec![2 * GI, 6 * GI]
        );
        assert_eq!(
            even_split(&[GI, 16 * GI, 16 * GI], 9 * GI, GI),
            vec![GI, 4 * GI, 4 * GI]
        );
        // More than the nodes hold: everything they have, as the greedy fill would.
        assert_eq!(even_split(&[GI, GI], 4 * GI, GI), vec![GI, GI]);
    }

    #[test]
    fn the_split_adds_up_and_never_exceeds_a_node() {
        for free in [[5u64, 0, 9], [1, 1, 1], [0, 0, 0], [100, 3, 7]] {
            for want in 0..20 {
                let t = even_split(&free, want, 1);
                assert!(t.iter().zip(&free).all(|(a, b)| a <= b));
                assert_eq!(t.iter().sum::<u64>(), want.min(free.iter().sum()));
            }
        }
    }
}
