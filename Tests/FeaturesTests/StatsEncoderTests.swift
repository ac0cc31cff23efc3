import Foundation
import Testing
@testable import Features

func tempPath(_ name: String) -> URL {
    FileManager.default.temporaryDirectory
        .appendingPathComponent("streamrec-features-\(getpid())-\(UInt32.random(in: 0...UInt32.max))-\(name)")
}

/// A small fixed data set: generated rows plus hand-made edge cases.
func sampleLines(_ n: Int = 3_000, seed: UInt64 = 3) -> [String] {
    var gen = SyntheticCriteo(seed: seed)
    var lines = (0..<n).map { _ in gen.next()!.line }
    var cats = (1...26).map { format8($0) }
    cats[0] = ""
    lines.append(makeLine(label: "0", dense: ["-3", "", "", "", "", "", "", "", "", "", "", "", "1e6"], cats: cats))
    return lines
}

func buildStats(_ lines: [String], minFrequency: Int) throws -> FeatureStats {
    var b = FeatureStatsBuilder()
    let p = CriteoParser()
    for l in lines {
        do { b.add(try p.parse(l)) } catch { b.addRejected() }
    }
    return b.build(minFrequency: minFrequency)
}

// MARK: - Reference implementation (String splitting, obviously correct, slow)

struct ReferenceEncoder {
    let denseMin: [Float], denseMax: [Float]
    let dict: [String: Int32]   // "field\u{1}category" → id

    init(stats: FeatureStats) {
        denseMin = stats.denseMin
        denseMax = stats.denseMax
        var d: [String: Int32] = [:]
        stats.forEachCategory { field, id, _, bytes in d["\(field)\u{1}\(String(decoding: bytes, as: UTF8.self))"] = id }
        dict = d
    }

    func encode(_ line: String) -> (ids: [Int32], weights: [Float], label: Float) {
        let parts = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
        precondition(parts.count == 40)
        var ids: [Int32] = [], weights: [Float] = []
        for i in 0..<13 {
            let text = parts[1 + i]
            if text.isEmpty { ids.append(Int32(13 + i)); weights.append(1); continue }
            let x = Float(text)!
            let t: Float = x < 0 ? -Float(log1p(Double(-x))) : Float(log1p(Double(x)))
            var w: Float = 0
            if denseMax[i] > denseMin[i] { w = min(max((t - denseMin[i]) / (denseMax[i] - denseMin[i]), 0), 1) }
            ids.append(Int32(i)); weights.append(w)
        }
        for j in 0..<26 {
            ids.append(dict["\(j)\u{1}\(parts[14 + j])"] ?? Int32(26 + j))
            weights.append(1)
        }
        return (ids, weights, Float(parts[0])!)
    }
}

@Suite struct StatsTests {
    @Test func idsAreUniqueDisjointAndThresholded() throws {
        let lines = sampleLines()
        let minFrequency = 3
        let stats = try buildStats(lines, minFrequency: minFrequency)
        #expect(stats.rows == lines.count && stats.rejected == 0)
        #expect(stats.categoryCount > 100)
        #expect(FeatureIdLayout.firstCategoryId == 52)
        #expect(Int(stats.nextId) == 52 + stats.categoryCount)

        // Independent counts.
        var counts: [String: Int] = [:]
        for l in lines {
            let parts = l.split(separator: "\t", omittingEmptySubsequences: false)
            for j in 0..<26 { counts["\(j)\u{1}\(parts[14 + j])", default: 0] += 1 }
        }
        var seen = Set<Int32>()
        var previous: (field: Int, count: Int64, bytes: [UInt8])? = nil
        stats.forEachCategory { field, id, count, bytes in
            #expect(id >= FeatureIdLayout.firstCategoryId && id < stats.nextId)
            #expect(seen.insert(id).inserted)
            #expect(count >= Int64(minFrequency))
            #expect(counts["\(field)\u{1}\(String(decoding: bytes, as: UTF8.self))"] == Int(count))
            // Order: by field, then descending count, then bytes.
            if let p = previous {
                let ordered = p.field < field || (p.field == field && (p.count > count
                    || (p.count == count && p.bytes.lexicographicallyPrecedes(Array(bytes)))))
                #expect(ordered)
            }
            previous = (field, count, Array(bytes))
        }
        // Every category at or above the threshold is present; all below are absent.
        for (key, c) in counts {
            let parts = key.split(separator: "\u{1}", omittingEmptySubsequences: false)
            let id = stats.id(field: Int(parts[0])!, category: String(parts[1]))
            #expect((id != nil) == (c >= minFrequency), "\(key) count \(c)")
        }
        // Dense, missing and OOV ranges are disjoint from each other and from categories.
        let fixed = (0..<13).map(FeatureIdLayout.denseValueId) + (0..<13).map(FeatureIdLayout.denseMissingId)
            + (0..<26).map(FeatureIdLayout.oovId)
        #expect(fixed == (0..<52).map { Int32($0) })
        #expect(seen.isDisjoint(with: fixed))
        #expect(FeatureIdLayout.kind(of: 5) == .denseValue(field: 5))
        #expect(FeatureIdLayout.kind(of: 20) == .denseMissing(field: 7))
        #expect(FeatureIdLayout.kind(of: 30) == .oov(field: 4))
        #expect(FeatureIdLayout.kind(of: 51) == .oov(field: 25))
        #expect(FeatureIdLayout.kind(of: 52) == .category)
    }

