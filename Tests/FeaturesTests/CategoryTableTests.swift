import Foundation
import Testing
@testable import Features

@Suite("category table (inline 8-byte keys, batched row lookup)")
struct CategoryTableTests {
    /// Keys that stress the inline head: empty, 1–8 bytes, > 8 bytes sharing their first 8 bytes,
    /// bytes that are zero (so zero padding must not confuse lengths), the same key in two fields.
    static let keys: [[UInt8]] = [
        [], [0], [0, 0], Array("a".utf8), Array("68fd1e64".utf8), Array("68fd1e64x".utf8), Array("68fd1e64y".utf8),
        Array("68fd1e6".utf8), Array("a-long-category-value-of-40-bytes-......".utf8), [0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0],
    ]

    @Test("find agrees with a Swift Dictionary for every (field, key), through growth and rehash")
    func findMatchesReference() {
        var table = CategoryTable(minimumCapacity: 4)
        var reference: [String: Int] = [:]
        var rng = Xoshiro256(seed: 7)
        for round in 0..<3_000 {
            let field = Int(rng.next() % 26)
            var key = Self.keys[Int(rng.next() % UInt64(Self.keys.count))]
            if round % 3 == 0 { key += Array("\(rng.next() % 500)".utf8) }
            let name = "\(field)|\(key)"
            let (e, inserted) = key.withUnsafeBytes { table.findOrInsert(field: field, bytes: $0) }
            #expect(inserted == (reference[name] == nil))
            if let known = reference[name] { #expect(known == e) } else { reference[name] = e }
        }
        #expect(table.count == reference.count)
        for (name, e) in reference {
            let field = table.field(at: e)
            #expect(name.hasPrefix("\(field)|"))
            #expect(Array(table.bytes(at: e)).withUnsafeBytes { table.find(field: field, bytes: $0) } == e)
        }
        // Absent: a known key in another field, and a prefix of a long key.
        let probe = Array("a-long-category-value-of-40-bytes-.....".utf8)
        #expect(probe.withUnsafeBytes { table.find(field: 0, bytes: $0) } == nil)
    }

    @Test("FeatureStats.categoryIds (all 26 at once) equals 26 single lookups, on generated and edge-case rows")
    func batchedRowLookup() throws {
        let lines = sampleLines(2_000)
        let stats = try buildStats(lines, minFrequency: 2)
        let parser = CriteoParser()
        var ids = [Int32](repeating: -7, count: CriteoSchema.categoricalCount)
        var unknown = 0, known = 0
        for line in lines {
            let row = try parser.parse(line)
            ids.withUnsafeMutableBufferPointer { stats.categoryIds(of: row, into: $0.baseAddress!) }
            for j in 0..<CriteoSchema.categoricalCount {
                let single = row.category(j).withUnsafeBytes { stats.id(field: j, bytes: $0) }
                #expect(ids[j] == (single ?? 0))
                if single == nil { unknown += 1 } else { known += 1 }
            }
        }
        // The data must exercise both outcomes for the comparison to mean something.
        #expect(unknown > 100 && known > 100)
    }
}
