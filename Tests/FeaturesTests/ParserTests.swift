import Testing
@testable import Features

/// Builds a Criteo line from parts.
func makeLine(label: String? = "1", dense: [String] = (1...13).map(String.init),
              cats: [String] = (1...26).map { format8($0) }) -> String {
    ((label.map { [$0] } ?? []) + dense + cats).joined(separator: "\t")
}

func format8(_ k: Int) -> String {
    let hex = Array("0123456789abcdef")
    var x = UInt32(truncatingIfNeeded: k &* 2_654_435_761)
    var s = ""
    for _ in 0..<8 { s.append(hex[Int(x >> 28)]); x <<= 4 }
    return s
}

func reject(_ line: String, _ parser: CriteoParser = CriteoParser()) -> RejectReason? {
    do { _ = try parser.parse(line); return nil } catch { return error.reason }
}

func rejectBytes(_ bytes: [UInt8], _ parser: CriteoParser = CriteoParser()) -> RejectReason? {
    var row = CriteoRow()
    do { try parser.parse(bytes: bytes, into: &row); return nil } catch { return error.reason }
}

extension String {
    func replacingFirst(_ a: Character, with b: Character) -> String {
        guard let i = firstIndex(of: a) else { return self }
        var s = self
        s.replaceSubrange(i...i, with: String(b))
        return s
    }
}

@Suite struct ParserTests {
    @Test func labelledRowExactValues() throws {
        let dense = ["5", "-1", "", "0", "1382", "4.5", "", "2", "+7", "1e3", "", "0.25", "123456"]
        var cats = (1...26).map { format8($0) }
        cats[3] = ""
        cats[25] = ""
        let row = try CriteoParser().parse(makeLine(label: "1", dense: dense, cats: cats) + "\r\n")
        #expect(row.label == 1)
        let expected: [Float?] = [5, -1, nil, 0, 1382, 4.5, nil, 2, 7, 1000, nil, 0.25, 123456]
        for i in 0..<13 {
            if let e = expected[i] { #expect(row.dense[i] == e) } else { #expect(row.dense[i].isNaN) }
        }
        for j in 0..<26 { #expect(row.categoryString(j) == cats[j]) }
        #expect(row.category(3).isEmpty)
    }

    @Test func unlabelledRowsNeedOptionalLabels() throws {
        let line = makeLine(label: nil)
        #expect(reject(line) == .wrongFieldCount)
        let row = try CriteoParser(labels: .optional).parse(line + "\n")
        #expect(row.label == nil)
        #expect(row.dense[0] == 1 && row.dense[12] == 13)
        #expect(row.categoryString(0) == format8(1))
        // A labelled row is still fine with optional labels.
        #expect(try CriteoParser(labels: .optional).parse(makeLine(label: "0")).label == 0)
    }

    @Test func reusedRowIsOverwritten() throws {
        let p = CriteoParser()
        var row = CriteoRow()
        let empty = Array(repeating: "", count: 13)
        try p.parse(bytes: Array(makeLine(label: "1").utf8), into: &row)
        try p.parse(bytes: Array(makeLine(label: "0", dense: empty).utf8), into: &row)
        #expect(row.label == 0)
        #expect(row.dense.allSatisfy { $0.isNaN })
        #expect(row == (try p.parse(makeLine(label: "0", dense: empty))))
    }

    @Test func everyRejectReasonIsReachable() {
        var d = (1...13).map(String.init)
        var cases: [(RejectReason, [UInt8])] = []
        cases.append((.emptyLine, Array("\r\n".utf8)))
        cases.append((.emptyLine, []))
        cases.append((.lineTooLong, Array(makeLine(cats: Array(repeating: String(repeating: "a", count: 3000), count: 26)).utf8)))
        var bad = Array(makeLine().utf8); bad[bad.count - 2] = 0xFF
        cases.append((.invalidUTF8, bad))
        cases.append((.invalidUTF8, Array(makeLine().utf8) + [0xC3]))             // truncated sequence
        cases.append((.invalidUTF8, Array(makeLine().utf8) + [0xED, 0xA0, 0x80])) // surrogate
        cases.append((.invalidUTF8, Array(makeLine().utf8) + [0xC0, 0xAF]))       // overlong
        cases.append((.embeddedNewline, Array((makeLine() + "\nx").utf8)))
        cases.append((.embeddedNewline, Array(makeLine().replacingFirst("\t", with: "\r").utf8)))
        cases.append((.wrongFieldCount, Array("1\t2\t3".utf8)))
        cases.append((.wrongFieldCount, Array((makeLine() + "\textra").utf8)))
        cases.append((.badLabel, Array(makeLine(label: "2").utf8)))
        cases.append((.badLabel, Array(makeLine(label: "").utf8)))
        cases.append((.badLabel, Array(makeLine(label: "1.0").utf8)))
        for text in ["abc", "nan", "NaN", "inf", "-inf", "1,5", " 1", "1 ", "0x10", "-", ".", "1e", "--1", "1.2.3"] {
            d[4] = text
            cases.append((.nonNumericDense, Array(makeLine(dense: d).utf8)))
        }
        for text in ["1e39", "-5e40", String(repeating: "9", count: 50)] {
            d[4] = text
            cases.append((.denseOutOfRange, Array(makeLine(dense: d).utf8)))
        }
        for (reason, bytes) in cases {
            #expect(rejectBytes(bytes) == reason, "\(reason): \(String(decoding: bytes.prefix(60), as: UTF8.self))")
        }
        #expect(Set(cases.map(\.0)) == Set(RejectReason.criteo))
    }

    @Test func rejectionDetailsAreHelpful() {
        do { _ = try CriteoParser().parse("1\t2\t3"); Issue.record("accepted") } catch {
            #expect(error.detail == "expected 40 tab-separated fields, got 3")
            #expect(error.reason.rawValue == "wrong_field_count")
        }
        do { _ = try CriteoParser(maxLineLength: 10).parse(makeLine()); Issue.record("accepted") } catch {
            #expect(error.reason == .lineTooLong)
            #expect(error.detail.contains("limit is 10"))
        }
    }

    @Test func rawValuesAreStableSnakeCase() {
        #expect(RejectReason.allCases.map(\.rawValue) == [
            "empty_line", "line_too_long", "invalid_utf8", "embedded_newline", "wrong_field_count",
            "bad_label", "non_numeric_dense", "dense_out_of_range", "missing_field", "empty_id", "unknown_behavior", "bad_time"])
        #expect(Set(RejectReason.criteo + RejectReason.behavior) == Set(RejectReason.allCases))
    }