    @Test func denseMinMaxAreTransformedExtremes() throws {
        let stats = try buildStats(sampleLines(500), minFrequency: 1)
        // The hand-made row has I1 = -3 (the only negative in I1) and I13 = 1e6.
        #expect(stats.denseMin[0] == -Float(log1p(3.0)))
        #expect(stats.denseMax[12] >= Float(log1p(1e6)) - 1e-5)
        for i in 0..<13 { #expect(stats.denseMin[i] <= stats.denseMax[i]) }
        #expect(DenseTransform.transform(-1) == -Float(log1p(1.0)))
        #expect(DenseTransform.normalise(5, min: 1, max: 1) == 0)
        #expect(DenseTransform.normalise(5, min: 0, max: 2) == 1)
        #expect(DenseTransform.normalise(-1, min: 0, max: 2) == 0)
    }

    @Test func deterministicAndMergeable() throws {
        let lines = sampleLines(2_000)
        let a = try buildStats(lines, minFrequency: 2)
        let b = try buildStats(lines, minFrequency: 2)
        #expect(a == b)
        // Two halves merged = whole.
        let p = CriteoParser()
        var h1 = FeatureStatsBuilder(), h2 = FeatureStatsBuilder()
        for (k, l) in lines.enumerated() { if k % 2 == 0 { h1.add(try p.parse(l)) } else { h2.add(try p.parse(l)) } }
        h1.merge(h2)
        #expect(h1.build(minFrequency: 2) == a)
    }

    @Test func fileRoundTrip() throws {
        var stats = try buildStats(sampleLines(), minFrequency: 2)
        stats.rejected = 7
        let url = tempPath("stats.tsv")
        defer { try? FileManager.default.removeItem(at: url) }
        try stats.write(to: url)
        let back = try FeatureStats.read(from: url)
        #expect(back == stats)
        #expect(back.denseMin == stats.denseMin && back.denseMax == stats.denseMax)
        // Text form: header line + one line per category.
        let text = try String(contentsOf: url, encoding: .utf8)
        #expect(text.hasPrefix("{\"format\":\"streamrec-feature-stats\",\"version\":1,"))
        #expect(text.split(separator: "\n").count == 1 + stats.categoryCount)
    }

    @Test func readingRejectsBadFiles() throws {
        let stats = try buildStats(sampleLines(300), minFrequency: 1)
        let good = String(decoding: stats.serialized(), as: UTF8.self)
        var lines = good.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        func kind(_ text: String) -> FeatureStatsError.Kind? {
            do { _ = try FeatureStats(serialized: Array(text.utf8)); return nil } catch { return error.kind }
        }
        #expect(kind(good) == nil)
        #expect(kind("hello\n") == .badMagic)
        #expect(kind("{\"format\":\"something-else\",\"version\":1}\n") == .badMagic)
        let v2 = good.replacingOccurrences(of: "\"version\":1,", with: "\"version\":2,")
        #expect(kind(v2) == .unsupportedVersion)
        do { _ = try FeatureStats(serialized: Array(v2.utf8), source: "s.tsv") } catch {
            #expect(error.message.contains("version 2") && error.message.contains("streamrec stats"))
        }
        // Duplicate id: give line 2's id to line 3.
        let id1 = lines[1].split(separator: "\t")[1]
        var dup = lines
        var f = dup[2].split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
        f[1] = String(id1)
        dup[2] = f.joined(separator: "\t")
        #expect(kind(dup.joined(separator: "\n")) == .duplicateId)
        // Duplicate category.
        var dupCat = lines
        var g = dupCat[2].split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
        let g1 = dupCat[1].split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
        g[0] = g1[0]; g[3] = g1[3]
        dupCat[2] = g.joined(separator: "\t")
        #expect(kind(dupCat.joined(separator: "\n")) == .duplicateCategory)
        // Truncated.
        lines.removeLast(3)
        #expect(kind(lines.joined(separator: "\n") + "\n") == .countMismatch)
        #expect(kind(good.replacingOccurrences(of: "\t", with: " ")) == .malformedEntry)
    }

    @Test func onlineAppendUsesNextId() throws {
        var stats = try buildStats(sampleLines(200), minFrequency: 1)
        let next = stats.nextId
        let id = Array("brand-new".utf8).withUnsafeBytes { stats.append(field: 3, bytes: $0) }
        #expect(id == next && stats.nextId == next + 1)
        #expect(stats.id(field: 3, category: "brand-new") == next)
        #expect(stats.id(field: 4, category: "brand-new") == nil)
    }
}

@Suite struct EncoderTests {
    @Test func matchesReferenceImplementation() throws {
        let lines = sampleLines(2_000)
        let stats = try buildStats(Array(lines.prefix(1_500)), minFrequency: 2)  // later rows see OOVs
        let encoder = FeatureEncoder(stats: stats)
        let reference = ReferenceEncoder(stats: stats)
        let parser = CriteoParser()
        var ids = [Int32](repeating: -1, count: 39), weights = [Float](repeating: -1, count: 39)
        var oov = 0
        for line in lines {
            let row = try parser.parse(line)
            encoder.encode(row, into: &ids, weights: &weights, at: 0)
            let r = reference.encode(line)
            #expect(ids == r.ids)
            for f in 0..<39 where abs(weights[f] - r.weights[f]) > 1e-6 {
                Issue.record("field \(f): \(weights[f]) vs \(r.weights[f]) in \(line)")
            }
            oov += ids[13...].filter { $0 >= 26 && $0 < 52 }.count
        }
        #expect(oov > 0)
    }

