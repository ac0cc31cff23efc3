import Foundation
import Testing
@testable import Features

/// AUC by sorting scores (ties get their average rank): O(n log n).
func auc(scores: [Double], labels: [Bool]) -> Double {
    let order = scores.indices.sorted { scores[$0] < scores[$1] }
    var rankSumPositives = 0.0
    var k = 0
    while k < order.count {
        var e = k
        while e + 1 < order.count && scores[order[e + 1]] == scores[order[k]] { e += 1 }
        let avgRank = Double(k + e) / 2 + 1
        for m in k...e where labels[order[m]] { rankSumPositives += avgRank }
        k = e + 1
    }
    let pos = Double(labels.filter { $0 }.count), neg = Double(labels.count) - pos
    return (rankSumPositives - pos * (pos + 1) / 2) / (pos * neg)
}

@Suite struct SyntheticTests {
    @Test func aucHelperIsRight() {
        #expect(auc(scores: [0.1, 0.4, 0.35, 0.8], labels: [false, false, true, true]) == 0.75)
        #expect(auc(scores: [0.5, 0.5], labels: [false, true]) == 0.5)
    }

    @Test func deterministicForASeed() {
        var a = SyntheticCriteo(seed: 11), b = SyntheticCriteo(seed: 11), c = SyntheticCriteo(seed: 12)
        let ra = (0..<200).map { _ in a.next()! }, rb = (0..<200).map { _ in b.next()! }
        let rc = (0..<200).map { _ in c.next()! }
        #expect(ra.map(\.line) == rb.map(\.line) && ra.map(\.probability) == rb.map(\.probability))
        #expect(ra.map(\.line) != rc.map(\.line))
    }

    @Test func rowsParseAndLookLikeCriteo() throws {
        var gen = SyntheticCriteo(seed: 5)
        let parser = CriteoParser()
        var missing = [Int](repeating: 0, count: 13), empty = [Int](repeating: 0, count: 26)
        var negatives = 0
        var distinct = [Set<String>](repeating: [], count: 26)
        let n = 20_000
        for _ in 0..<n {
            let (line, p) = gen.next()!
            #expect(p > 0 && p < 1)
            let row = try parser.parse(line)
            for i in 0..<13 where row.dense[i].isNaN { missing[i] += 1 }
            if row.dense[1] < 0 { negatives += 1 }
            for j in 0..<26 {
                let c = row.categoryString(j)
                if c.isEmpty { empty[j] += 1 } else {
                    #expect(c.utf8.count == 8 && c.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) })
                    distinct[j].insert(c)
                }
            }
        }
        let cfg = SyntheticCriteo.Configuration.default
        for i in 0..<13 { #expect(abs(Double(missing[i]) / Double(n) - cfg.denseMissingRates[i]) < 0.02) }
        #expect(negatives > 0)
        for j in 0..<26 { #expect(abs(Double(empty[j]) / Double(n) - cfg.emptyRates[j]) < 0.02) }
        // Very different cardinalities; values never shared across fields.
        let counts = distinct.map(\.count)
        #expect(counts.min()! <= 4 && counts.max()! > 5_000)
        let all = distinct.reduce(0) { $0 + $1.count }
        #expect(Set(distinct.flatMap { $0 }).count == all)
    }

    @Test func ctrAndOracleAUC() throws {
        var gen = SyntheticCriteo(seed: 21)
        let parser = CriteoParser()
        var probs: [Double] = [], labels: [Bool] = []
        for _ in 0..<30_000 {
            let (line, p) = gen.next()!
            probs.append(p)
            labels.append(try parser.parse(line).label == 1)
        }
        let ctr = Double(labels.filter { $0 }.count) / Double(labels.count)
        #expect(ctr > 0.2 && ctr < 0.3, "CTR \(ctr)")
        let oracle = auc(scores: probs, labels: labels)
        #expect(oracle > 0.72, "oracle AUC \(oracle)")
    }

    @Test func writeSyntheticFiles() throws {
        let url = tempPath("gen.tsv"), prob = tempPath("gen.tsv.prob")
        defer { try? FileManager.default.removeItem(at: url); try? FileManager.default.removeItem(at: prob) }
        try writeSynthetic(rows: 3_000, seed: 4, to: url, probabilitiesTo: prob)
        let lines = try String(contentsOf: url, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        let probs = try String(contentsOf: prob, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 3_001 && lines.last == "")
        #expect(probs.count == 3_001 && probs.last == "")
        var gen = SyntheticCriteo(seed: 4)
        for k in 0..<3_000 {
            let (line, p) = gen.next()!
            #expect(String(lines[k]) == line)
            #expect(abs(Double(probs[k])! - p) < 1e-9)
        }
    }
}
