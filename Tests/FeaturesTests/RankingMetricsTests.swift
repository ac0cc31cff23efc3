import Foundation
import Testing
@testable import Features

/// RankingMetrics against values computed by hand.
@Suite struct RankingMetricsTests {
    let d2 = 1 / log2(3.0)   // discount at position 2 = 0.6309297535714575
    let d3 = 1 / log2(4.0)   // position 3 = 0.5

    @Test func discounts() {
        #expect(RankingMetrics.discount(1) == 1)
        #expect(abs(RankingMetrics.discount(2) - 0.6309297535714575) < 1e-15)
        #expect(RankingMetrics.discount(3) == 0.5)
        #expect(abs(RankingMetrics.discount(7) - 1.0 / 3.0) < 1e-15)
    }

    @Test func singleItemByRank() {
        #expect(RankingMetrics.ndcg(rank: 1, k: 10) == 1)
        #expect(RankingMetrics.ndcg(rank: 3, k: 10) == 0.5)
        #expect(RankingMetrics.ndcg(rank: 10, k: 10) == 1 / log2(11.0))
        #expect(RankingMetrics.ndcg(rank: 11, k: 10) == 0)
        #expect(RankingMetrics.ndcg(rank: nil, k: 10) == 0)
        #expect(RankingMetrics.hitRate(rank: 10, k: 10) == 1)
        #expect(RankingMetrics.hitRate(rank: 11, k: 10) == 0)
        #expect(RankingMetrics.hitRate(rank: nil, k: 10) == 0)
    }

    @Test func maskedItemsAreSkippedBeforeCounting() {
        let ranking = [5, 3, 7, 1]
        let consumed: Set = [3]
        // 5 → 1, (3 masked), 7 → 2, 1 → 3.
        #expect(RankingMetrics.rank(of: 7, in: ranking, masked: { consumed.contains($0) }) == 2)
        #expect(RankingMetrics.rank(of: 7, in: ranking) == 3)
        #expect(RankingMetrics.rank(of: 3, in: ranking, masked: { consumed.contains($0) }) == nil)
        #expect(RankingMetrics.rank(of: 9, in: ranking) == nil)
        #expect(abs(RankingMetrics.ndcg(ranking, relevant: [7], k: 10, masked: { consumed.contains($0) }) - d2) < 1e-15)
        #expect(RankingMetrics.ndcg(ranking, relevant: [7], k: 10) == 0.5)
        #expect(RankingMetrics.ndcg(ranking, relevant: [7], k: 1, masked: { consumed.contains($0) }) == 0)
        #expect(RankingMetrics.hitRate(ranking, relevant: [7], k: 2, masked: { consumed.contains($0) }) == 1)
        #expect(RankingMetrics.hitRate(ranking, relevant: [7], k: 2) == 0)
        // A masked relevant item counts as absent; nothing relevant left → 0.
        #expect(RankingMetrics.ndcg(ranking, relevant: [3], k: 10, masked: { consumed.contains($0) }) == 0)
        #expect(RankingMetrics.hitRate(ranking, relevant: [3], k: 10, masked: { consumed.contains($0) }) == 0)
    }

    @Test func severalRelevantItems() {
        // relevant {b, d} at positions 2 and 4, k = 3: DCG = d2, IDCG = 1 + d2.
        let v = RankingMetrics.ndcg(["a", "b", "c", "d"], relevant: ["b", "d"], k: 3)
        #expect(abs(v - 0.38685280723454163) < 1e-15)
        #expect(abs(v - d2 / (1 + d2)) < 1e-15)
        // k = 4: DCG = d2 + 1/log2(5), IDCG = 1 + d2.
        let w = RankingMetrics.ndcg(["a", "b", "c", "d"], relevant: ["b", "d"], k: 4)
        #expect(abs(w - (d2 + 1 / log2(5.0)) / (1 + d2)) < 1e-15)
        // Perfect ranking → 1; duplicates count once.
        #expect(RankingMetrics.ndcg(["b", "d", "a"], relevant: ["b", "d"], k: 10) == 1)
        #expect(abs(RankingMetrics.ndcg(["a", "a", "b"], relevant: ["b"], k: 10) - d2) < 1e-15)
        #expect(RankingMetrics.ndcg([String](), relevant: ["b"], k: 10) == 0)
    }

    @Test func expectedUnderADistribution() {
        let e = RankingMetrics.expected(probabilitiesInRankOrder: [0.5, 0.3, 0.2], k: 2)
        #expect(abs(e.ndcg - (0.5 + 0.3 * d2)) < 1e-15)   // 0.6892789260714373
        #expect(abs(e.hitRate - 0.8) < 1e-15)
        let all = RankingMetrics.expected(probabilitiesInRankOrder: [0.5, 0.3, 0.2], k: 10)
        #expect(abs(all.ndcg - (0.5 + 0.3 * d2 + 0.2 * d3)) < 1e-15)
        #expect(abs(all.hitRate - 1) < 1e-15)
    }

    @Test func randomRanking() {
        let r = RankingMetrics.random(candidates: 4, k: 2)
        #expect(abs(r.ndcg - (1 + d2) / 4) < 1e-15)   // 0.40773243839286437
        #expect(r.hitRate == 0.5)
        let few = RankingMetrics.random(candidates: 2, k: 10)
        #expect(abs(few.ndcg - (1 + d2) / 2) < 1e-15)
        #expect(few.hitRate == 1)
        #expect(RankingMetrics.random(candidates: 0, k: 10).ndcg == 0)
        // The mean over every position of the target equals the formula.
        let n = 37
        let mean = (1...n).map { RankingMetrics.ndcg(rank: $0, k: 10) }.reduce(0, +) / Double(n)
        #expect(abs(mean - RankingMetrics.random(candidates: n, k: 10).ndcg) < 1e-15)
    }
}