    @Test func batchPackerBatchesAndReportsRejections() throws {
        var lines = sampleLines(250)
        lines.insert("garbage", at: 10)
        lines.insert("", at: 100)
        lines.insert(makeLine(label: "7"), at: 200)
        let stats = try buildStats(lines, minFrequency: 1)
        let encoder = FeatureEncoder(stats: stats)
        let (batches, rejections) = BatchPacker.pack(lines: lines, encoder: encoder, batchSize: 64)
        let good = lines.count - 3
        #expect(batches.map(\.count) == [64, 64, 64, good - 192])
        #expect(rejections.map(\.line) == [11, 101, 201])
        #expect(rejections.map(\.rejection.reason) == [.wrongFieldCount, .emptyLine, .badLabel])
        // Row-by-row equality with the encoder.
        let goodLines = lines.enumerated().filter { ![10, 100, 200].contains($0.offset) }.map(\.element)
        let reference = ReferenceEncoder(stats: stats)
        for (k, line) in goodLines.enumerated() {
            let b = batches[k / 64], r = k % 64
            let ref = reference.encode(line)
            #expect(Array(b.ids[(r * 39)..<(r * 39 + 39)]) == ref.ids)
            #expect(b.labels[r] == ref.label)
        }
    }

    @Test func unlabelledRowsGetLabelZero() throws {
        let stats = try buildStats(sampleLines(50), minFrequency: 1)
        let (batches, rejections) = BatchPacker.pack(lines: [makeLine(label: nil), makeLine(label: "1")],
                                                     encoder: FeatureEncoder(stats: stats),
                                                     parser: CriteoParser(labels: .optional), batchSize: 10)
        #expect(rejections.isEmpty)
        #expect(batches.count == 1 && batches[0].labels == [0, 1])
        #expect(Array(batches[0].ids[0..<39]) == Array(batches[0].ids[39..<78]))
    }
}

@Suite struct FileTests {
    @Test func lineReaderHandlesLongLinesAndMissingFinalNewline() throws {
        let url = tempPath("lines.tsv")
        defer { try? FileManager.default.removeItem(at: url) }
        let long = String(repeating: "x", count: 300_000)
        let text = makeLine() + "\n" + long + "\n\n" + makeLine(label: "0") + "\r\n" + long + "tail\n" + makeLine()
        try text.write(to: url, atomically: true, encoding: .utf8)
        let parser = CriteoParser(maxLineLength: 1000)
        let reader = try LineReader(path: url.path, maxLineLength: 1000)
        var results: [(Int, RejectReason?)] = []
        var row = CriteoRow()
        try reader.forEachLine { line, n in
            do throws(RowRejection) { try parser.parse(line, into: &row); results.append((n, nil)) } catch { results.append((n, error.reason)) }
        }
        #expect(results.map(\.0) == [1, 2, 3, 4, 5, 6])
        #expect(results.map(\.1) == [nil, .lineTooLong, .emptyLine, nil, .lineTooLong, nil])
    }

    @Test func computeOverFile() throws {
        let url = tempPath("data.tsv"), prob = tempPath("data.tsv.prob")
        defer { try? FileManager.default.removeItem(at: url); try? FileManager.default.removeItem(at: prob) }
        try writeSynthetic(rows: 1_000, seed: 9, to: url, probabilitiesTo: prob)
        try FileManager.default.removeItem(at: prob)
        let handle = try FileHandle(forWritingTo: url)
        handle.seekToEndOfFile()
        handle.write("bad row\n".data(using: .utf8)!)
        try handle.close()
        let (stats, rejections) = try FeatureStats.compute(file: url.path, minFrequency: 2)
        #expect(stats.rows == 1_000 && stats.rejected == 1)
        #expect(rejections.byReason == [.wrongFieldCount: 1] && rejections.samples.first?.line == 1_001)
        let lines = try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(stats == (try buildStats(lines, minFrequency: 2)))
    }
}
