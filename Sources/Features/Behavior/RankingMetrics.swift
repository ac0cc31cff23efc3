// Next-item ranking metrics: NDCG@k and HR@k of one ranked list, with masked (already consumed)
// items removed from the list before positions are counted.
//
// Definitions (binary relevance, positions 1-based after masking):
//   DCG@k  = Σ_{p ≤ k, item_p relevant} 1 / log2(p + 1)
//   IDCG@k = Σ_{p = 1 … min(k, |relevant|)} 1 / log2(p + 1)
//   NDCG@k = DCG@k / IDCG@k (0 when nothing is relevant)
//   HR@k   = 1 if some relevant item is among the first k, else 0
// With one relevant item (the next-item protocol) NDCG@k = 1/log2(rank + 1) if rank ≤ k, else 0.
//
// Used by the behaviour generator's oracle and popularity baseline (SyntheticBehavior) and by
// the RL evaluator.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

public enum RankingMetrics {
    /// 1 / log2(position + 1) for a 1-based position.
    @inline(__always)
    public static func discount(_ position: Int) -> Double {
        precondition(position >= 1, "positions are 1-based")
        return 1 / log2(Double(position + 1))
    }

    /// NDCG@k of a single relevant item found at 1-based `rank` (nil = not ranked).
    public static func ndcg(rank: Int?, k: Int) -> Double {
        guard let rank, rank >= 1, rank <= k else { return 0 }
        return discount(rank)
    }

    /// HR@k of a single relevant item found at 1-based `rank` (nil = not ranked).
    public static func hitRate(rank: Int?, k: Int) -> Double {
        guard let rank, rank >= 1, rank <= k else { return 0 }
        return 1
    }

    /// The 1-based position of `target` in `ranking` once masked items are skipped; nil if absent
    /// (or masked itself). Items after the first occurrence of `target` are not looked at.
    public static func rank<C: Sequence>(of target: C.Element, in ranking: C,
                                         masked: (C.Element) -> Bool = { _ in false }) -> Int?
    where C.Element: Equatable {
        var position = 0
        for item in ranking where !masked(item) {
            position += 1
            if item == target { return position }
        }
        return nil
    }

    /// NDCG@k of `ranking` against the set of relevant items, masked items removed first.
    /// Duplicates in the ranking count once (at their first unmasked position).
    public static func ndcg<C: Sequence>(_ ranking: C, relevant: Set<C.Element>, k: Int,
                                         masked: (C.Element) -> Bool = { _ in false }) -> Double
    where C.Element: Hashable {
        let targets = relevant.filter { !masked($0) }
        guard k > 0, !targets.isEmpty else { return 0 }
        var dcg = 0.0, position = 0
        var seen = Set<C.Element>()
        for item in ranking where !masked(item) && seen.insert(item).inserted {
            position += 1
            if position > k { break }
            if targets.contains(item) { dcg += discount(position) }
        }
        var idcg = 0.0
        for p in 1...min(k, targets.count) { idcg += discount(p) }
        return dcg / idcg
    }

    /// HR@k of `ranking` against the set of relevant items, masked items removed first.
    public static func hitRate<C: Sequence>(_ ranking: C, relevant: Set<C.Element>, k: Int,
                                            masked: (C.Element) -> Bool = { _ in false }) -> Double
    where C.Element: Hashable {
        guard k > 0 else { return 0 }
        var position = 0
        var seen = Set<C.Element>()
        for item in ranking where !masked(item) && seen.insert(item).inserted {
            position += 1
            if position > k { break }
            if relevant.contains(item) { return 1 }
        }
        return 0
    }

    /// Expected NDCG@k and HR@k of a fixed ranking when the one relevant item is drawn from a
    /// distribution: `probabilities[p-1]` is the probability of the item ranked at position p
    /// (masked items already removed). E[NDCG@k] = Σ_{p≤k} P_p / log2(p+1), E[HR@k] = Σ_{p≤k} P_p.
    public static func expected(probabilitiesInRankOrder probabilities: some Sequence<Double>,
                                k: Int) -> (ndcg: Double, hitRate: Double) {
        var ndcg = 0.0, hr = 0.0, position = 0
        for p in probabilities {
            position += 1
            if position > k { break }
            ndcg += p * discount(position)
            hr += p
        }
        return (ndcg, hr)
    }

    /// Expected NDCG@k and HR@k of a uniformly random ranking of `candidates` items (one of which
    /// is the relevant item): every position is equally likely.
    public static func random(candidates: Int, k: Int) -> (ndcg: Double, hitRate: Double) {
        guard candidates > 0, k > 0 else { return (0, 0) }
        let top = min(k, candidates)
        var ndcg = 0.0
        for p in 1...top { ndcg += discount(p) }
        return (ndcg / Double(candidates), Double(top) / Double(candidates))
    }
}