    @Test func validUTF8CategoriesAccepted() throws {
        var cats = (1...26).map { format8($0) }
        cats[0] = "café"; cats[1] = "日本"; cats[2] = "😀"; cats[3] = " spaced "
        let row = try CriteoParser().parse(makeLine(cats: cats))
        #expect(row.categoryString(0) == "café" && row.categoryString(2) == "😀" && row.categoryString(3) == " spaced ")
    }

    @Test func decimalParserMatchesFloatInit() {
        var rng = Xoshiro256(seed: 42)
        for _ in 0..<5_000 {
            let text: String
            switch rng.next() % 4 {
            case 0: text = String(Int64(bitPattern: rng.next()) >> (rng.next() % 63))
            case 1: text = String(Int(rng.next() % 100_000)) + "." + String(Int(rng.next() % 1000))
            case 2: text = "-" + String(Int(rng.next() % 1_000_000))
            default: text = String(Int(rng.next() % 1000)) + "e" + String(Int(rng.next() % 20))
            }
            let bytes = Array(text.utf8)
            let got = bytes.withUnsafeBufferPointer { DecimalParser.parse($0.baseAddress!, $0.count) }
            #expect(got == .value(Float(text)!), "\(text)")
        }
    }

    /// Seeded random mutations, random bytes and truncations: the parser must never crash, and every
    /// result is a row with 39 fields or a rejection.
    @Test func fuzzNeverCrashes() {
        var rng = Xoshiro256(seed: 7)
        let parsers = [CriteoParser(), CriteoParser(labels: .optional, maxLineLength: 300)]
        let seeds: [[UInt8]] = [Array(makeLine().utf8), Array(makeLine(label: nil).utf8),
                                Array(makeLine(dense: Array(repeating: "", count: 13)).utf8)]
        let alphabet: [UInt8] = Array("\t\r\n0123456789-+.eE abcdefnaiNA".utf8) + [0x00, 0x80, 0xC3, 0xE2, 0xF0, 0xFF]
        func pick(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
        var row = CriteoRow()
        var accepted = 0, rejected = 0
        for iteration in 0..<12_000 {
            var bytes = seeds[pick(seeds.count)]
            switch iteration % 4 {
            case 0:  // point mutations
                for _ in 0..<(1 + pick(4)) { bytes[pick(bytes.count)] = alphabet[pick(alphabet.count)] }
            case 1:  // truncation
                bytes = Array(bytes.prefix(pick(bytes.count + 1)))
            case 2:  // random bytes
                bytes = (0..<pick(400)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            default: // insertions / deletions
                for _ in 0..<(1 + pick(3)) {
                    if rng.next() & 1 == 0 || bytes.isEmpty {
                        bytes.insert(alphabet[pick(alphabet.count)], at: pick(bytes.count + 1))
                    } else {
                        bytes.remove(at: pick(bytes.count))
                    }
                }
            }
            for p in parsers {
                do {
                    try p.parse(bytes: bytes, into: &row)
                    accepted += 1
                    let wellFormed = row.dense.count == 13
                        && (row.label == nil || row.label == 0 || row.label == 1)
                        && (0..<26).allSatisfy { !row.category($0).contains(0x09) && !row.category($0).contains(0x0A) }
                        && row.dense.allSatisfy { $0.isNaN || $0.isFinite }
                    if !wellFormed { Issue.record("malformed row accepted: \(bytes)") }
                } catch {
                    rejected += 1
                    if error.detail.isEmpty { Issue.record("empty detail for \(error.reason)") }
                }
            }
        }
        #expect(accepted > 100 && rejected > 100)
    }
}
